//! The policy checks of every RPC, and the mutating RPCs wrapped in those
//! checks and their audit records. Every check runs before anything is
//! sent to Okta, so a denied request costs Okta nothing.

use registrar_api::v1::{
    AddKeyRequest, AddKeyResponse, CreateServiceAppRequest, DeleteServiceAppRequest,
    GrantScopesRequest, RegisterServiceRequest, RegisterServiceResponse, RetireKeyRequest,
    RetireKeyResponse, RevokeScopesRequest, RotateKeyRequest, RotateKeyResponse, ScopeResult,
    ServiceApp, WatchRotationsRequest,
};
use tonic::{Request, Status};

use super::RegistrarService;
use super::audit::{AuditDraft, caller_id};
use crate::auth::{AuthMethod, Caller, TokenDigest};
use crate::error::ServiceError;
use crate::policy::{Access, Operation};
use crate::store::KeyPurpose;

impl RegistrarService {
    /// Checks that the request's caller may call `operation` under the
    /// policy in force.
    pub(super) fn authorize<T>(
        &self,
        request: &Request<T>,
        operation: Operation,
    ) -> Result<Access, ServiceError> {
        let caller = caller_id(request);
        let decision = self.policies.current().authorize(&caller, operation);
        Ok(decision.inspect_err(|_| crate::metrics::policy_denied(operation))?)
    }

    /// Checks that the caller manages the app: the store records it as the
    /// app's owner and the name is within its prefixes, or it is an admin.
    /// Apps that the registrar did not create have admins only.
    pub(super) async fn check_manages(
        &self,
        access: &Access,
        client_id: &str,
    ) -> Result<(), ServiceError> {
        if access.is_admin() {
            return Ok(());
        }
        let record = self.store.app(client_id).await?;
        let (owner, name) = record.as_ref().map_or((None, ""), |app| {
            (app.owner.as_deref(), app.client_name.as_str())
        });
        Ok(access.check_manages(client_id, owner, name)?)
    }

    /// Checks a call on one app: the operation, then the app's ownership.
    pub(super) async fn authorize_app<T>(
        &self,
        request: &Request<T>,
        operation: Operation,
        client_id: &str,
    ) -> Result<Access, ServiceError> {
        let access = self.authorize(request, operation)?;
        self.check_manages(&access, client_id).await?;
        Ok(access)
    }

    /// Checks a WatchRotations request: the operation, every watched app,
    /// and key delivery when the request includes private keys. Key
    /// delivery needs both the server's switch and the caller's policy.
    pub(super) async fn authorize_watch(
        &self,
        request: &Request<WatchRotationsRequest>,
    ) -> Result<(), ServiceError> {
        let watch = request.get_ref();
        self.check_watch(
            &caller_id(request),
            &watch.client_ids,
            watch.include_private_keys,
        )
        .await
    }

    /// Checks that `caller_id` may watch these apps, with their private
    /// keys when `with_keys` is set, under the policy in force.
    pub(super) async fn check_watch(
        &self,
        caller_id: &str,
        client_ids: &[String],
        with_keys: bool,
    ) -> Result<(), ServiceError> {
        let access = self
            .policies
            .current()
            .authorize(caller_id, Operation::Watch)
            .inspect_err(|_| crate::metrics::policy_denied(Operation::Watch))?;
        if with_keys {
            if !self.deliver_private_keys {
                return Err(ServiceError::KeyDeliveryOff);
            }
            access.check_key_delivery()?;
        }
        // Validating the list first bounds the store lookups below.
        for client_id in super::keys::watched_ids(client_ids)? {
            self.check_manages(&access, &client_id).await?;
        }
        Ok(())
    }

    /// Checks an open stream's caller again after a reload: a bearer
    /// caller's token, whose digest is `token_digest`, must still be in the
    /// token file under the caller's name, and the policy must still let
    /// the caller watch the apps.
    pub(super) async fn recheck_watch(
        &self,
        caller: Option<&Caller>,
        token_digest: Option<&TokenDigest>,
        client_ids: &[String],
        with_keys: bool,
    ) -> Result<(), ServiceError> {
        let caller_id = caller.map_or(Caller::UNAUTHENTICATED_ID, |caller| caller.id.as_str());
        if let (Some(caller), Some(tokens)) = (caller, &self.bearer_tokens)
            && caller.method == AuthMethod::Bearer
        {
            let still_valid = token_digest
                .and_then(|digest| tokens.name_of(digest))
                .is_some_and(|name| name == caller.id);
            if !still_valid {
                return Err(ServiceError::CallerRemoved(caller.id.clone()));
            }
        }
        self.check_watch(caller_id, client_ids, with_keys).await
    }

    pub(super) async fn create_rpc(
        &self,
        request: Request<CreateServiceAppRequest>,
    ) -> Result<ServiceApp, Status> {
        let draft = AuditDraft::new(&request, "CreateServiceApp");
        let call = async {
            let access = self.authorize(&request, Operation::Create)?;
            access.check_client_name(&request.get_ref().client_name)?;
            self.create(request.into_inner(), access.caller_id()).await
        };
        self.audited(draft, call, |app, draft| {
            draft.client_id.clone_from(&app.client_id);
            draft.kids = app.keys.iter().map(|key| key.kid.clone()).collect();
        })
        .await
    }

    pub(super) async fn register_rpc(
        &self,
        request: Request<RegisterServiceRequest>,
    ) -> Result<RegisterServiceResponse, Status> {
        let draft =
            AuditDraft::new(&request, "RegisterService").scope_ids(&request.get_ref().scope_ids);
        let call = async {
            let access = self.authorize(&request, Operation::Register)?;
            access.check_client_name(&request.get_ref().service_name)?;
            access.check_scopes(&request.get_ref().scope_ids)?;
            self.register(request.into_inner(), &access).await
        };
        self.audited(draft, call, |response, draft| {
            if let Some(app) = &response.app {
                draft.client_id.clone_from(&app.client_id);
                if response.created {
                    draft.kids = app.keys.iter().map(|key| key.kid.clone()).collect();
                }
            }
        })
        .await
    }

    pub(super) async fn grant_rpc(
        &self,
        request: Request<GrantScopesRequest>,
    ) -> Result<Vec<ScopeResult>, Status> {
        let grant = request.get_ref();
        let draft = AuditDraft::new(&request, "GrantScopes")
            .client_id(&grant.client_id)
            .scope_ids(&grant.scope_ids);
        let call = async {
            let access = self.authorize(&request, Operation::Grant)?;
            access.check_scopes(&request.get_ref().scope_ids)?;
            self.check_manages(&access, &request.get_ref().client_id)
                .await?;
            self.grant(request.into_inner()).await
        };
        self.audited(draft, call, |_, _| {}).await
    }

    pub(super) async fn revoke_rpc(
        &self,
        request: Request<RevokeScopesRequest>,
    ) -> Result<Vec<ScopeResult>, Status> {
        let revoke = request.get_ref();
        let draft = AuditDraft::new(&request, "RevokeScopes")
            .client_id(&revoke.client_id)
            .scope_ids(&revoke.scope_ids);
        let call = async {
            self.authorize_app(&request, Operation::Revoke, &request.get_ref().client_id)
                .await?;
            self.revoke(request.into_inner()).await
        };
        self.audited(draft, call, |_, _| {}).await
    }

    pub(super) async fn delete_rpc(
        &self,
        request: Request<DeleteServiceAppRequest>,
    ) -> Result<(), Status> {
        let client_id = request.get_ref().client_id.clone();
        let draft = AuditDraft::new(&request, "DeleteServiceApp").client_id(&client_id);
        let call = async {
            self.authorize_app(&request, Operation::Delete, &client_id)
                .await?;
            self.delete(&client_id).await
        };
        self.audited(draft, call, |_, _| {}).await
    }

    pub(super) async fn rotate_rpc(
        &self,
        request: Request<RotateKeyRequest>,
    ) -> Result<RotateKeyResponse, Status> {
        let client_id = request.get_ref().client_id.clone();
        let draft = AuditDraft::new(&request, "RotateKey").client_id(&client_id);
        let call = async {
            self.authorize_app(&request, Operation::Rotate, &client_id)
                .await?;
            let response = self.rotate(request.into_inner()).await?;
            let new_kid = self.rotation_kid(&client_id).await;
            Ok((response, new_kid))
        };
        let (response, _) = self
            .audited(draft, call, |(_, new_kid), draft| {
                draft.kids = new_kid.iter().cloned().collect();
            })
            .await?;
        Ok(response)
    }

    pub(super) async fn add_key_rpc(
        &self,
        request: Request<AddKeyRequest>,
    ) -> Result<AddKeyResponse, Status> {
        let add = request.get_ref();
        let kids = add.key.iter().map(|key| key.kid.clone()).collect();
        let draft = AuditDraft::new(&request, "AddKey")
            .client_id(&add.client_id)
            .kids(kids);
        let call = async {
            self.authorize_app(&request, Operation::Rotate, &request.get_ref().client_id)
                .await?;
            self.add_key(request.into_inner()).await
        };
        self.audited(draft, call, |_, _| {}).await
    }

    pub(super) async fn retire_key_rpc(
        &self,
        request: Request<RetireKeyRequest>,
    ) -> Result<RetireKeyResponse, Status> {
        let retire = request.get_ref();
        let draft = AuditDraft::new(&request, "RetireKey")
            .client_id(&retire.client_id)
            .kids(vec![retire.kid.clone()]);
        let call = async {
            self.authorize_app(&request, Operation::Rotate, &request.get_ref().client_id)
                .await?;
            self.retire_key(request.into_inner()).await
        };
        self.audited(draft, call, |_, _| {}).await
    }

    /// Returns the kid of the new key of the app's running rotation, for
    /// the audit record; `None` when it cannot be read.
    async fn rotation_kid(&self, client_id: &str) -> Option<String> {
        let rotation = self.store.rotation(client_id).await.ok()??;
        let held_keys = self
            .store
            .held_keys(client_id, KeyPurpose::Assertion)
            .await
            .ok()?;
        held_keys
            .into_iter()
            .find(|key| key.key_id == rotation.new_key_id)
            .map(|key| key.kid)
    }
}

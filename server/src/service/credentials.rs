//! The credential RPCs: client assertions, access tokens and DPoP proofs.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use registrar_api::prost_types::Timestamp;
use registrar_api::v1::{
    GetAccessTokenRequest, GetAccessTokenResponse, SignClientAssertionRequest,
    SignClientAssertionResponse, SignDpopProofRequest, SignDpopProofResponse,
};
use tonic::Status;

use super::RegistrarService;
use crate::error::ServiceError;
use crate::validate::{self, InvalidArgument};

impl RegistrarService {
    pub(super) async fn sign_assertion(
        &self,
        request: SignClientAssertionRequest,
    ) -> Result<SignClientAssertionResponse, ServiceError> {
        validate::client_id(&request.client_id)?;
        self.known_app(&request.client_id).await?;
        let assertion = self.tokens.client_assertion(&request.client_id).await?;
        Ok(SignClientAssertionResponse {
            kid: header_kid(&assertion.jwt),
            assertion: assertion.jwt,
            jti: assertion.jti,
            expires_at: Some(Timestamp {
                seconds: i64::try_from(assertion.expires_at).unwrap_or(i64::MAX),
                nanos: 0,
            }),
            audience: self.tokens.settings().audience.clone(),
        })
    }

    /// Returns a token; errors are already statuses, because callers that
    /// waited on one shared request share its status.
    pub(super) async fn access_token(
        &self,
        request: GetAccessTokenRequest,
    ) -> Result<GetAccessTokenResponse, Status> {
        validate::client_id(&request.client_id).map_err(ServiceError::from)?;
        let scopes = validate::scope_list("scopes", &request.scopes).map_err(ServiceError::from)?;
        let (token, cached) = self
            .tokens
            .access_token(&request.client_id, scopes, request.force_refresh)
            .await?;
        crate::metrics::token_cache(cached);
        let expires_at = token
            .expires_at
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|elapsed| Timestamp {
                seconds: i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX),
                nanos: 0,
            });
        Ok(GetAccessTokenResponse {
            access_token: token.access_token,
            token_type: token.token_type,
            expires_at,
            scopes: token.scopes,
            cached,
        })
    }

    pub(super) async fn sign_proof(
        &self,
        request: SignDpopProofRequest,
    ) -> Result<SignDpopProofResponse, ServiceError> {
        validate::client_id(&request.client_id)?;
        let method = validate::http_method(&request.http_method)?;
        let htu = validate::proof_url(&request.http_url)?;
        if request.access_token.is_empty() {
            return Err(InvalidArgument::new(
                "access_token",
                "is empty; pass the DPoP-bound token that GetAccessToken returned",
            )
            .into());
        }
        self.known_app(&request.client_id).await?;
        let nonce = (!request.nonce.is_empty()).then_some(request.nonce.as_str());
        let proof = self
            .tokens
            .resource_proof(
                &request.client_id,
                method,
                &htu,
                &request.access_token,
                nonce,
            )
            .await?;
        Ok(SignDpopProofResponse { proof })
    }
}

/// Reads the kid from the header of a JWT this process just signed.
fn header_kid(jwt: &str) -> String {
    jwt.split('.')
        .next()
        .and_then(|header| URL_SAFE_NO_PAD.decode(header).ok())
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|header| header.get("kid")?.as_str().map(str::to_string))
        .unwrap_or_default()
}

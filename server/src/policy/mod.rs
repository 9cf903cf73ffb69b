//! The per-caller policy: which operations each authenticated caller may
//! call, which Okta scopes it may grant, which client names it may create
//! and manage, whether WatchRotations may deliver private keys to it, and
//! whether it is an admin. Everything not granted is denied.
//!
//! The policy is a TOML file (`--policy-file`) with one `[[caller]]` entry
//! per caller id:
//!
//! ```toml
//! [[caller]]
//! id = "billing"
//! operations = ["register", "grant", "read", "token", "watch"]
//! scopes = ["okta.users.read", "okta.apps.*"]
//! client_name_prefixes = ["billing-"]
//! deliver_private_keys = false
//! admin = false
//! ```
//!
//! [`Policies`] contains the current policy and swaps in a new one on reload;
//! a file that fails validation leaves the old one in force.

mod parse;
mod scope;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use anyhow::Context;

pub use scope::ScopePattern;

use crate::validate;

/// An operation that the policy allows or denies. Every RPC maps to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// CreateServiceApp.
    Create,
    /// RegisterService.
    Register,
    /// GrantScopes.
    Grant,
    /// RevokeScopes.
    Revoke,
    /// RotateKey, AddKey and RetireKey.
    Rotate,
    /// DeleteServiceApp.
    Delete,
    /// GetServiceApp, ListServiceApps and ListGrants.
    Read,
    /// GetAccessToken, SignClientAssertion and SignDpopProof.
    Token,
    /// WatchRotations.
    Watch,
}

impl Operation {
    /// Every operation, in the order the documentation lists them.
    pub const ALL: [Operation; 9] = [
        Self::Create,
        Self::Register,
        Self::Grant,
        Self::Revoke,
        Self::Rotate,
        Self::Delete,
        Self::Read,
        Self::Token,
        Self::Watch,
    ];

    /// Returns the operation's name in the policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Register => "register",
            Self::Grant => "grant",
            Self::Revoke => "revoke",
            Self::Rotate => "rotate",
            Self::Delete => "delete",
            Self::Read => "read",
            Self::Token => "token",
            Self::Watch => "watch",
        }
    }

    /// Parses an operation name of the policy file.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|operation| operation.as_str() == name)
    }

    /// Returns every operation name, comma-separated, for messages.
    fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }
}

/// The rights of one caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerRights {
    /// The operations it may call.
    pub operations: HashSet<Operation>,
    /// The scope ids it may grant, and request in RegisterService.
    pub scopes: Vec<ScopePattern>,
    /// The prefixes of the client names it may create and manage; `""`
    /// allows every name.
    pub client_name_prefixes: Vec<String>,
    /// Whether WatchRotations may deliver private keys to it, when the
    /// server's key delivery is on.
    pub deliver_private_keys: bool,
    /// Whether it manages every app, not only those it created, and may
    /// read the audit log.
    pub admin: bool,
}

impl CallerRights {
    /// Returns the rights of a caller that may do everything.
    pub fn everything() -> Self {
        Self {
            operations: Operation::ALL.into_iter().collect(),
            scopes: vec![ScopePattern::Any],
            client_name_prefixes: vec![String::new()],
            deliver_private_keys: true,
            admin: true,
        }
    }
}

/// A validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    callers: HashMap<String, CallerRights>,
    /// Whether every caller, listed or not, has [`CallerRights::everything`].
    allow_all: bool,
}

impl Policy {
    /// Parses and validates the text of a policy file. The error names the
    /// line, the caller, the key and the fix.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        parse::parse(text)
    }

    /// Returns the policy that lets every caller do everything: the
    /// default of a server without caller authentication
    /// (`--insecure-no-auth`) and without a policy file.
    pub fn allow_all() -> Self {
        Self {
            callers: HashMap::new(),
            allow_all: true,
        }
    }

    /// Returns whether this is [`Policy::allow_all`].
    pub fn is_allow_all(&self) -> bool {
        self.allow_all
    }

    /// Returns the rights of a caller, or `None` when the policy does not
    /// list it.
    pub fn rights(&self, caller_id: &str) -> Option<CallerRights> {
        if self.allow_all {
            return Some(CallerRights::everything());
        }
        self.callers.get(caller_id).cloned()
    }

    /// Returns the rights of a caller that the policy lists, for checks
    /// that are not about an operation (such as [`Access::check_admin`]).
    pub fn access(&self, caller_id: &str) -> Result<Access, Denied> {
        let Some(rights) = self.rights(caller_id) else {
            return Err(Denied::UnknownCaller {
                caller: caller_id.to_string(),
            });
        };
        Ok(Access {
            caller_id: caller_id.to_string(),
            rights: Arc::new(rights),
        })
    }

    /// Checks that the caller may call the operation, and returns its rights
    /// for the checks that depend on the request.
    pub fn authorize(&self, caller_id: &str, operation: Operation) -> Result<Access, Denied> {
        let access = self.access(caller_id)?;
        if !access.rights.operations.contains(&operation) {
            return Err(Denied::Operation {
                caller: caller_id.to_string(),
                operation: operation.as_str(),
            });
        }
        Ok(access)
    }
}

/// The rights of a request's caller, after its operation was allowed.
#[derive(Debug, Clone)]
pub struct Access {
    caller_id: String,
    rights: Arc<CallerRights>,
}

impl Access {
    /// Returns the caller's id.
    pub fn caller_id(&self) -> &str {
        &self.caller_id
    }

    /// Returns whether the caller manages every app.
    pub fn is_admin(&self) -> bool {
        self.rights.admin
    }

    /// Checks that the caller may grant every one of the scope ids. The
    /// error names the first scope it may not grant.
    pub fn check_scopes(&self, scope_ids: &[String]) -> Result<(), Denied> {
        let denied = scope_ids.iter().find(|scope_id| {
            !self
                .rights
                .scopes
                .iter()
                .any(|pattern| pattern.matches(scope_id))
        });
        match denied {
            Some(scope_id) => Err(Denied::Scope {
                caller: self.caller_id.clone(),
                scope: validate::truncate(scope_id, 100),
            }),
            None => Ok(()),
        }
    }

    /// Checks that the caller may create or manage an app of this name.
    pub fn check_client_name(&self, name: &str) -> Result<(), Denied> {
        let allowed = self
            .rights
            .client_name_prefixes
            .iter()
            .any(|prefix| name.starts_with(prefix.as_str()));
        if allowed {
            return Ok(());
        }
        Err(Denied::ClientName {
            caller: self.caller_id.clone(),
            name: validate::truncate(name, 100),
        })
    }

    /// Checks that the caller manages the app whose recorded owner and name
    /// these are: it created the app and the name is still within its
    /// prefixes, or it is an admin. An app without a recorded owner (created
    /// outside the registrar, or before owners were recorded) has admins
    /// only.
    pub fn check_manages(
        &self,
        client_id: &str,
        owner: Option<&str>,
        client_name: &str,
    ) -> Result<(), Denied> {
        if self.rights.admin {
            return Ok(());
        }
        if owner != Some(self.caller_id.as_str()) {
            return Err(Denied::NotOwner {
                caller: self.caller_id.clone(),
                client_id: validate::truncate(client_id, 100),
            });
        }
        self.check_client_name(client_name)
    }

    /// Checks that WatchRotations may deliver private keys to the caller.
    pub fn check_key_delivery(&self) -> Result<(), Denied> {
        if self.rights.deliver_private_keys {
            return Ok(());
        }
        Err(Denied::KeyDelivery {
            caller: self.caller_id.clone(),
        })
    }

    /// Checks that the caller is an admin, for the named call.
    pub fn check_admin(&self, call: &'static str) -> Result<(), Denied> {
        if self.rights.admin {
            return Ok(());
        }
        Err(Denied::AdminOnly {
            caller: self.caller_id.clone(),
            call,
        })
    }
}

/// A request outside the caller's policy. The messages name the caller and
/// what it may not do, and never another caller's id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The policy does not list the caller.
    #[error(
        "caller {caller:?} is not in the registrar's policy, which denies every call by default; ask the operator to add a [[caller]] entry with id = {caller:?} to the policy file"
    )]
    UnknownCaller {
        /// The caller's id.
        caller: String,
    },
    /// The caller may not call the operation.
    #[error(
        "caller {caller:?} may not use the operation {operation:?}; ask the operator to add it to the caller's operations in the policy file"
    )]
    Operation {
        /// The caller's id.
        caller: String,
        /// The operation's name in the policy file.
        operation: &'static str,
    },
    /// The caller may not grant the scope.
    #[error(
        "caller {caller:?} may not grant the scope {scope:?}; request only scopes that the caller's scopes in the policy file allow, or ask the operator to add it"
    )]
    Scope {
        /// The caller's id.
        caller: String,
        /// The scope id.
        scope: String,
    },
    /// The caller may not create or manage an app of the name.
    #[error(
        "caller {caller:?} may not create or manage a service app named {name:?}; use a name that starts with one of the caller's client_name_prefixes in the policy file"
    )]
    ClientName {
        /// The caller's id.
        caller: String,
        /// The client name.
        name: String,
    },
    /// The app belongs to another caller, or to no caller.
    #[error(
        "caller {caller:?} does not manage client_id {client_id:?}: a caller manages only the service apps it created, unless the policy file makes it an admin"
    )]
    NotOwner {
        /// The caller's id.
        caller: String,
        /// The app's client id.
        client_id: String,
    },
    /// The caller may not receive private keys.
    #[error(
        "include_private_keys: caller {caller:?} may not receive private keys; watch without include_private_keys, or ask the operator to set deliver_private_keys = true for the caller in the policy file"
    )]
    KeyDelivery {
        /// The caller's id.
        caller: String,
    },
    /// The call is for admins only.
    #[error(
        "caller {caller:?} may not call {call}, which is for admins only; ask the operator to set admin = true for the caller in the policy file"
    )]
    AdminOnly {
        /// The caller's id.
        caller: String,
        /// The RPC's name.
        call: &'static str,
    },
}

/// The policy in force, shared by every request, and the file it was read
/// from. Clones share the policy, so a reload through one is seen by all.
#[derive(Debug, Clone)]
pub struct Policies {
    current: Arc<RwLock<Arc<Policy>>>,
    path: Option<PathBuf>,
    /// Counts reloads of the policy or of the files that identify callers,
    /// so that open streams check their caller again.
    reloads: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Policies {
    /// Returns a handle on [`Policy::allow_all`], which has no file to
    /// reload.
    pub fn allow_all() -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(Policy::allow_all()))),
            path: None,
            reloads: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    /// Reads and validates the policy file. The error names the option, the
    /// file, the line and the fix.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let policy = read(path)?;
        Ok(Self {
            current: Arc::new(RwLock::new(Arc::new(policy))),
            path: Some(path.to_path_buf()),
            reloads: Arc::new(tokio::sync::watch::channel(0).0),
        })
    }

    /// Returns the policy in force.
    pub fn current(&self) -> Arc<Policy> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Returns the policy file, or `None` for [`Policies::allow_all`].
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Reads the policy file again and puts it in force. On error the
    /// previous policy stays in force and the error is returned.
    pub fn reload(&self) -> anyhow::Result<()> {
        let Some(path) = &self.path else {
            anyhow::bail!("there is no policy file to reload; start the server with --policy-file");
        };
        let policy = read(path)?;
        let callers = policy.callers.len();
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(policy);
        tracing::info!(path = %path.display(), callers, "policy reloaded");
        self.announce_reload();
        Ok(())
    }

    /// Returns a receiver that gets a new value after every reload, for
    /// streams that check their caller's rights again.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reloads.subscribe()
    }

    /// Wakes every subscriber, after the policy or the files that identify
    /// callers were reloaded.
    pub fn announce_reload(&self) {
        self.reloads.send_modify(|count| *count += 1);
    }
}

/// Reads and parses a policy file.
fn read(path: &Path) -> anyhow::Result<Policy> {
    let text = crate::config::read_settings_file("--policy-file", path)?;
    Policy::parse(&text).with_context(|| format!("--policy-file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::parse(
            r#"
[[caller]]
id = "billing"
operations = ["create", "grant", "watch"]
scopes = ["okta.users.read"]
client_name_prefixes = ["billing-"]

[[caller]]
id = "ops"
operations = ["grant", "watch"]
scopes = ["*"]
deliver_private_keys = true
admin = true
"#,
        )
        .expect("valid policy")
    }

    #[test]
    fn unknown_caller_is_denied() {
        let denied = policy()
            .authorize("reports", Operation::Read)
            .expect_err("not listed");
        assert!(matches!(denied, Denied::UnknownCaller { .. }));
        assert!(denied.to_string().contains("\"reports\""), "{denied}");
    }

    #[test]
    fn operation_outside_policy_is_named() {
        let denied = policy()
            .authorize("billing", Operation::Delete)
            .expect_err("not allowed");
        assert!(denied.to_string().contains("\"delete\""), "{denied}");
    }

    #[test]
    fn scopes_are_checked_each() {
        let access = policy()
            .authorize("billing", Operation::Grant)
            .expect("allowed");
        assert!(access.check_scopes(&["okta.users.read".into()]).is_ok());
        let denied = access
            .check_scopes(&["okta.users.read".into(), "okta.roles.manage".into()])
            .expect_err("not allowed");
        assert!(denied.to_string().contains("okta.roles.manage"), "{denied}");
    }

    #[test]
    fn ownership_needs_owner_and_name() {
        let access = policy()
            .authorize("billing", Operation::Grant)
            .expect("allowed");
        assert!(
            access
                .check_manages("0oa1", Some("billing"), "billing-worker")
                .is_ok()
        );
        assert!(matches!(
            access.check_manages("0oa1", Some("ops"), "billing-worker"),
            Err(Denied::NotOwner { .. })
        ));
        assert!(matches!(
            access.check_manages("0oa1", None, "billing-worker"),
            Err(Denied::NotOwner { .. })
        ));
        assert!(matches!(
            access.check_manages("0oa1", Some("billing"), "reports"),
            Err(Denied::ClientName { .. })
        ));
        let admin = policy()
            .authorize("ops", Operation::Grant)
            .expect("allowed");
        assert!(admin.check_manages("0oa1", None, "anything").is_ok());
    }

    #[test]
    fn owner_is_not_revealed() {
        let access = policy()
            .authorize("billing", Operation::Grant)
            .expect("allowed");
        let denied = access
            .check_manages("0oa1", Some("ops"), "billing-worker")
            .expect_err("not the owner");
        assert!(!denied.to_string().contains("\"ops\""), "{denied}");
    }

    #[test]
    fn key_delivery_and_admin_follow_policy() {
        let billing = policy()
            .authorize("billing", Operation::Watch)
            .expect("allowed");
        assert!(billing.check_key_delivery().is_err());
        assert!(billing.check_admin("ListAuditEvents").is_err());
        let ops = policy()
            .authorize("ops", Operation::Watch)
            .expect("allowed");
        assert!(ops.check_key_delivery().is_ok());
        assert!(ops.check_admin("ListAuditEvents").is_ok());
    }

    #[test]
    fn allow_all_allows_everything() {
        let access = Policy::allow_all()
            .authorize("unauthenticated", Operation::Delete)
            .expect("allowed");
        assert!(access.is_admin());
        assert!(access.check_scopes(&["okta.roles.manage".into()]).is_ok());
        assert!(access.check_client_name("anything").is_ok());
        assert!(access.check_key_delivery().is_ok());
    }

    #[test]
    fn failed_reload_keeps_policy() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("policy.toml");
        std::fs::write(
            &path,
            "[[caller]]\nid = \"billing\"\noperations = [\"read\"]\n",
        )
        .expect("write policy");
        let policies = Policies::load(&path).expect("valid policy");
        assert!(
            policies
                .current()
                .authorize("billing", Operation::Grant)
                .is_err()
        );

        std::fs::write(
            &path,
            "[[caller]]\nid = \"billing\"\noperations = [\"grant\"]\n",
        )
        .expect("write policy");
        policies.reload().expect("valid policy");
        assert!(
            policies
                .current()
                .authorize("billing", Operation::Grant)
                .is_ok()
        );

        std::fs::write(
            &path,
            "[[caller]]\nid = \"billing\"\noperations = [\"grnat\"]\n",
        )
        .expect("write policy");
        let error = format!("{:#}", policies.reload().expect_err("invalid policy"));
        assert!(error.contains("--policy-file"), "{error}");
        assert!(error.contains("line 3"), "{error}");
        assert!(
            policies
                .current()
                .authorize("billing", Operation::Grant)
                .is_ok()
        );
    }
}

//! The Okta scopes an admin can grant to an app.
//!
//! The list is the union of the scopes in Okta's management, OAuth and
//! governance OpenAPI specs of June 2026. It leaves out the MyAccount
//! scopes and the `.self` scopes, which act for a signed-in end user and
//! cannot be used with client credentials, and OpenID Connect scopes such as
//! `openid`, `profile` and `email`.

/// Resources that each have a `.read` and a `.manage` scope.
const READ_MANAGE_RESOURCES: &[&str] = &[
    "okta.agentPools",
    "okta.apiTokens",
    "okta.appGrants",
    "okta.apps",
    "okta.apps.interclientTrust",
    "okta.authenticators",
    "okta.authorizationServers",
    "okta.behaviors",
    "okta.botProtection",
    "okta.brands",
    "okta.captchas",
    "okta.clients",
    "okta.customTelephonyProvider",
    "okta.deviceAssurance",
    "okta.deviceIntegrations",
    "okta.devicePostureChecks",
    "okta.devices",
    "okta.directories.groups",
    "okta.domains",
    "okta.dr",
    "okta.emailDomains",
    "okta.emailServers",
    "okta.eventHooks",
    "okta.features",
    "okta.groups",
    "okta.identitySources",
    "okta.idps",
    "okta.inlineHooks",
    "okta.linkedObjects",
    "okta.logStreams",
    "okta.networkZones",
    "okta.oauthIntegrations",
    "okta.orgs",
    "okta.personal.adminSettings",
    "okta.policies",
    "okta.principalRateLimits",
    "okta.profileMappings",
    "okta.pushProviders",
    "okta.rateLimits",
    "okta.realmAssignments",
    "okta.realms",
    "okta.roles",
    "okta.schemas",
    "okta.securityEventsProviders",
    "okta.serviceAccounts",
    "okta.serviceAccounts.okta",
    "okta.sessions",
    "okta.templates",
    "okta.threatInsights",
    "okta.trustedOrigins",
    "okta.uischemas",
    "okta.userRisk",
    "okta.userTypes",
    "okta.users",
    "ssf",
    "okta.governance.accessCertifications",
    "okta.governance.accessRequests",
    "okta.governance.admin",
    "okta.governance.collections",
    "okta.governance.entitlements",
    "okta.governance.labels",
    "okta.governance.principalSettings",
    "okta.governance.resourceOwner",
    "okta.governance.reviewer",
    "okta.governance.riskRule",
    "okta.governance.securityAccessReviews.admin",
    "okta.governance.securityAccessReviews.endUser",
    "okta.governance.settings",
];

/// Scopes that do not follow the `.read` and `.manage` pattern.
const SINGLE_SCOPES: &[&str] = &[
    "okta.logs.read",
    "okta.clients.register",
    "okta.universalLogout.manage",
    "okta.workflows.invoke.manage",
    "okta.governance.delegates.read",
    "okta.governance.operations.read",
];

/// Returns whether `scope` is an Okta scope that can be granted to an app.
pub(crate) fn is_grantable(scope: &str) -> bool {
    if SINGLE_SCOPES.contains(&scope) {
        return true;
    }
    let resource = scope
        .strip_suffix(".read")
        .or_else(|| scope.strip_suffix(".manage"));
    resource.is_some_and(|resource| READ_MANAGE_RESOURCES.contains(&resource))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn management_scopes_are_grantable() {
        for scope in [
            "okta.users.read",
            "okta.users.manage",
            "okta.apps.manage",
            "okta.appGrants.read",
            "okta.apps.interclientTrust.manage",
            "okta.logs.read",
            "okta.clients.register",
            "okta.clients.read",
            "okta.clients.manage",
            "ssf.read",
        ] {
            assert!(is_grantable(scope), "{scope}");
        }
    }

    #[test]
    fn other_scopes_are_not_grantable() {
        for scope in [
            "openid",
            "profile",
            "email",
            "okta.logs.manage",
            "okta.users.read.self",
            "okta.myAccount.email.read",
            "okta.userz.read",
            "okta.users",
            "",
        ] {
            assert!(!is_grantable(scope), "{scope}");
        }
    }
}

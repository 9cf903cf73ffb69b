//! Entry points for the fuzz targets in `fuzz/`: wrappers around parsers
//! that are private to the crate. The module is hidden from the docs, has
//! no stability promise, and the server itself does not use it.

use std::time::Duration;

use reqwest::header::HeaderMap;
use url::Url;

use crate::okta::OktaClient;
use crate::org::OrgUrl;
use crate::secret::Secret;
use crate::service::PageToken;
use crate::validate::InvalidArgument;

/// An Okta client used only to read and check next-page `Link` headers.
#[derive(Debug)]
pub struct PageLinks {
    client: OktaClient,
}

impl PageLinks {
    /// Builds the link reader for the org at `org_url`, which must be a valid
    /// org URL.
    pub fn new(org_url: &str) -> Self {
        let org = OrgUrl::parse(org_url).expect("the fuzz target passes a valid org URL");
        let client = OktaClient::new(org, Secret::new("fuzz"), Duration::from_secs(1))
            .expect("an Okta client with default settings builds");
        Self { client }
    }

    /// Returns the org URL.
    pub fn org(&self) -> &Url {
        self.client.org().url()
    }

    /// Reads the next-page link of an apps page from `headers` and resolves
    /// it as the apps list does before following it: returns the next page's
    /// URL, `None` on the last page, or the error message.
    pub fn next_apps_page(&self, headers: &HeaderMap) -> Result<Option<Url>, String> {
        let operation = "list apps";
        let next = self
            .client
            .next_page(operation, headers)
            .map_err(|err| err.to_string())?;
        let Some(next) = next else {
            return Ok(None);
        };
        self.client
            .resolve_page(operation, &next, "/api/v1/apps")
            .map(Some)
            .map_err(|err| err.to_string())
    }
}

/// Decodes a `ListServiceApps` page token as the handler does, returning
/// only whether it is valid.
pub fn decode_page_token(token: &str) -> Result<(), InvalidArgument> {
    PageToken::decode(token).map(drop)
}

//! The Okta REST client: the only module that talks HTTP to Okta.
//!
//! It owns the `reqwest` client, timeouts, the `Authorization` header (an
//! API token, or an OAuth access token, see [`credential`]),
//! rate-limit pacing and retries, lenient decoding of Okta's JSON, both of
//! Okta's error formats and `Link` pagination.

pub mod credential;
mod error;
mod link;
pub mod model;
pub mod ratelimit;
pub mod request_ids;
pub mod retry;
mod transport;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderMap, LINK};
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use url::Url;

pub use credential::{ClientBuildError, OAuthCredential, OktaCredential};
pub use error::{ErrorBody, OktaError};
use model::{App, NewClient, NewGrant, RegisteredClient, ScopeGrant, TokenResponse};
use ratelimit::Pacer;
use retry::RetryPolicy;
use transport::Replay;
pub use transport::UNAVAILABLE_RETRY_DELAY;

use crate::org::OrgUrl;
use crate::secret::Secret;

/// The operation name of token requests, which authenticate with their
/// client assertion and never carry the registrar's management credential,
/// whichever token endpoint they go to.
pub(super) const TOKEN_REQUEST: &str = "token request";

/// The largest page size Okta accepts on its list endpoints.
pub const MAX_PAGE_SIZE: u32 = 200;

/// A guard against pagination that never ends: no list is followed past
/// this many pages (2,000,000 apps at the maximum page size).
const MAX_PAGES: usize = 10_000;

/// One page of a list, with the relative URL of the next page.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items of this page that could be decoded.
    pub items: Vec<T>,
    /// What leads to the next page, or `None` on the last page: the `after`
    /// cursor from [`OktaClient::list_apps_page`], or the path and query of
    /// Okta's next-page link inside this module.
    pub next: Option<String>,
}

/// The default share of each rate-limit bucket that the registrar uses:
/// half, the share Okta grants one API token by default.
pub const DEFAULT_RATE_SHARE: f64 = 0.5;

/// The pacing and retry settings of the client's requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacingSettings {
    /// The share of each rate-limit bucket the registrar may use per
    /// window, above 0 and at most 1.
    pub rate_share: f64,
    /// When and how often failed requests are retried.
    pub retry: RetryPolicy,
}

impl Default for PacingSettings {
    fn default() -> Self {
        Self {
            rate_share: DEFAULT_RATE_SHARE,
            retry: RetryPolicy::default(),
        }
    }
}

/// A client for one Okta org, authenticated with an API token or an OAuth
/// access token. Clones share the rate-limit state and the access token.
#[derive(Debug, Clone)]
pub struct OktaClient {
    http: reqwest::Client,
    org: OrgUrl,
    /// Shared by clones, so that a credential reloaded through one is used
    /// by all.
    authorizer: Arc<std::sync::RwLock<credential::Authorizer>>,
    pacer: Pacer,
    retry: RetryPolicy,
}

impl OktaClient {
    /// Builds a client for the org with the default [`PacingSettings`].
    /// `timeout` bounds each attempt of a request.
    pub fn new(org: OrgUrl, api_token: Secret, timeout: Duration) -> Result<Self, reqwest::Error> {
        Self::build(org, credential::Authorizer::ApiToken(api_token), timeout)
    }

    /// Builds a client for the org that authenticates with `credential`.
    pub fn with_credential(
        org: OrgUrl,
        credential: OktaCredential,
        timeout: Duration,
    ) -> Result<Self, ClientBuildError> {
        let authorizer = credential::Authorizer::new(credential)?;
        Ok(Self::build(org, authorizer, timeout)?)
    }

    fn build(
        org: OrgUrl,
        authorizer: credential::Authorizer,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("registrar/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            // Okta's pagination links are followed by hand, after checking
            // that they stay on the org; a redirect could send the API token
            // elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let pacing = PacingSettings::default();
        Ok(Self {
            http,
            org,
            authorizer: Arc::new(std::sync::RwLock::new(authorizer)),
            pacer: Pacer::new(pacing.rate_share),
            retry: pacing.retry,
        })
    }

    /// Replaces the pacing and retry settings. Call it before cloning the
    /// client, because it starts a new rate-limit state.
    pub fn with_pacing(mut self, pacing: PacingSettings) -> Self {
        self.pacer = Pacer::new(pacing.rate_share);
        self.retry = pacing.retry;
        self
    }

    /// Returns the retry settings, for callers that retry themselves.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Returns the org URL, without a trailing slash.
    pub fn org(&self) -> &OrgUrl {
        &self.org
    }

    /// Registers a client through dynamic client registration.
    pub async fn create_client(&self, body: &NewClient) -> Result<RegisteredClient, OktaError> {
        let operation = "create client";
        let request = self
            .request(Method::POST, &["oauth2", "v1", "clients"])
            .json(body);
        let response = self
            .call(operation, Replay::OnlyIfNotApplied, request)
            .await?;
        decode(operation, response).await
    }

    /// Fetches one app.
    pub async fn get_app(&self, app_id: &str) -> Result<App, OktaError> {
        let operation = "get app";
        let request = self.request(Method::GET, &["api", "v1", "apps", app_id]);
        let response = self.call(operation, Replay::Safe, request).await?;
        decode(operation, response).await
    }

    /// Fetches one page of apps matching the `q` prefix, starting after the
    /// `after` cursor of a previous page. The page's `next` is the `after`
    /// cursor that Okta's next-page link carries.
    pub async fn list_apps_page(
        &self,
        q: &str,
        limit: u32,
        after: Option<&str>,
    ) -> Result<Page<App>, OktaError> {
        let operation = "list apps";
        let mut url = self.url(&["api", "v1", "apps"]);
        {
            let mut query = url.query_pairs_mut();
            if !q.is_empty() {
                query.append_pair("q", q);
            }
            if let Some(after) = after {
                query.append_pair("after", after);
            }
            query.append_pair("limit", &limit.clamp(1, MAX_PAGE_SIZE).to_string());
        }
        let page = self.fetch_apps_page(operation, url).await?;
        let next = match page.next {
            None => None,
            Some(link) => {
                let url = self.resolve_page(operation, &link, "/api/v1/apps")?;
                let cursor = url
                    .query_pairs()
                    .find(|(name, _)| name == "after")
                    .map(|(_, value)| value.into_owned());
                Some(cursor.ok_or_else(|| OktaError::Pagination {
                    operation,
                    detail: format!("the next link {link:?} has no after cursor"),
                })?)
            }
        };
        Ok(Page {
            items: page.items,
            next,
        })
    }

    /// Lists every app matching the `q` prefix, following Okta's `Link`
    /// headers to the last page with the largest page size.
    pub async fn list_apps_all(&self, q: &str) -> Result<Vec<App>, OktaError> {
        let operation = "list apps";
        let mut url = self.url(&["api", "v1", "apps"]);
        {
            let mut query = url.query_pairs_mut();
            if !q.is_empty() {
                query.append_pair("q", q);
            }
            query.append_pair("limit", &MAX_PAGE_SIZE.to_string());
        }
        let mut apps = Vec::new();
        let mut seen = HashSet::new();
        let mut page = self.fetch_apps_page(operation, url).await?;
        loop {
            apps.append(&mut page.items);
            let Some(next) = page.next else {
                return Ok(apps);
            };
            if !seen.insert(next.clone()) {
                return Err(OktaError::Pagination {
                    operation,
                    detail: format!("the next link {next} repeats an earlier page"),
                });
            }
            if seen.len() >= MAX_PAGES {
                return Err(OktaError::Pagination {
                    operation,
                    detail: format!("more than {MAX_PAGES} pages"),
                });
            }
            let url = self.resolve_page(operation, &next, "/api/v1/apps")?;
            page = self.fetch_apps_page(operation, url).await?;
        }
    }

    /// Fetches one page of apps from a URL on the org; `next` is the next
    /// page's link, checked to stay on the org.
    async fn fetch_apps_page(
        &self,
        operation: &'static str,
        url: Url,
    ) -> Result<Page<App>, OktaError> {
        let request = self.authorized(self.http.get(url));
        let response = self.call(operation, Replay::Safe, request).await?;
        let next = self.next_page(operation, response.headers())?;
        let values: Vec<serde_json::Value> = decode(operation, response).await?;
        let items = decode_each(operation, values);
        Ok(Page { items, next })
    }

    /// Deactivates an app.
    pub async fn deactivate_app(&self, app_id: &str) -> Result<(), OktaError> {
        let operation = "deactivate app";
        let path = ["api", "v1", "apps", app_id, "lifecycle", "deactivate"];
        let request = self.request(Method::POST, &path);
        self.call(operation, Replay::Safe, request).await.map(drop)
    }

    /// Deletes an inactive app.
    pub async fn delete_app(&self, app_id: &str) -> Result<(), OktaError> {
        let operation = "delete app";
        let request = self.request(Method::DELETE, &["api", "v1", "apps", app_id]);
        self.call(operation, Replay::Safe, request).await.map(drop)
    }

    /// Lists an app's scope grants. Okta does not paginate this list.
    pub async fn list_grants(&self, app_id: &str) -> Result<Vec<ScopeGrant>, OktaError> {
        let operation = "list grants";
        let request = self.request(Method::GET, &["api", "v1", "apps", app_id, "grants"]);
        let response = self.call(operation, Replay::Safe, request).await?;
        let values: Vec<serde_json::Value> = decode(operation, response).await?;
        Ok(decode_each(operation, values))
    }

    /// Grants one scope to an app for the org authorization server.
    pub async fn create_grant(
        &self,
        app_id: &str,
        scope_id: &str,
    ) -> Result<ScopeGrant, OktaError> {
        let operation = "grant scope";
        let body = NewGrant {
            scope_id,
            issuer: self.org.as_str(),
        };
        let request = self
            .request(Method::POST, &["api", "v1", "apps", app_id, "grants"])
            .json(&body);
        let response = self
            .call(operation, Replay::OnlyIfNotApplied, request)
            .await?;
        decode(operation, response).await
    }

    /// Revokes one grant.
    pub async fn delete_grant(&self, app_id: &str, grant_id: &str) -> Result<(), OktaError> {
        let operation = "revoke grant";
        let path = ["api", "v1", "apps", app_id, "grants", grant_id];
        let request = self.request(Method::DELETE, &path);
        self.call(operation, Replay::Safe, request).await.map(drop)
    }

    /// Adds a public key to an app (`POST /api/v1/apps/{id}/credentials/jwks`)
    /// and returns Okta's key object, with its `pks…` id and status.
    pub async fn add_app_key(
        &self,
        app_id: &str,
        key: &serde_json::Value,
    ) -> Result<serde_json::Value, OktaError> {
        let operation = "add app key";
        let path = ["api", "v1", "apps", app_id, "credentials", "jwks"];
        let request = self.request(Method::POST, &path).json(key);
        let response = self
            .call(operation, Replay::OnlyIfNotApplied, request)
            .await?;
        decode(operation, response).await
    }

    /// Lists an app's keys. Okta's docs disagree on the response shape (a
    /// bare array, `{"keys": […]}` or `{"jwks": {"keys": […]}}`), so all
    /// three are accepted.
    pub async fn list_app_keys(&self, app_id: &str) -> Result<Vec<serde_json::Value>, OktaError> {
        let operation = "list app keys";
        let path = ["api", "v1", "apps", app_id, "credentials", "jwks"];
        let request = self.request(Method::GET, &path);
        let response = self.call(operation, Replay::Safe, request).await?;
        let body: serde_json::Value = decode(operation, response).await?;
        let keys = match body {
            serde_json::Value::Array(keys) => Some(keys),
            serde_json::Value::Object(mut object) => match object.remove("keys") {
                Some(serde_json::Value::Array(keys)) => Some(keys),
                _ => object
                    .remove("jwks")
                    .and_then(|mut jwks| jwks.get_mut("keys").map(serde_json::Value::take))
                    .and_then(|keys| match keys {
                        serde_json::Value::Array(keys) => Some(keys),
                        _ => None,
                    }),
            },
            _ => None,
        };
        keys.ok_or_else(|| OktaError::Decode {
            operation,
            detail: "the key list is neither an array nor an object with keys".into(),
        })
    }

    /// Deactivates one of an app's keys by Okta's key id.
    pub async fn deactivate_app_key(&self, app_id: &str, key_id: &str) -> Result<(), OktaError> {
        let operation = "deactivate app key";
        let path = [
            "api",
            "v1",
            "apps",
            app_id,
            "credentials",
            "jwks",
            key_id,
            "lifecycle",
            "deactivate",
        ];
        let request = self.request(Method::POST, &path);
        self.call(operation, Replay::Safe, request).await.map(drop)
    }

    /// Deletes one of an app's inactive keys by Okta's key id.
    pub async fn delete_app_key(&self, app_id: &str, key_id: &str) -> Result<(), OktaError> {
        let operation = "delete app key";
        let path = ["api", "v1", "apps", app_id, "credentials", "jwks", key_id];
        let request = self.request(Method::DELETE, &path);
        self.call(operation, Replay::Safe, request).await.map(drop)
    }

    /// Fetches one app as raw JSON, for a full replacement with
    /// [`OktaClient::replace_app`].
    pub async fn get_app_json(&self, app_id: &str) -> Result<serde_json::Value, OktaError> {
        let operation = "get app";
        let request = self.request(Method::GET, &["api", "v1", "apps", app_id]);
        let response = self.call(operation, Replay::Safe, request).await?;
        decode(operation, response).await
    }

    /// Replaces an app (`PUT /api/v1/apps/{id}`); Okta expects the whole
    /// object, typically a fetched one with changes.
    pub async fn replace_app(
        &self,
        app_id: &str,
        app: &serde_json::Value,
    ) -> Result<(), OktaError> {
        let operation = "replace app";
        let request = self
            .request(Method::PUT, &["api", "v1", "apps", app_id])
            .json(app);
        self.call(operation, Replay::Safe, request).await.map(drop)
    }

    /// Posts a form to an OAuth token endpoint, with a DPoP proof header when
    /// given. The token endpoint takes no API token: the form carries the
    /// client assertion.
    pub async fn request_token(
        &self,
        token_endpoint: &Url,
        form: &[(&str, &str)],
        dpop_proof: Option<&str>,
    ) -> Result<TokenResponse, OktaError> {
        let operation = TOKEN_REQUEST;
        let mut request = self
            .http
            .post(token_endpoint.clone())
            .header(ACCEPT, "application/json")
            .form(form);
        if let Some(proof) = dpop_proof {
            request = request.header("DPoP", proof);
        }
        let response = self.call(operation, Replay::Never, request).await?;
        decode(operation, response).await
    }

    /// Builds an org URL from path segments, percent-encoding each one so
    /// that an id can never change the path.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.org.url().clone();
        url.path_segments_mut()
            .expect("an http(s) org URL always has a path")
            .pop_if_empty()
            .extend(segments);
        url
    }

    fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        self.authorized(self.http.request(method, self.url(segments)))
    }

    /// Adds `Accept`; each attempt gets `Authorization` from
    /// [`OktaClient::authorize_attempt`].
    fn authorized(&self, request: RequestBuilder) -> RequestBuilder {
        request.header(ACCEPT, "application/json")
    }

    /// Builds a request and sends it with [`OktaClient::send`].
    async fn call(
        &self,
        operation: &'static str,
        replay: Replay,
        request: RequestBuilder,
    ) -> Result<Response, OktaError> {
        let request = request.build().map_err(|source| OktaError::Transport {
            operation,
            source: source.without_url(),
        })?;
        self.send_authorized(operation, replay, request).await
    }

    /// Reads the next page link and checks that it stays on the org.
    pub(crate) fn next_page(
        &self,
        operation: &'static str,
        headers: &HeaderMap,
    ) -> Result<Option<String>, OktaError> {
        let values = headers
            .get_all(LINK)
            .iter()
            .filter_map(|value| value.to_str().ok());
        let Some(target) = link::next_link(values) else {
            return Ok(None);
        };
        let url = self.resolve_page(operation, &target, "")?;
        let mut relative = url.path().to_string();
        if let Some(query) = url.query() {
            relative.push('?');
            relative.push_str(query);
        }
        Ok(Some(relative))
    }

    /// Resolves a page link against the org URL. It must stay on the org's
    /// origin and, when `path` is not empty, point at that path, because the
    /// API token is sent with it.
    pub(crate) fn resolve_page(
        &self,
        operation: &'static str,
        link: &str,
        path: &str,
    ) -> Result<Url, OktaError> {
        let base = self.org.url();
        let url = base.join(link).map_err(|err| OktaError::Pagination {
            operation,
            detail: format!("the link {link:?} is not a URL: {err}"),
        })?;
        if url.origin() != base.origin() || !url.username().is_empty() || url.password().is_some() {
            return Err(OktaError::Pagination {
                operation,
                detail: format!("the link {link:?} leaves the org {}", self.org),
            });
        }
        let expected = format!("{}{path}", base.path().trim_end_matches('/'));
        if !path.is_empty() && url.path() != expected {
            return Err(OktaError::Pagination {
                operation,
                detail: format!("the link {link:?} does not point at {path}"),
            });
        }
        Ok(url)
    }
}

async fn decode<T: DeserializeOwned>(
    operation: &'static str,
    response: Response,
) -> Result<T, OktaError> {
    let body = response
        .bytes()
        .await
        .map_err(|source| OktaError::Transport {
            operation,
            source: source.without_url(),
        })?;
    serde_json::from_slice(&body).map_err(|err| OktaError::Decode {
        operation,
        detail: err.to_string(),
    })
}

/// Decodes list items one by one, so that one odd item never fails a page.
fn decode_each<T: DeserializeOwned>(
    operation: &'static str,
    values: Vec<serde_json::Value>,
) -> Vec<T> {
    values
        .into_iter()
        .filter_map(|value| match serde_json::from_value(value) {
            Ok(item) => Some(item),
            Err(error) => {
                tracing::warn!(operation, %error, "skipped a list item Okta returned in an unexpected shape");
                None
            }
        })
        .collect()
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> OktaClient {
        let org = OrgUrl::parse("https://example.okta.com/").expect("valid org");
        OktaClient::new(org, Secret::new("token"), Duration::from_secs(5)).expect("client builds")
    }

    #[test]
    fn url_encodes_ids_as_one_segment() {
        let url = client().url(&["api", "v1", "apps", "../../users", "grants"]);
        assert_eq!(
            url.as_str(),
            "https://example.okta.com/api/v1/apps/..%2F..%2Fusers/grants"
        );
    }

    #[test]
    fn page_links_stay_on_org() {
        let client = client();
        let ok = client.resolve_page(
            "list apps",
            "https://example.okta.com/api/v1/apps?after=x",
            "/api/v1/apps",
        );
        assert!(ok.is_ok());
        let relative = client.resolve_page("list apps", "/api/v1/apps?after=x", "/api/v1/apps");
        assert!(relative.is_ok());
        let other_host = client.resolve_page(
            "list apps",
            "https://evil.example/api/v1/apps",
            "/api/v1/apps",
        );
        assert!(matches!(other_host, Err(OktaError::Pagination { .. })));
        let other_path = client.resolve_page("list apps", "/api/v1/users", "/api/v1/apps");
        assert!(matches!(other_path, Err(OktaError::Pagination { .. })));
    }
}

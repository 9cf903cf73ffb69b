//! Query-string parsing and cursor pagination with `Link` headers, shared by
//! the apps and clients listings.
//!
//! Okta sends each link as a separate `Link` header line:
//! `<{org}/api/v1/apps?limit=2>; rel="self"` and, only when more items
//! follow, `<{org}/api/v1/apps?after={last id}&limit=2>; rel="next"`, where
//! the cursor is the id of the last item on the page.

use axum::http::header::LINK;
use axum::http::{HeaderMap, HeaderValue};
use url::form_urlencoded;

use crate::errors::OktaError;

/// Page size when the request has no `limit`.
pub(crate) const DEFAULT_LIMIT: usize = 20;

/// Largest page size; larger requested values are clamped to it.
pub(crate) const MAX_LIMIT: usize = 200;

/// Decoded query parameters, in request order.
#[derive(Debug, Clone, Default)]
pub(crate) struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    /// Decodes a raw query string such as `q=a&limit=2`.
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .map(|raw| {
                form_urlencoded::parse(raw.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        Self(pairs)
    }

    /// Returns whether the query has a parameter of this name.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(key, _)| key == name)
    }

    /// Returns the first value of a parameter.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Parses `limit`: absent or below 1 gives [`DEFAULT_LIMIT`], above
/// [`MAX_LIMIT`] is clamped, and a non-integer value is rejected with
/// E0000001.
pub(crate) fn parse_limit(value: Option<&str>) -> Result<usize, OktaError> {
    let Some(value) = value else {
        return Ok(DEFAULT_LIMIT);
    };
    let parsed: i64 = value.trim().parse().map_err(|_| {
        OktaError::validation("limit")
            .with_cause(format!("limit: The value '{value}' is not a whole number."))
    })?;
    if parsed < 1 {
        return Ok(DEFAULT_LIMIT);
    }
    Ok(usize::try_from(parsed).map_or(MAX_LIMIT, |limit| limit.min(MAX_LIMIT)))
}

/// A listing request, for building its `Link` headers.
#[derive(Debug)]
pub(crate) struct LinkTarget<'a> {
    /// Org URL without a trailing slash.
    pub(crate) org_url: &'a str,
    /// Listing path, such as `/api/v1/apps`.
    pub(crate) path: &'a str,
    /// Search parameters to repeat in every link, such as `q`, in order.
    pub(crate) search: Vec<(&'static str, &'a str)>,
    /// The request's own cursor, repeated in the `self` link.
    pub(crate) after: Option<&'a str>,
    /// The page size in effect.
    pub(crate) limit: usize,
}

impl LinkTarget<'_> {
    /// Appends the `self` link and, when `next_after` is set, the `next`
    /// link, each as its own `Link` header.
    pub(crate) fn append_headers(&self, headers: &mut HeaderMap, next_after: Option<&str>) {
        headers.append(LINK, self.header(self.after, "self"));
        if let Some(after) = next_after {
            headers.append(LINK, self.header(Some(after), "next"));
        }
    }

    fn header(&self, after: Option<&str>, rel: &str) -> HeaderValue {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.search {
            query.append_pair(name, value);
        }
        if let Some(after) = after {
            query.append_pair("after", after);
        }
        query.append_pair("limit", &self.limit.to_string());

        let link = format!(
            "<{}{}?{}>; rel=\"{rel}\"",
            self.org_url,
            self.path,
            query.finish()
        );
        HeaderValue::from_str(&link).expect("a percent-encoded URL is a valid header value")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_defaults_and_clamps() {
        assert_eq!(parse_limit(None), Ok(20));
        assert_eq!(parse_limit(Some("2")), Ok(2));
        assert_eq!(parse_limit(Some("200")), Ok(200));
        assert_eq!(parse_limit(Some("201")), Ok(200));
        assert_eq!(parse_limit(Some("99999999999999")), Ok(200));
        assert_eq!(parse_limit(Some("0")), Ok(20));
        assert_eq!(parse_limit(Some("-1")), Ok(20));
    }

    #[test]
    fn non_numeric_limit_is_e0000001() {
        let error = parse_limit(Some("ten")).expect_err("not a number");
        assert_eq!(error.code(), "E0000001");
    }

    #[test]
    fn query_params_decode() {
        let params = QueryParams::parse(Some("q=my+app&limit=2&q=second"));
        assert_eq!(params.get("q"), Some("my app"));
        assert_eq!(params.get("limit"), Some("2"));
        assert_eq!(params.get("after"), None);
        assert_eq!(QueryParams::parse(None).get("q"), None);
    }

    #[test]
    fn links_are_separate_headers() {
        let target = LinkTarget {
            org_url: "http://127.0.0.1:1",
            path: "/api/v1/apps",
            search: vec![("q", "my app")],
            after: None,
            limit: 2,
        };
        let mut headers = HeaderMap::new();
        target.append_headers(&mut headers, Some("0oaLAST"));

        let links: Vec<_> = headers
            .get_all(LINK)
            .iter()
            .map(|value| value.to_str().expect("ASCII"))
            .collect();
        assert_eq!(
            links,
            [
                "<http://127.0.0.1:1/api/v1/apps?q=my+app&limit=2>; rel=\"self\"",
                "<http://127.0.0.1:1/api/v1/apps?q=my+app&after=0oaLAST&limit=2>; rel=\"next\"",
            ]
        );
    }

    #[test]
    fn last_page_has_only_self() {
        let target = LinkTarget {
            org_url: "http://127.0.0.1:1",
            path: "/oauth2/v1/clients",
            search: Vec::new(),
            after: Some("0oaPREV"),
            limit: 20,
        };
        let mut headers = HeaderMap::new();
        target.append_headers(&mut headers, None);

        let links: Vec<_> = headers.get_all(LINK).iter().collect();
        assert_eq!(
            links,
            ["<http://127.0.0.1:1/oauth2/v1/clients?after=0oaPREV&limit=20>; rel=\"self\""]
        );
    }
}

//! The Okta org URL, normalised once so that every comparison and every URL
//! built from it agree.

use std::fmt;
use std::net::IpAddr;

use url::{Host, Url};

/// An Okta org URL such as `https://example.okta.com`: `https`, or `http`
/// for a loopback host (the emulator), with no path, query or credentials.
/// Its string form has no trailing slash, which is also the issuer of the
/// org authorization server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgUrl {
    url: Url,
    text: String,
}

impl OrgUrl {
    /// Parses and normalises an org URL. The error says what is wrong and
    /// what form is expected.
    pub fn parse(input: &str) -> Result<Self, String> {
        let url = Url::parse(input.trim()).map_err(|err| {
            format!("{input:?} is not a URL ({err}); expected https://<your-org>.okta.com")
        })?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            "http" => {
                return Err(format!(
                    "{input:?} uses http; Okta orgs are served over https (http is accepted only for a loopback emulator)"
                ));
            }
            other => return Err(format!("{input:?} has scheme {other}; expected https")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "{input:?} contains credentials; pass the API token separately"
            ));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "{input:?} has a path, query or fragment; use only the org's origin, such as https://example.okta.com"
            ));
        }
        let text = url.as_str().trim_end_matches('/').to_string();
        Ok(Self { url, text })
    }

    /// Returns the URL with its trailing slash, for joining paths.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Returns the normalised URL without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Returns whether `issuer` names this org, ignoring one trailing slash.
    pub fn is_issuer(&self, issuer: &str) -> bool {
        OrgUrl::parse(issuer).is_ok_and(|other| other == *self)
    }
}

impl fmt::Display for OrgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_trailing_slash() {
        let org = OrgUrl::parse("https://Example.okta.com/").expect("valid");
        assert_eq!(org.as_str(), "https://example.okta.com");
        assert!(org.is_issuer("https://example.okta.com"));
        assert!(org.is_issuer("https://example.okta.com/"));
        assert!(!org.is_issuer("https://example.okta.com/oauth2/default"));
        assert!(!org.is_issuer("https://other.okta.com"));
    }

    #[test]
    fn http_only_on_loopback() {
        assert!(OrgUrl::parse("http://127.0.0.1:8080").is_ok());
        assert!(OrgUrl::parse("http://localhost:8080").is_ok());
        assert!(OrgUrl::parse("http://[::1]:8080").is_ok());
        let err = OrgUrl::parse("http://example.okta.com").expect_err("http rejected");
        assert!(err.contains("https"), "{err}");
    }

    #[test]
    fn rejects_paths_and_credentials() {
        assert!(OrgUrl::parse("https://example.okta.com/oauth2/default").is_err());
        assert!(OrgUrl::parse("https://user:pw@example.okta.com").is_err());
        assert!(OrgUrl::parse("https://example.okta.com/?x=1").is_err());
        assert!(OrgUrl::parse("example.okta.com").is_err());
    }
}

//! `Link` headers of an Okta list response, one header line per input line,
//! read and resolved as the apps list does before it follows the next page
//! with the API token. A next page must stay on the org and on the apps
//! list.

#![no_main]

use std::sync::OnceLock;

use http::header::{HeaderMap, HeaderValue, LINK};
use libfuzzer_sys::fuzz_target;
use registrar_server::fuzzing::PageLinks;

fn links() -> &'static PageLinks {
    static LINKS: OnceLock<PageLinks> = OnceLock::new();
    LINKS.get_or_init(|| PageLinks::new("https://example.okta.com"))
}

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|byte| *byte == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(LINK, value);
        }
    }
    let links = links();
    if let Ok(Some(next)) = links.next_apps_page(&headers) {
        assert_eq!(
            next.origin(),
            links.org().origin(),
            "next page {next} left the org"
        );
        assert_eq!(
            next.path(),
            "/api/v1/apps",
            "next page {next} left the apps list"
        );
        assert!(
            next.username().is_empty(),
            "next page {next} has a user name"
        );
        assert!(next.password().is_none(), "next page {next} has a password");
        assert!(next.fragment().is_none(), "next page {next} has a fragment");
    }
});

//! Validation of request fields, done before anything is sent to Okta.

use std::collections::HashSet;
use std::fmt;

/// The maximum client name length, in characters.
pub const MAX_CLIENT_NAME_LEN: usize = 100;
/// The maximum number of scope ids in one request.
pub const MAX_SCOPES: usize = 50;
/// The maximum scope id length, in characters. Okta's scope ids, such as
/// `okta.authorizationServers.manage` (32 characters), are far shorter.
pub const MAX_SCOPE_ID_LEN: usize = 100;
/// The maximum client id length, in characters. Okta's app ids, such as
/// `0oa1b2c3d4e5f6g7h8i9`, have 20.
pub const MAX_CLIENT_ID_LEN: usize = 100;
/// The maximum `kid` length, in characters.
pub const MAX_KID_LEN: usize = 255;
/// The maximum length of a DPoP proof's resource URL, in bytes. 8 KiB is far
/// more than resource URLs need, and keeps each proof small.
pub const MAX_PROOF_URL_LEN: usize = 8192;
const MAX_HTTP_METHOD_LEN: usize = 32;

/// A request field that failed validation, with the reason and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidArgument {
    /// The field path, such as `jwks.keys[0].n`.
    pub field: String,
    /// The problem and its fix.
    pub message: String,
}

impl InvalidArgument {
    /// Builds an error for one field.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for InvalidArgument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for InvalidArgument {}

/// Validates a client name: 1 to 100 characters, no control characters, no
/// leading or trailing whitespace.
pub fn client_name(name: &str) -> Result<(), InvalidArgument> {
    app_name("client_name", name)
}

/// Validates an app name in the named field with the rules of
/// [`client_name`].
pub fn app_name(field: &str, name: &str) -> Result<(), InvalidArgument> {
    if name.is_empty() {
        return Err(InvalidArgument::new(
            field,
            "is empty; give the service app a name",
        ));
    }
    let length = name.chars().count();
    if length > MAX_CLIENT_NAME_LEN {
        return Err(InvalidArgument::new(
            field,
            format!("is {length} characters long; use at most {MAX_CLIENT_NAME_LEN}"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(InvalidArgument::new(
            field,
            "contains a control character; remove it",
        ));
    }
    if name.chars().any(is_invisible_format) {
        return Err(InvalidArgument::new(
            field,
            "contains an invisible formatting character (such as a zero-width space or a bidirectional override); remove it",
        ));
    }
    if name.trim() != name {
        return Err(InvalidArgument::new(
            field,
            "has leading or trailing whitespace; remove it",
        ));
    }
    Ok(())
}

/// Validates a `name_prefix`: at most as long as a client name, without
/// control or invisible formatting characters.
pub fn name_prefix(prefix: &str) -> Result<(), InvalidArgument> {
    let field = "name_prefix";
    let length = prefix.chars().count();
    if length > MAX_CLIENT_NAME_LEN {
        return Err(InvalidArgument::new(
            field,
            format!(
                "is {length} characters long; use at most {MAX_CLIENT_NAME_LEN}, the longest client name"
            ),
        ));
    }
    if prefix
        .chars()
        .any(|ch| ch.is_control() || is_invisible_format(ch))
    {
        return Err(InvalidArgument::new(
            field,
            "contains a control or invisible formatting character; remove it",
        ));
    }
    Ok(())
}

/// Returns whether `ch` is an invisible formatting character that would
/// let two names look alike: zero-width characters, bidirectional controls
/// and the byte order mark (Unicode general category Cf, in the ranges that
/// occur in practice).
fn is_invisible_format(ch: char) -> bool {
    matches!(
        ch,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// Validates a client id. The registrar only manages apps whose client id is
/// the Okta app id, which is alphanumeric, so anything else is a mistake (and
/// could otherwise change the path of an Okta URL).
pub fn client_id(id: &str) -> Result<(), InvalidArgument> {
    let field = "client_id";
    if id.is_empty() {
        return Err(InvalidArgument::new(
            field,
            "is empty; pass the client_id that CreateServiceApp returned",
        ));
    }
    let length = id.chars().count();
    if length > MAX_CLIENT_ID_LEN {
        return Err(too_long(field, length, MAX_CLIENT_ID_LEN));
    }
    if !id.chars().all(|ch| ch.is_ascii_alphanumeric()) {
        return Err(InvalidArgument::new(
            field,
            format!(
                "{:?} is not an Okta client id; expected the app id Okta returned, such as 0oa1b2c3d4e5f6g7h8i9",
                truncate(id, 40)
            ),
        ));
    }
    Ok(())
}

/// Validates the `scope_ids` field and returns the ids without duplicates,
/// in request order.
pub fn scope_ids(ids: &[String]) -> Result<Vec<String>, InvalidArgument> {
    scope_list("scope_ids", ids)
}

/// Validates a list of scope ids in the named field and returns them
/// without duplicates, in request order.
pub fn scope_list(field: &str, ids: &[String]) -> Result<Vec<String>, InvalidArgument> {
    if ids.is_empty() {
        return Err(InvalidArgument::new(
            field,
            "is empty; list at least one Okta scope, such as okta.users.read",
        ));
    }
    if ids.len() > MAX_SCOPES {
        return Err(InvalidArgument::new(
            field,
            format!(
                "has {} entries; send at most {MAX_SCOPES} per request",
                ids.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    let mut unique = Vec::new();
    for (index, id) in ids.iter().enumerate() {
        scope_id(&format!("{field}[{index}]"), id)?;
        if seen.insert(id.as_str()) {
            unique.push(id.clone());
        }
    }
    Ok(unique)
}

/// Validates one scope id: dot-separated segments of letters, digits, `_` and
/// `-`, at least two segments, as in `okta.users.read` or `ssf.read`.
fn scope_id(field: &str, id: &str) -> Result<(), InvalidArgument> {
    let length = id.chars().count();
    if length > MAX_SCOPE_ID_LEN {
        return Err(too_long(field, length, MAX_SCOPE_ID_LEN));
    }
    let segments_ok = id.split('.').all(|segment| {
        !segment.is_empty()
            && segment
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
    });
    if !id.contains('.') || !segments_ok {
        return Err(InvalidArgument::new(
            field,
            format!(
                "{:?} is not a valid Okta scope id; use a dotted id such as okta.users.read",
                truncate(id, 60)
            ),
        ));
    }
    Ok(())
}

/// Validates an HTTP method for a DPoP proof's `htm` claim: an upper-case
/// token such as `GET`.
pub fn http_method(method: &str) -> Result<&str, InvalidArgument> {
    let token_char =
        |ch: char| ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '-' || ch == '_';
    let length = method.chars().count();
    if length > MAX_HTTP_METHOD_LEN {
        return Err(too_long("http_method", length, MAX_HTTP_METHOD_LEN));
    }
    if method.is_empty() || !method.chars().all(token_char) {
        return Err(InvalidArgument::new(
            "http_method",
            format!(
                "{:?} is not an HTTP method; use an upper-case method such as GET or POST",
                truncate(method, 20)
            ),
        ));
    }
    Ok(method)
}

/// Validates the URL of a resource request and returns it as a DPoP proof's
/// `htu` claim: without query and fragment (RFC 9449 section 4.2).
pub fn proof_url(input: &str) -> Result<String, InvalidArgument> {
    let invalid = || {
        InvalidArgument::new(
            "http_url",
            format!(
                "{:?} is not an absolute http(s) URL; pass the full URL of the resource request",
                truncate(input, 100)
            ),
        )
    };
    if input.len() > MAX_PROOF_URL_LEN {
        return Err(InvalidArgument::new(
            "http_url",
            format!(
                "is {} bytes long; use at most {MAX_PROOF_URL_LEN}",
                input.len()
            ),
        ));
    }
    let mut url = url::Url::parse(input).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(InvalidArgument::new(
            "http_url",
            "contains credentials; remove the user name and password, which would otherwise land in the proof",
        ));
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url.to_string())
}

/// Validates a key id in the named field: at most [`MAX_KID_LEN`]
/// characters without control characters. Whether a kid may be empty is
/// left to the caller, because some fields allow it.
pub fn kid(field: &str, kid: &str) -> Result<(), InvalidArgument> {
    let length = kid.chars().count();
    if length > MAX_KID_LEN {
        return Err(too_long(field, length, MAX_KID_LEN));
    }
    if kid.chars().any(char::is_control) {
        return Err(InvalidArgument::new(
            field,
            "contains a control character; remove it",
        ));
    }
    Ok(())
}

/// Builds the error of a value longer than its limit, naming both lengths.
fn too_long(field: &str, length: usize, max: usize) -> InvalidArgument {
    InvalidArgument::new(
        field,
        format!("is {length} characters long; use at most {max}"),
    )
}

/// Shortens untrusted input before it is echoed in an error message.
pub fn truncate(value: &str, max_chars: usize) -> String {
    if value.chars().count() <= max_chars {
        return value.to_string();
    }
    let mut short: String = value.chars().take(max_chars).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_name_rules() {
        assert!(client_name("billing-worker").is_ok());
        assert!(client_name(&"a".repeat(100)).is_ok());
        assert_eq!(client_name("").expect_err("empty").field, "client_name");
        assert!(client_name(&"a".repeat(101)).is_err());
        assert!(client_name("tab\there").is_err());
        assert!(client_name(" padded").is_err());
        assert!(client_name("svc\u{200B}").is_err());
        assert!(client_name("svc\u{202E}gnp.exe").is_err());
        assert!(client_name("\u{FEFF}svc").is_err());
        assert!(client_name("café-service").is_ok());
        assert!(name_prefix(&"a".repeat(101)).is_err());
        assert!(name_prefix("").is_ok());
    }

    #[test]
    fn client_id_rules() {
        assert!(client_id("0oa1b2c3d4e5f6g7h8i9").is_ok());
        assert!(client_id("").is_err());
        assert!(client_id("..").is_err());
        assert!(client_id("0oa/grants").is_err());
        assert!(client_id(&"a".repeat(101)).is_err());
    }

    #[test]
    fn scope_rules() {
        let ids = vec![
            "okta.users.read".to_string(),
            "ssf.read".to_string(),
            "okta.users.read".to_string(),
        ];
        assert_eq!(
            scope_ids(&ids).expect("valid"),
            vec!["okta.users.read", "ssf.read"]
        );
        assert_eq!(scope_ids(&[]).expect_err("empty").field, "scope_ids");
        for bad in [
            "okta users.read",
            "okta..read",
            "openid",
            ".okta.read",
            "okta.read.",
        ] {
            let err = scope_ids(&[bad.to_string()]).expect_err(bad);
            assert_eq!(err.field, "scope_ids[0]", "{bad}");
        }
        let many = vec!["okta.users.read".to_string(); 51];
        assert!(scope_ids(&many).is_err());
    }

    #[test]
    fn proof_url_drops_query_and_fragment() {
        assert_eq!(
            proof_url("https://org.example/api/v1/users?limit=2#x").expect("valid"),
            "https://org.example/api/v1/users"
        );
        assert_eq!(
            proof_url("ftp://x/y").expect_err("scheme").field,
            "http_url"
        );
        assert!(proof_url("/relative").is_err());
        assert!(http_method("GET").is_ok());
        assert!(http_method("M-SEARCH").is_ok());
        assert_eq!(
            proof_url("https://user:secret@api.example.com/a")
                .expect_err("credentials")
                .field,
            "http_url"
        );
        assert!(http_method("get").is_err());
        assert!(http_method("").is_err());
    }

    #[test]
    fn kid_rules() {
        assert!(kid("kid", "").is_ok());
        assert!(kid("kid", &"k".repeat(MAX_KID_LEN)).is_ok());
        let err = kid("kid", &"k".repeat(MAX_KID_LEN + 1)).expect_err("long");
        assert_eq!(err.field, "kid");
        assert!(err.message.contains("is 256 characters long"), "{err}");
        assert_eq!(kid("kid", "a\nb").expect_err("control").field, "kid");
    }

    #[test]
    fn length_errors_name_size_and_limit() {
        let err = client_id(&"a".repeat(101)).expect_err("long client id");
        assert_eq!(err.message, "is 101 characters long; use at most 100");
        let err = scope_ids(&[format!("okta.{}", "a".repeat(96))]).expect_err("long scope");
        assert_eq!(err.field, "scope_ids[0]");
        assert_eq!(err.message, "is 101 characters long; use at most 100");
        let err = http_method(&"A".repeat(33)).expect_err("long method");
        assert_eq!(err.message, "is 33 characters long; use at most 32");
    }

    #[test]
    fn truncate_marks_cut() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abcdef", 3), "abc…");
    }
}

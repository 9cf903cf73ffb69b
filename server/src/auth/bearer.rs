//! The bearer token file: one `[[caller]]` entry per caller, each with the
//! SHA-256 digest of its token, so that the file never contains a token.
//!
//! ```toml
//! [[caller]]
//! name = "billing"
//! token_sha256 = "<64 hex digits: the SHA-256 of the token>"
//! ```
//!
//! A plain SHA-256 is enough because tokens must be at least
//! [`MIN_TOKEN_LENGTH`] characters of high-entropy random data, which no
//! dictionary attack on a leaked file can guess.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use anyhow::{Context, bail};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use toml::Spanned;

/// The minimum length of a bearer token, in characters.
pub const MIN_TOKEN_LENGTH: usize = 32;

/// The maximum length of a caller name in the bearer token file.
const MAX_NAME_LENGTH: usize = 128;

/// The callers of the bearer token file and their token digests, and the
/// file they were read from. Clones share the entries, so a reload through
/// one is seen by all.
#[derive(Clone)]
pub struct BearerTokens {
    entries: Arc<RwLock<Arc<[Entry]>>>,
    path: Option<PathBuf>,
}

#[derive(Clone)]
struct Entry {
    name: String,
    digest: [u8; 32],
}

/// The file as written, with the position of each value for messages.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    caller: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: Spanned<String>,
    token_sha256: Spanned<String>,
}

impl BearerTokens {
    /// Reads and validates the bearer token file. The error names the file,
    /// the line and the fix.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            entries: Arc::new(RwLock::new(read(path)?)),
            path: Some(path.to_path_buf()),
        })
    }

    /// Parses and validates the text of a bearer token file. The result has
    /// no file to reload.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(Self {
            entries: Arc::new(RwLock::new(parse_entries(text)?)),
            path: None,
        })
    }

    /// Returns the file the callers were read from, or `None` after
    /// [`BearerTokens::parse`].
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Reads the file again and puts its callers in force, for the next
    /// request. On error the previous callers stay in force and the error,
    /// which never quotes a line of the file, is returned.
    pub fn reload(&self) -> anyhow::Result<()> {
        let Some(path) = &self.path else {
            bail!(
                "there is no bearer token file to reload; start the server with --bearer-tokens-file"
            );
        };
        let entries = read(path)?;
        let callers = entries.len();
        *self.entries.write().unwrap_or_else(PoisonError::into_inner) = entries;
        tracing::info!(path = %path.display(), callers, "bearer token file reloaded");
        Ok(())
    }

    /// Returns the name of the caller whose token this is, or `None`. The
    /// token's digest is compared with every entry in constant time.
    pub fn verify(&self, token: &str) -> Option<String> {
        self.name_of(&TokenDigest::of(token))
    }

    /// Returns the name of the caller whose token has this digest, or
    /// `None`: after a reload, whether a token accepted earlier is still
    /// valid. Every entry is compared in constant time.
    pub fn name_of(&self, digest: &TokenDigest) -> Option<String> {
        let mut found = None;
        for entry in self.current().iter() {
            if bool::from(entry.digest.ct_eq(&digest.0)) {
                found = Some(entry.name.clone());
            }
        }
        found
    }

    /// Returns the names of the callers, in file order.
    pub fn callers(&self) -> Vec<String> {
        self.current()
            .iter()
            .map(|entry| entry.name.clone())
            .collect()
    }

    fn current(&self) -> Arc<[Entry]> {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The SHA-256 digest of a bearer token that the server accepted, kept
/// with the request so that an open stream can check after a reload that
/// the token is still valid. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    /// Returns the digest of `token`.
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenDigest(..)")
    }
}

/// Reads and parses a bearer token file. The error names the option, the
/// file and the line.
fn read(path: &Path) -> anyhow::Result<Arc<[Entry]>> {
    let text = crate::config::read_settings_file("--bearer-tokens-file", path)?;
    parse_entries(&text).with_context(|| format!("--bearer-tokens-file {}", path.display()))
}

/// Parses and validates the text of a bearer token file.
fn parse_entries(text: &str) -> anyhow::Result<Arc<[Entry]>> {
    // toml's own error text quotes the offending line, which may hold a
    // token pasted by mistake, so only its message and line are kept.
    let file: TokenFile = toml::from_str(text).map_err(|err| {
        let line = err.span().map(|span| line_of(text, span.start));
        match line {
            Some(line) => anyhow::anyhow!("line {line}: {}", err.message()),
            None => anyhow::anyhow!("{}", err.message()),
        }
    })?;
    if file.caller.is_empty() {
        bail!(
            "no [[caller]] entries; add one per caller with the output of `registrar hash-token --name NAME`"
        );
    }

    let mut entries = Vec::with_capacity(file.caller.len());
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut digests: HashMap<[u8; 32], usize> = HashMap::new();
    for raw in file.caller {
        let line = line_of(text, raw.name.span().start);
        let name = raw.name.into_inner();
        validate_name(&name).with_context(|| format!("line {line}: name"))?;
        // Messages name lines, not values, because a token pasted into the
        // wrong field must not reach the log.
        if let Some(first) = names.insert(name.clone(), line) {
            bail!(
                "line {line}: the caller of line {first} has the same name; give each caller one entry"
            );
        }
        let digest_line = line_of(text, raw.token_sha256.span().start);
        let digest = parse_digest(raw.token_sha256.get_ref())
            .with_context(|| format!("line {digest_line}: token_sha256"))?;
        if let Some(other) = digests.insert(digest, digest_line) {
            bail!(
                "line {digest_line}: the caller of line {other} has the same token; give each caller its own token"
            );
        }
        entries.push(Entry { name, digest });
    }
    Ok(entries.into())
}

impl fmt::Debug for BearerTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerTokens")
            .field("callers", &self.callers())
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Builds the `[[caller]]` entry for a token, to paste into the bearer
/// token file. Rejects a short token or a bad name with a message that
/// states what is expected.
pub fn token_file_entry(name: &str, token: &str) -> anyhow::Result<String> {
    validate_name(name).context("--name")?;
    if token.is_empty() {
        bail!(
            "no token on standard input; pipe the token in, for example `registrar hash-token --name {name} < token-file`"
        );
    }
    if token
        .chars()
        .any(|ch| ch.is_whitespace() || ch.is_control())
    {
        bail!(
            "the token contains whitespace or control characters; use a single word, such as the output of `openssl rand -hex 32`"
        );
    }
    let length = token.chars().count();
    if length < MIN_TOKEN_LENGTH {
        bail!(
            "the token has {length} characters, fewer than {MIN_TOKEN_LENGTH}; generate a random one, such as with `openssl rand -hex 32`"
        );
    }
    let digest = Sha256::digest(token.as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(format!(
        "[[caller]]\nname = \"{name}\"\ntoken_sha256 = \"{hex}\"\n"
    ))
}

/// Checks a caller name: 1 to 128 ASCII letters, digits, `.`, `_` or `-`.
fn validate_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() {
        bail!("is empty; name the caller, such as \"billing\"");
    }
    if name.len() > MAX_NAME_LENGTH {
        bail!(
            "has {} characters; use at most {MAX_NAME_LENGTH}",
            name.len()
        );
    }
    if let Some(ch) = name
        .chars()
        .find(|ch| !(ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-')))
    {
        // The name is not quoted, because it may be a token pasted into the
        // wrong field.
        bail!("contains {ch:?}; use only ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// Parses a SHA-256 digest written as 64 hex digits. The message never
/// quotes the value, because it may be a token pasted by mistake.
fn parse_digest(value: &str) -> anyhow::Result<[u8; 32]> {
    let fix = "put the output of `registrar hash-token` here, and if this is the token itself, remove it from the file";
    if value.len() != 64 {
        bail!(
            "has {} characters, not the 64 hex digits of a SHA-256 digest; {fix}",
            value.len()
        );
    }
    let mut digest = [0u8; 32];
    for (index, pair) in value.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok();
        match text.and_then(|text| u8::from_str_radix(text, 16).ok()) {
            Some(byte) => digest[index] = byte,
            None => bail!("is not a hex SHA-256 digest; {fix}"),
        }
    }
    Ok(digest)
}

/// Returns the 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&byte| byte == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef-billing";

    fn file_with(entries: &[(&str, &str)]) -> String {
        entries
            .iter()
            .map(|(name, token)| token_file_entry(name, token).expect("valid entry"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn entry_round_trips_through_parse() {
        let text = file_with(&[("billing", TOKEN)]);
        let tokens = BearerTokens::parse(&text).expect("valid file");
        assert_eq!(tokens.verify(TOKEN).as_deref(), Some("billing"));
        assert_eq!(
            tokens.verify("0123456789abcdef0123456789abcdef-other"),
            None
        );
        assert_eq!(tokens.verify(""), None);
    }

    #[test]
    fn entry_never_contains_token() {
        let entry = token_file_entry("billing", TOKEN).expect("valid entry");
        assert!(!entry.contains(TOKEN), "{entry}");
        assert!(entry.contains("token_sha256 = \""), "{entry}");
    }

    #[test]
    fn short_token_is_rejected() {
        let error = token_file_entry("billing", "too-short").expect_err("short token");
        assert!(error.to_string().contains("fewer than 32"), "{error}");
    }

    #[test]
    fn bad_name_is_rejected() {
        let error = token_file_entry("bill ing", TOKEN).expect_err("space in name");
        assert!(format!("{error:#}").contains("--name"), "{error:#}");
    }

    #[test]
    fn parse_errors_name_the_line() {
        let digest = "a".repeat(64);
        let cases = [
            (String::new(), "no [[caller]] entries"),
            (
                format!("[[caller]]\nname = \"a\"\ntoken_sha256 = \"{digest}\"\nextra = 1\n"),
                "line 4",
            ),
            (
                "[[caller]]\nname = \"a\"\n".to_string(),
                "missing field `token_sha256`",
            ),
            (
                format!("[[caller]]\nname = \"a b\"\ntoken_sha256 = \"{digest}\"\n"),
                "line 2: name",
            ),
            (
                "[[caller]]\nname = \"a\"\ntoken_sha256 = \"not-hex\"\n".to_string(),
                "line 3: token_sha256",
            ),
            (
                format!(
                    "[[caller]]\nname = \"a\"\ntoken_sha256 = \"{digest}\"\n[[caller]]\nname = \"a\"\ntoken_sha256 = \"{}\"\n",
                    "b".repeat(64)
                ),
                "line 5: the caller of line 2 has the same name",
            ),
            (
                format!(
                    "[[caller]]\nname = \"a\"\ntoken_sha256 = \"{digest}\"\n[[caller]]\nname = \"b\"\ntoken_sha256 = \"{digest}\"\n"
                ),
                "line 6: the caller of line 3 has the same token",
            ),
        ];
        for (text, expected) in cases {
            let error = BearerTokens::parse(&text).expect_err(&text);
            let message = format!("{error:#}");
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    /// A token pasted into `name`, or the fields swapped, is not quoted
    /// either.
    #[test]
    fn pasted_name_is_not_echoed() {
        let digest = "c".repeat(64);
        let swapped = format!("[[caller]]\nname = \"{digest}\"\ntoken_sha256 = \"billing\"\n");
        let in_name = format!("[[caller]]\nname = \"q8v+{TOKEN}\"\ntoken_sha256 = \"{digest}\"\n");
        let twice = format!(
            "[[caller]]\nname = \"{TOKEN}\"\ntoken_sha256 = \"{digest}\"\n\
             [[caller]]\nname = \"{TOKEN}\"\ntoken_sha256 = \"{}\"\n",
            "d".repeat(64)
        );
        for text in [swapped, in_name, twice] {
            let message = format!("{:#}", BearerTokens::parse(&text).expect_err(&text));
            assert!(!message.contains(TOKEN), "{message}");
            assert!(!message.contains(&digest), "{message}");
            assert!(message.contains("line "), "{message}");
        }
    }

    #[test]
    fn pasted_token_is_not_echoed() {
        let text = format!("[[caller]]\nname = \"a\"\ntoken_sha256 = \"{TOKEN}\"\n");
        let message = format!("{:#}", BearerTokens::parse(&text).expect_err("plain token"));
        assert!(!message.contains(TOKEN), "{message}");
        assert!(message.contains("line 3"), "{message}");
        let text = format!("[[caller]]\nname = \"a\"\ntoken = \"{TOKEN}\"\n");
        let message = format!("{:#}", BearerTokens::parse(&text).expect_err("unknown key"));
        assert!(!message.contains(TOKEN), "{message}");
        assert!(message.contains("line 3"), "{message}");
    }

    #[test]
    fn digest_names_its_caller_until_reloaded() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("tokens.toml");
        std::fs::write(&path, file_with(&[("billing", TOKEN)])).expect("write");
        let tokens = BearerTokens::load(&path).expect("valid");
        let digest = TokenDigest::of(TOKEN);
        assert_eq!(tokens.name_of(&digest).as_deref(), Some("billing"));
        assert_eq!(format!("{digest:?}"), "TokenDigest(..)");

        let other = "0123456789abcdef0123456789abcdef-replaced";
        std::fs::write(&path, file_with(&[("billing", other)])).expect("write");
        tokens.reload().expect("valid");
        assert_eq!(tokens.name_of(&digest), None, "the old token is gone");
        assert_eq!(
            tokens.name_of(&TokenDigest::of(other)).as_deref(),
            Some("billing")
        );
    }

    #[test]
    fn debug_shows_names_only() {
        let tokens = BearerTokens::parse(&file_with(&[("billing", TOKEN)])).expect("valid");
        let printed = format!("{tokens:?}");
        assert!(printed.contains("billing"), "{printed}");
        let entry = token_file_entry("billing", TOKEN).expect("valid entry");
        let digest = entry.split('"').nth(3).expect("digest in entry");
        assert!(!printed.contains(digest), "{printed}");
    }
}

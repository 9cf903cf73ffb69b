//! A wrapper for secret strings that keeps them out of `Debug` output.

use std::fmt;

/// A secret value, such as the Okta API token. Its `Debug` output is
/// redacted, and it has no `Display`, so it cannot end up in a log line or an
/// error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Returns the secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_value() {
        let secret = Secret::new("00abcdefSSWS");
        let printed = format!("{secret:?} {:#?}", secret);
        assert!(!printed.contains("00abcdefSSWS"), "{printed}");
        assert!(printed.contains("redacted"));
    }
}

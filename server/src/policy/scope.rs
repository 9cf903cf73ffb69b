//! Scope patterns of the policy file and the rule that matches scope ids
//! against them.
//!
//! A scope id is a list of dot-separated segments, such as
//! `okta.users.read`. A pattern is one of:
//!
//! - an exact id (`okta.users.read`), which matches only that id;
//! - a prefix followed by `.*` (`okta.users.*`), which matches every id that
//!   consists of the prefix's segments followed by at least one more
//!   non-empty segment: `okta.users.read` and `okta.users.read.self`, but
//!   neither `okta.users` nor `okta.usersX.read` nor `okta.users.`;
//! - `*` alone, which matches every id.
//!
//! Matching compares whole segments, never characters, so a prefix cannot
//! match a longer segment that merely starts with the same letters.

use std::fmt;

/// One entry of a caller's `scopes` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopePattern {
    /// Exactly this scope id.
    Exact(String),
    /// Every scope id below this prefix, written `PREFIX.*`.
    Below(String),
    /// Every scope id, written `*`.
    Any,
}

impl ScopePattern {
    /// Parses a pattern. The error states what is wrong and the fix.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "*" {
            return Ok(Self::Any);
        }
        let (body, below) = match text.strip_suffix(".*") {
            Some(prefix) => (prefix, true),
            None => (text, false),
        };
        if body.contains('*') {
            return Err(format!(
                "{text:?} has a '*' that is not a whole last segment; write a prefix as PREFIX.* (such as okta.users.*), or * for every scope"
            ));
        }
        if let Some(segment) = body.split('.').find(|segment| !is_segment(segment)) {
            return Err(format!(
                "{text:?} has the segment {segment:?}; segments are non-empty ASCII letters, digits, '_' or '-', separated by '.'"
            ));
        }
        if below {
            Ok(Self::Below(body.to_string()))
        } else {
            Ok(Self::Exact(body.to_string()))
        }
    }

    /// Returns whether the scope id matches this pattern.
    pub fn matches(&self, scope_id: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(id) => id == scope_id,
            Self::Below(prefix) => {
                let Some(rest) = scope_id
                    .strip_prefix(prefix.as_str())
                    .and_then(|rest| rest.strip_prefix('.'))
                else {
                    return false;
                };
                rest.split('.').all(|segment| !segment.is_empty())
            }
        }
    }
}

impl fmt::Display for ScopePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Exact(id) => f.write_str(id),
            Self::Below(prefix) => write!(f, "{prefix}.*"),
        }
    }
}

/// Returns whether `segment` is a valid segment of a scope id, by the rule
/// that request validation applies to scope ids.
fn is_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn pattern(text: &str) -> ScopePattern {
        ScopePattern::parse(text).expect("valid pattern")
    }

    #[test]
    fn examples_match_by_segment() {
        let users = pattern("okta.users.*");
        assert!(users.matches("okta.users.read"));
        assert!(users.matches("okta.users.read.self"));
        assert!(!users.matches("okta.users"));
        assert!(!users.matches("okta.users."));
        assert!(!users.matches("okta.usersX.read"));
        assert!(!users.matches("okta.users..read"));
        assert!(!users.matches("okta.roles.manage"));
        assert!(!users.matches("xokta.users.read"));

        let exact = pattern("okta.users.read");
        assert!(exact.matches("okta.users.read"));
        assert!(!exact.matches("okta.users.read.self"));
        assert!(!exact.matches("okta.users.rea"));

        assert!(pattern("*").matches("okta.apps.manage"));
    }

    #[test]
    fn parse_rejects_misplaced_stars() {
        for text in [
            "okta.users*",
            "okta.*.read",
            "*.read",
            "okta.users.**",
            "",
            "okta..users",
            ".*",
            "okta.users.",
            "okta users",
        ] {
            assert!(ScopePattern::parse(text).is_err(), "{text:?} parsed");
        }
        let message = ScopePattern::parse("okta.users*").expect_err("invalid");
        assert!(message.contains("okta.users.*"), "{message}");
    }

    #[test]
    fn display_round_trips() {
        for text in ["*", "okta.users.*", "okta.users.read", "ssf.read"] {
            assert_eq!(pattern(text).to_string(), text);
        }
    }

    /// Generates one segment of a scope id.
    fn segment() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_-]{1,8}"
    }

    fn segments(range: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(segment(), range)
    }

    /// Any text made of scope characters and dots, valid or not.
    fn scope_like() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_.-]{0,30}"
    }

    proptest! {
        /// A prefix pattern matches exactly the ids whose segments start with
        /// the prefix's segments and go on with at least one non-empty one.
        #[test]
        fn below_matches_iff_segment_prefix(prefix in segments(1..=3), id in scope_like()) {
            let pattern = ScopePattern::Below(prefix.join("."));
            let id_segments: Vec<&str> = id.split('.').collect();
            let expected = id_segments.len() > prefix.len()
                && id_segments.iter().zip(&prefix).all(|(left, right)| left == right)
                && id_segments.iter().all(|segment| !segment.is_empty());
            prop_assert_eq!(pattern.matches(&id), expected);
        }

        /// Every id built from the prefix and more segments matches.
        #[test]
        fn below_matches_longer_ids(prefix in segments(1..=3), rest in segments(1..=3)) {
            let pattern = ScopePattern::Below(prefix.join("."));
            let id = format!("{}.{}", prefix.join("."), rest.join("."));
            prop_assert!(pattern.matches(&id));
        }

        /// Extending the prefix's last segment never matches, whatever
        /// follows: `okta.users.*` does not match `okta.usersX...`.
        #[test]
        fn below_rejects_extended_segment(
            prefix in segments(1..=3),
            extra in "[a-zA-Z0-9_-]{1,4}",
            rest in segments(0..=2),
        ) {
            let pattern = ScopePattern::Below(prefix.join("."));
            let mut id = format!("{}{extra}", prefix.join("."));
            for segment in &rest {
                id.push('.');
                id.push_str(segment);
            }
            prop_assert!(!pattern.matches(&id));
        }

        /// The prefix alone, and the prefix with an empty segment after it,
        /// never match.
        #[test]
        fn below_rejects_the_prefix_itself(prefix in segments(1..=3)) {
            let pattern = ScopePattern::Below(prefix.join("."));
            let joined = prefix.join(".");
            prop_assert!(!pattern.matches(&joined));
            let with_dot = format!("{joined}.");
            prop_assert!(!pattern.matches(&with_dot));
        }

        /// An exact pattern matches only its own id.
        #[test]
        fn exact_matches_only_itself(pattern_id in segments(1..=3), id in scope_like()) {
            let pattern_id = pattern_id.join(".");
            let pattern = ScopePattern::Exact(pattern_id.clone());
            prop_assert_eq!(pattern.matches(&id), id == pattern_id);
        }

        /// Parsing the display form gives the same pattern.
        #[test]
        fn parse_display_round_trip(prefix in segments(1..=3), below in any::<bool>()) {
            let joined = prefix.join(".");
            let original = if below { ScopePattern::Below(joined) } else { ScopePattern::Exact(joined) };
            prop_assert_eq!(ScopePattern::parse(&original.to_string()), Ok(original));
        }
    }
}

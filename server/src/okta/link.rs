//! Parsing of RFC 8288 `Link` headers, which Okta uses for pagination.

/// Returns the target of the first `rel="next"` link among the header
/// values. Okta sends each link as its own header line, but a single line
/// with comma-separated links is accepted too.
pub(super) fn next_link<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<String> {
    values
        .into_iter()
        .flat_map(split_links)
        .find(|link| link_has_rel(link, "next"))
        .and_then(link_target)
}

/// Splits one header value into links at commas outside `<…>`.
fn split_links(value: &str) -> Vec<&str> {
    let mut links = Vec::new();
    let mut start = 0;
    let mut in_target = false;
    for (index, ch) in value.char_indices() {
        match ch {
            '<' => in_target = true,
            '>' => in_target = false,
            ',' if !in_target => {
                links.push(&value[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    links.push(&value[start..]);
    links
}

fn link_target(link: &str) -> Option<String> {
    let link = link.trim();
    let rest = link.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some(rest[..end].to_string())
}

fn link_has_rel(link: &str, rel: &str) -> bool {
    let Some(params) = link.split_once('>').map(|(_, params)| params) else {
        return false;
    };
    params.split(';').any(|param| {
        let Some((name, value)) = param.split_once('=') else {
            return false;
        };
        name.trim().eq_ignore_ascii_case("rel")
            && value
                .trim()
                .trim_matches('"')
                .split_whitespace()
                .any(|token| token.eq_ignore_ascii_case(rel))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separate_header_lines() {
        let values = [
            r#"<https://org/api/v1/apps?limit=2>; rel="self""#,
            r#"<https://org/api/v1/apps?after=0oa1&limit=2>; rel="next""#,
        ];
        assert_eq!(
            next_link(values).as_deref(),
            Some("https://org/api/v1/apps?after=0oa1&limit=2")
        );
    }

    #[test]
    fn comma_separated_links() {
        let value = r#"<https://org/a?x=1,2>; rel="self", <https://org/a?after=b>; rel=next"#;
        assert_eq!(next_link([value]).as_deref(), Some("https://org/a?after=b"));
    }

    #[test]
    fn no_next_on_last_page() {
        assert_eq!(next_link([r#"<https://org/a>; rel="self""#]), None);
        assert_eq!(next_link([]), None);
    }

    #[test]
    fn malformed_links_are_ignored() {
        assert_eq!(next_link(["rel=next", "<unterminated; rel=next", ""]), None);
    }
}

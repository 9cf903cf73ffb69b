//! Timestamp formats of Okta's JSON bodies and of the HTTP `Date` header.

use std::time::SystemTime;

use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

/// ISO-8601 in UTC with milliseconds, as in `2026-03-27T18:32:06.000Z`.
const ISO_MILLIS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// The IMF-fixdate format of RFC 9110, as in `Sun, 06 Nov 1994 08:49:37 GMT`.
const HTTP_DATE: &[FormatItem<'static>] = format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// Formats a time as Okta's `created` and `lastUpdated` fields do.
pub(crate) fn iso_millis(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(ISO_MILLIS)
        .expect("the ISO-8601 format has only components every UTC time has")
}

/// Formats a time for the HTTP `Date` header.
pub(crate) fn http_date(at: SystemTime) -> String {
    OffsetDateTime::from(at)
        .format(HTTP_DATE)
        .expect("the HTTP date format has only components every UTC time has")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn iso_millis_matches_okta_shape() {
        let at = datetime!(2026-03-27 18:32:06.123456 UTC);
        assert_eq!(iso_millis(at), "2026-03-27T18:32:06.123Z");
    }

    #[test]
    fn http_date_is_imf_fixdate() {
        let at = datetime!(1994-11-06 08:49:37 UTC);
        assert_eq!(http_date(at.into()), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}

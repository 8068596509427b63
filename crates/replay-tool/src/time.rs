//! Times on the command line and in output: RFC 3339, UTC.

use chrono::{DateTime, SecondsFormat, Utc};

/// Parses an RFC 3339 time (`2026-09-01T08:00:00Z`, `2026-09-01T10:00:00+02:00`) to UTC.
///
/// # Errors
/// A one-line message for anything else, e.g. a bare date.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            format!("malformed time {text:?}: expected RFC 3339, e.g. 2026-09-01T08:00:00Z")
        })
}

/// A time as printed: RFC 3339 in UTC with `Z`, fractions only when there are any.
#[must_use]
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_parse_to_utc_and_anything_else_is_refused() {
        let t = parse_time("2026-09-01T10:00:00+02:00").unwrap_or_default();
        assert_eq!(format_time(t), "2026-09-01T08:00:00Z");
        for bad in ["2026-09-01", "yesterday", "2026-13-01T00:00:00Z", ""] {
            let err = parse_time(bad).err().unwrap_or_default();
            assert!(err.contains("RFC 3339"), "{bad:?}: {err}");
        }
    }
}

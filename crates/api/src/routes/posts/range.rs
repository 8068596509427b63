//! `Range: bytes=…` on a media download (RFC 9110 §14): one range, answered `206 Partial
//! Content`; a range that starts beyond the item, `416 Range Not Satisfiable`.
//!
//! Only single byte ranges are served partially (`bytes=a-b`, `bytes=a-`, `bytes=-n`). A
//! header that is not one (another unit, several ranges, a malformed one) is ignored and the
//! whole item is sent, as the RFC allows; so is a `Range` under `If-Range` (an item has no
//! validator to compare with).

use axum::http::{header, HeaderMap};
use std::ops::Range;

/// What a request's `Range` asks of an item of `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// The whole item (no `Range`, or one that is ignored).
    Whole,
    /// These bytes (not empty, within the item).
    Part(Range<u64>),
    /// Nothing that exists: `416`.
    Unsatisfiable,
}

/// Reads the request's `Range` against an item of `size` bytes.
#[must_use]
pub fn wanted(headers: &HeaderMap, size: u64) -> Wanted {
    if headers.contains_key(header::IF_RANGE) {
        return Wanted::Whole;
    }
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Wanted::Whole;
    };
    parse(value, size)
}

fn parse(value: &str, size: u64) -> Wanted {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let number = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // bytes=-n: the last n bytes.
        (true, false) => match number(last) {
            Some(0) => Wanted::Unsatisfiable,
            Some(n) if size == 0 => {
                let _ = n;
                Wanted::Unsatisfiable
            }
            Some(n) => Wanted::Part(size.saturating_sub(n)..size),
            None => Wanted::Whole,
        },
        // bytes=a-: from a to the end.
        (false, true) => match number(first) {
            Some(a) if a < size => Wanted::Part(a..size),
            Some(_) => Wanted::Unsatisfiable,
            None => Wanted::Whole,
        },
        // bytes=a-b, b clamped to the end.
        (false, false) => match (number(first), number(last)) {
            (Some(a), Some(b)) if a > b => Wanted::Whole,
            (Some(a), Some(b)) if a < size => Wanted::Part(a..b.saturating_add(1).min(size)),
            (Some(_), Some(_)) => Wanted::Unsatisfiable,
            _ => Wanted::Whole,
        },
        (true, true) => Wanted::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_are_read_as_the_rfc_says() {
        let size = 1000;
        assert_eq!(parse("bytes=0-0", size), Wanted::Part(0..1));
        assert_eq!(parse("bytes=10-19", size), Wanted::Part(10..20));
        assert_eq!(parse("bytes=990-5000", size), Wanted::Part(990..1000));
        assert_eq!(parse("bytes=500-", size), Wanted::Part(500..1000));
        assert_eq!(parse("bytes=-100", size), Wanted::Part(900..1000));
        assert_eq!(parse("bytes=-5000", size), Wanted::Part(0..1000));
        assert_eq!(parse("bytes=1000-", size), Wanted::Unsatisfiable);
        assert_eq!(parse("bytes=1000-1001", size), Wanted::Unsatisfiable);
        assert_eq!(parse("bytes=-0", size), Wanted::Unsatisfiable);
        assert_eq!(parse("bytes=0-", 0), Wanted::Unsatisfiable);
        assert_eq!(parse("bytes=-1", 0), Wanted::Unsatisfiable);
        for ignored in [
            "items=0-1",
            "bytes=5-1",
            "bytes=0-1,5-6",
            "bytes=a-b",
            "bytes=-",
            "bytes=+1-2",
            "bytes 0-1",
        ] {
            assert_eq!(parse(ignored, size), Wanted::Whole, "{ignored}");
        }
    }
}

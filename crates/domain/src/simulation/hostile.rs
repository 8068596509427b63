//! Hostile inputs for the fuzz tests of every decoder that sees stored or received bytes:
//! arbitrary bytes, and structure-aware mutations of a valid encoding (a real event's JSON, a
//! real token, a real media file) — flipped bits, truncations, splices, invalid UTF-8, a JSON
//! node replaced by a value of another type, a huge number, deep nesting, a key removed or
//! added.
//!
//! Each strategy shrinks towards the valid input, so a failing case is reported as the smallest
//! change that breaks the decoder.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use serde_json::{json, Map, Value};

/// The configuration of a fuzz test: `default_cases` cases (small enough for every test run),
/// unless `PROPTEST_CASES` asks for more (`PROPTEST_CASES=100000 cargo test -p … --test
/// fuzz_…`, see docs/testing.md). Failing cases are kept in `<test>.proptest-regressions` beside
/// the test and run first from then on.
#[must_use]
pub fn fuzz_config(default_cases: u32) -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    config
}

/// Byte sequences that are not UTF-8: a lone continuation byte, an overlong encoding, a UTF-16
/// surrogate, a truncated sequence, bytes that never occur.
pub const INVALID_UTF8: &[&[u8]] = &[
    b"\x80",
    b"\xC0\x80",
    b"\xED\xA0\x80",
    b"\xE2\x82",
    b"\xF8\x88\x80\x80\x80",
    b"\xFF\xFE",
];

/// Bytes that change what a JSON or base64 text means when spliced in.
const JSON_PUNCTUATION: &[&[u8]] = &[
    b"\"", b"{", b"}", b"[", b"]", b",", b":", b"\\", b"\\u", b"\0", b"null", b"1e999", b"-", b".",
    b"=",
];

/// One change to a byte string.
#[derive(Debug, Clone)]
pub enum ByteEdit {
    /// Flip one bit of the byte at the index.
    Flip(Index, u8),
    /// Keep only the bytes before the index.
    Truncate(Index),
    /// Insert bytes at the index.
    Splice(Index, Vec<u8>),
    /// Remove up to `n` bytes from the index.
    Delete(Index, usize),
    /// Repeat the bytes from the index, up to `n` of them.
    Duplicate(Index, usize),
    /// Overwrite the byte at the index.
    Set(Index, u8),
}

impl ByteEdit {
    /// Applies the edit to `bytes`.
    pub fn apply(&self, bytes: &mut Vec<u8>) {
        let len = bytes.len();
        let at = |i: &Index| if len == 0 { 0 } else { i.index(len) };
        match self {
            Self::Flip(i, bit) if len > 0 => bytes[at(i)] ^= 1 << (bit % 8),
            Self::Set(i, b) if len > 0 => bytes[at(i)] = *b,
            Self::Truncate(i) => bytes.truncate(at(i)),
            Self::Splice(i, extra) => {
                let at = at(i);
                bytes.splice(at..at, extra.iter().copied());
            }
            Self::Delete(i, n) => {
                let at = at(i);
                let end = at.saturating_add(*n).min(len);
                bytes.drain(at..end);
            }
            Self::Duplicate(i, n) => {
                let at = at(i);
                let end = at.saturating_add(*n).min(len);
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
            Self::Flip(..) | Self::Set(..) => {}
        }
    }
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    let splice = prop_oneof![
        prop::collection::vec(any::<u8>(), 1..16),
        prop::sample::select(INVALID_UTF8).prop_map(<[u8]>::to_vec),
        prop::sample::select(JSON_PUNCTUATION).prop_map(<[u8]>::to_vec),
    ];
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Flip(i, b)),
        any::<Index>().prop_map(ByteEdit::Truncate),
        (any::<Index>(), splice).prop_map(|(i, s)| ByteEdit::Splice(i, s)),
        (any::<Index>(), 1..64_usize).prop_map(|(i, n)| ByteEdit::Delete(i, n)),
        (any::<Index>(), 1..64_usize).prop_map(|(i, n)| ByteEdit::Duplicate(i, n)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Set(i, b)),
    ]
}

/// `valid` with one to four byte-level edits, or (one case in eight) arbitrary bytes instead.
pub fn mutated_bytes(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        7 => prop::collection::vec(byte_edit(), 1..5).prop_map(move |edits| {
            let mut bytes = valid.clone();
            for e in &edits {
                e.apply(&mut bytes);
            }
            bytes
        }),
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

/// [`mutated_bytes`] of a text, read back as text (invalid UTF-8 replaced), for decoders that
/// take `&str`.
pub fn mutated_text(valid: &str) -> impl Strategy<Value = String> {
    mutated_bytes(valid.as_bytes().to_vec()).prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// A JSON value nested `depth` arrays or objects deep around `inner`.
#[must_use]
pub fn nested(depth: usize, inner: Value, objects: bool) -> Value {
    (0..depth).fold(inner, |v, _| {
        if objects {
            json!({ "a": v })
        } else {
            Value::Array(vec![v])
        }
    })
}

/// JSON text nested `depth` arrays deep, beyond any parser's recursion limit when `depth` is
/// large (a `Value` that deep cannot be dropped safely, so it is only ever text).
#[must_use]
pub fn deeply_nested_text(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// A value of any JSON type that decoders trip on: extreme and fractional numbers, empty,
/// long, control-character and non-ASCII strings, strings that look like ids, markers of
/// sealed fields, empty and nested containers.
pub fn hostile_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop::sample::select(
            &[
                u64::MAX as f64,
                -1.0,
                0.0,
                -0.0,
                0.5,
                1e308,
                -1e308,
                f64::MIN_POSITIVE,
                4_294_967_296.0,
                65_536.0,
            ][..]
        )
        .prop_map(|f| json!(f)),
        prop_oneof![
            Just(json!(u64::MAX)),
            Just(json!(i64::MIN)),
            Just(json!(i64::MAX)),
            Just(json!(u32::MAX)),
            Just(json!(u64::from(u16::MAX) + 1)),
            any::<i64>().prop_map(|n| json!(n)),
        ],
        prop_oneof![
            Just(String::new()),
            Just("x".repeat(70_000)),
            Just("\u{0}\u{1e}\u{1f}\u{7f}".to_owned()),
            Just("ü\u{202e}😀".to_owned()),
            Just("00000000-0000-0000-0000-000000000000".to_owned()),
            Just("ffffffff-ffff-ffff-ffff-ffffffffffff".to_owned()),
            Just("not-a-uuid".to_owned()),
            Just("[erased]".to_owned()),
            Just("$sealed".to_owned()),
            Just("2026-13-45T25:61:61Z".to_owned()),
            Just("+262143-12-31T23:59:59Z".to_owned()),
            Just("9999999999999999999999".to_owned()),
            "\\PC{0,24}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("$sealed".to_owned()),
                    Just("$plain".to_owned()),
                    Just("subject".to_owned()),
                    Just("kind".to_owned()),
                    Just("id".to_owned()),
                    "[a-z_]{1,12}",
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
            (1..40_usize, any::<bool>()).prop_map(|(d, o)| nested(d, Value::Null, o)),
        ]
    })
}

/// One change to a JSON document.
#[derive(Debug, Clone)]
pub enum JsonEdit {
    /// Replace the node at the index (pre-order) with a value.
    Replace(Index, Value),
    /// Remove a key of the object at the index (or an item of the array).
    Remove(Index, Index),
    /// Add a key to the object at the index (or push onto the array).
    Add(Index, String, Value),
    /// Wrap the node at the index in `n` arrays or objects.
    Nest(Index, usize, bool),
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(o) => o.values().map(count).sum(),
        _ => 0,
    }
}

/// The `n`-th node of `v` in pre-order.
fn node(v: &mut Value, n: usize) -> Option<&mut Value> {
    if n == 0 {
        return Some(v);
    }
    let mut rest = n - 1;
    let children: Vec<&mut Value> = match v {
        Value::Array(a) => a.iter_mut().collect(),
        Value::Object(o) => o.values_mut().collect(),
        _ => return None,
    };
    for child in children {
        let size = count(child);
        if rest < size {
            return node(child, rest);
        }
        rest -= size;
    }
    None
}

impl JsonEdit {
    /// Applies the edit to `doc`.
    pub fn apply(&self, doc: &mut Value) {
        let size = count(doc);
        match self {
            Self::Replace(i, value) => {
                if let Some(n) = node(doc, i.index(size)) {
                    *n = value.clone();
                }
            }
            Self::Remove(i, which) => match node(doc, i.index(size)) {
                Some(Value::Object(o)) if !o.is_empty() => {
                    if let Some(key) = o.keys().nth(which.index(o.len())).cloned() {
                        o.remove(&key);
                    }
                }
                Some(Value::Array(a)) if !a.is_empty() => {
                    a.remove(which.index(a.len()));
                }
                _ => {}
            },
            Self::Add(i, key, value) => match node(doc, i.index(size)) {
                Some(Value::Object(o)) => {
                    o.insert(key.clone(), value.clone());
                }
                Some(Value::Array(a)) => a.push(value.clone()),
                _ => {}
            },
            Self::Nest(i, depth, objects) => {
                if let Some(n) = node(doc, i.index(size)) {
                    *n = nested(*depth, n.take(), *objects);
                }
            }
        }
    }
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        4 => (any::<Index>(), hostile_value()).prop_map(|(i, v)| JsonEdit::Replace(i, v)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(i, k)| JsonEdit::Remove(i, k)),
        1 => (any::<Index>(), "[a-z_$]{1,12}", hostile_value())
            .prop_map(|(i, k, v)| JsonEdit::Add(i, k, v)),
        1 => (any::<Index>(), 1..40_usize, any::<bool>())
            .prop_map(|(i, d, o)| JsonEdit::Nest(i, d, o)),
    ]
}

/// `valid` with one to three structural edits.
pub fn mutated_json(valid: Value) -> impl Strategy<Value = Value> {
    prop::collection::vec(json_edit(), 1..4).prop_map(move |edits| {
        let mut doc = valid.clone();
        for e in &edits {
            e.apply(&mut doc);
        }
        doc
    })
}

/// JSON text of `valid` after structural edits, or after byte edits of its text, or a document
/// too deeply nested for any parser.
pub fn mutated_json_text(valid: Value) -> impl Strategy<Value = String> {
    let text = valid.to_string();
    prop_oneof![
        4 => mutated_json(valid).prop_map(|v| v.to_string()),
        4 => mutated_text(&text),
        1 => (100..5_000_usize).prop_map(deeply_nested_text),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_numbered_in_pre_order() {
        let mut doc = json!({"a": [1, 2], "b": {"c": 3}});
        assert_eq!(count(&doc), 6);
        assert_eq!(node(&mut doc, 2).cloned(), Some(json!(1)));
        assert_eq!(node(&mut doc, 5).cloned(), Some(json!(3)));
        assert_eq!(node(&mut doc, 6), None);
    }
}

//! A compact binary encoding of JSON documents, for the graph view's stored vertices, and of
//! vertex ids, for its keys ([`put_id`]).
//!
//! sled copies a leaf (up to 17 entries) on every insert and logs whole pages, so the size of
//! a stored document is paid many times over. A vertex as JSON text is mostly field names,
//! RFC 3339 timestamps and ULIDs; here a known field name is one byte, a timestamp in the exact
//! form [`rfc3339`] writes is a varint of milliseconds and a ULID in its canonical form is 16
//! bytes. Anything else is kept as it is, so every JSON value round-trips exactly (a
//! timestamp or ULID is packed only when unpacking gives back the same string).
//!
//! Layout: a format byte ([`FORMAT`]), then one value: a tag byte and its body. Integers are
//! LEB128 varints; object entries are written in the map's (sorted) order.

use serde_json::{Map, Number, Value};
use symphainy_engine::id::{Id, parse_canonical_rfc3339_ms, rfc3339};

use crate::{Error, Result};

mod ser;
pub use ser::to_vec;

/// First byte of every encoded document.
pub const FORMAT: u8 = 1;

/// Latest timestamp packed (9999-12-31T23:59:59.999Z, the latest RFC 3339 can write).
pub const TIMESTAMP_MS_MAX: u64 = symphainy_engine::id::RFC3339_MS_MAX as u64;

/// Deepest nesting [`decode`] accepts (a document deeper than this is refused, not recursed).
/// Above serde_json's own parse limit (128), which bounds the user JSON a vertex can carry
/// (a step's result) plus the few levels of the vertex around it.
pub const DEPTH_MAX: usize = 256;

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const UINT: u8 = 3;
/// A negative integer n, stored as -(n + 1).
const NEG: u8 = 4;
const FLOAT: u8 = 5;
const STRING: u8 = 6;
const TIMESTAMP: u8 = 7;
const ULID: u8 = 8;
const ARRAY: u8 = 9;
const OBJECT: u8 = 10;

/// Field names written as one byte (their index + 1; 0 introduces a name spelled out).
/// Append only: the position of a name is part of the format (change [`FORMAT`] otherwise).
const KEYS: [&str; 56] = [
    "_id",
    "_key",
    "tenant_id",
    "execution_id",
    "intent_id",
    "session_id",
    "intent_type",
    "capability",
    "capability_version",
    "status",
    "steps",
    "submitted_at",
    "finished_at",
    "started_at",
    "lsn",
    "result",
    "error",
    "code",
    "message",
    "step",
    "name",
    "attempts",
    "duration_ms",
    "step_count",
    "realm",
    "idempotency_key",
    "created_at",
    "user_id",
    "context",
    "active_sagas",
    "closed_at",
    "document_id",
    "chunk_id",
    "fact_id",
    "kind",
    "value",
    "span",
    "index",
    "filename",
    "media_type",
    "size_bytes",
    "sha256",
    "format",
    "words",
    "rows",
    "chunks",
    "facts",
    "version",
    "deterministic",
    "inputs",
    "outputs",
    "intent_types",
    "description",
    "compensable",
    "timeout_ms",
    "retries",
];

/// Encodes a JSON document.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(FORMAT);
    put_value(&mut out, value);
    out
}

/// Decodes what [`encode`] wrote.
pub fn decode(bytes: &[u8]) -> Result<Value> {
    let mut r = Reader { bytes, at: 0 };
    match r.byte()? {
        FORMAT => {}
        other => return Err(r.bad(format!("unknown format {other}"))),
    }
    let value = r.value(0)?;
    if r.at != bytes.len() {
        return Err(r.bad("trailing bytes".into()));
    }
    Ok(value)
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Milliseconds of a timestamp written exactly as [`rfc3339`] writes it.
fn timestamp_ms(s: &str) -> Option<u64> {
    // Only the one shape `rfc3339` writes, so that unpacking gives the very same text (the
    // reader accepts years 1970 to 9999 only: within 0..=TIMESTAMP_MS_MAX).
    u64::try_from(parse_canonical_rfc3339_ms(s)?).ok()
}

/// The 128-bit value of a ULID in its canonical (upper-case, 26 characters) form.
fn ulid_value(s: &str) -> Option<u128> {
    if s.len() != 26 {
        return None;
    }
    let id: Id = s.parse().ok()?;
    (id.to_string() == s).then_some(id.0)
}

/// A string value: a canonical timestamp or ULID packed, anything else as it is.
fn put_string(out: &mut Vec<u8>, s: &str) {
    if let Some(ms) = timestamp_ms(s) {
        out.push(TIMESTAMP);
        put_varint(out, ms);
    } else if let Some(id) = ulid_value(s) {
        out.push(ULID);
        out.extend_from_slice(&id.to_be_bytes());
    } else {
        out.push(STRING);
        put_str(out, s);
    }
}

/// An object's field name: one byte when known.
fn put_key(out: &mut Vec<u8>, key: &str) {
    match KEYS.iter().position(|k| *k == key) {
        Some(i) => out.push(i as u8 + 1),
        None => {
            out.push(0);
            put_str(out, key);
        }
    }
}

fn put_int(out: &mut Vec<u8>, n: i64) {
    match u64::try_from(n) {
        Ok(u) => {
            out.push(UINT);
            put_varint(out, u);
        }
        Err(_) => {
            out.push(NEG);
            put_varint(out, (-(n + 1)) as u64);
        }
    }
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(NULL),
        Value::Bool(false) => out.push(FALSE),
        Value::Bool(true) => out.push(TRUE),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                out.push(UINT);
                put_varint(out, u);
            } else if let Some(i) = n.as_i64() {
                put_int(out, i);
            } else {
                out.push(FLOAT);
                out.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_le_bytes());
            }
        }
        Value::String(s) => put_string(out, s),
        Value::Array(items) => {
            out.push(ARRAY);
            put_varint(out, items.len() as u64);
            for item in items {
                put_value(out, item);
            }
        }
        Value::Object(map) => {
            out.push(OBJECT);
            put_varint(out, map.len() as u64);
            for (key, item) in map {
                put_key(out, key);
                put_value(out, item);
            }
        }
    }
}

/// Collections whose name is one byte in a graph id (position + 1; 0 introduces a name
/// spelled out). Append only: the position of a name is part of the graph's key format.
pub const COLLECTIONS: [&str; 9] = [
    "tenants",
    "sessions",
    "intents",
    "executions",
    "steps",
    "capabilities",
    "documents",
    "chunks",
    "facts",
];

/// An id without a `/` (never stored by the view; written so that any text has a form).
const ID_WITHOUT_COLLECTION: u8 = 0xff;
/// The key after the collection: a canonical ULID (16 bytes)...
const KEY_ULID: u8 = 1;
/// ...a canonical ULID and more text (a chunk's or fact's key: `<document>-c0`)...
const KEY_ULID_AND_TEXT: u8 = 2;
/// ...or any other text.
const KEY_TEXT: u8 = 3;

/// Writes a vertex id (`collection/key`) in the graph's key form: a collection byte and the
/// key, a ULID as its 16 bytes (a graph key is about half as long as the text, and sled
/// copies and compares keys on every insert). Self-delimiting: no id's form is a prefix of
/// another's, so the form of an id followed by anything can be scanned as a prefix.
pub fn put_id(out: &mut Vec<u8>, id: &str) {
    let Some((collection, key)) = id.split_once('/') else {
        out.push(ID_WITHOUT_COLLECTION);
        put_str(out, id);
        return;
    };
    match COLLECTIONS.iter().position(|c| *c == collection) {
        Some(i) => out.push(i as u8 + 1),
        None => {
            out.push(0);
            put_str(out, collection);
        }
    }
    if let Some(ulid) = ulid_value(key) {
        out.push(KEY_ULID);
        out.extend_from_slice(&ulid.to_be_bytes());
    } else if let Some(ulid) = key.get(..26).and_then(ulid_value) {
        out.push(KEY_ULID_AND_TEXT);
        out.extend_from_slice(&ulid.to_be_bytes());
        put_str(out, &key[26..]);
    } else {
        out.push(KEY_TEXT);
        put_str(out, key);
    }
}

/// Reads an id [`put_id`] wrote at the start of `bytes`; returns it and the bytes it took.
pub fn take_id(bytes: &[u8]) -> Result<(String, usize)> {
    let mut r = Reader { bytes, at: 0 };
    let id = r.id()?;
    Ok((id, r.at))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn bad(&self, reason: String) -> Error {
        Error::Corrupt {
            key: "graph vertex".into(),
            reason: format!("compact document at byte {}: {reason}", self.at),
        }
    }

    fn byte(&mut self) -> Result<u8> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| self.bad("truncated".into()))?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| self.bad("truncated".into()))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn varint(&mut self) -> Result<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(self.bad("varint too long".into()))
    }

    /// A length or count: never more than the bytes left (each item takes at least one).
    fn len(&mut self) -> Result<usize> {
        let n = self.varint()?;
        let left = (self.bytes.len() - self.at) as u64;
        if n > left {
            return Err(self.bad(format!("length {n} exceeds the {left} bytes left")));
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Result<String> {
        let n = self.len()?;
        let raw = self.take(n)?.to_vec();
        String::from_utf8(raw).map_err(|_| self.bad("invalid UTF-8".into()))
    }

    fn ulid(&mut self) -> Result<String> {
        let raw: [u8; 16] = self
            .take(16)?
            .try_into()
            .map_err(|_| self.bad("truncated".into()))?;
        Ok(Id(u128::from_be_bytes(raw)).to_string())
    }

    fn id(&mut self) -> Result<String> {
        let collection = match self.byte()? {
            ID_WITHOUT_COLLECTION => return self.string(),
            0 => self.string()?,
            i => COLLECTIONS
                .get(usize::from(i) - 1)
                .ok_or_else(|| self.bad(format!("unknown collection code {i}")))?
                .to_string(),
        };
        let key = match self.byte()? {
            KEY_ULID => self.ulid()?,
            KEY_ULID_AND_TEXT => self.ulid()? + &self.string()?,
            KEY_TEXT => self.string()?,
            other => return Err(self.bad(format!("unknown key form {other}"))),
        };
        Ok(format!("{collection}/{key}"))
    }

    fn value(&mut self, depth: usize) -> Result<Value> {
        if depth > DEPTH_MAX {
            return Err(self.bad("nested too deep".into()));
        }
        Ok(match self.byte()? {
            NULL => Value::Null,
            FALSE => Value::Bool(false),
            TRUE => Value::Bool(true),
            UINT => Value::from(self.varint()?),
            NEG => {
                let n = self.varint()?;
                let n = i64::try_from(n).map_err(|_| self.bad("integer out of range".into()))?;
                Value::from(-n - 1)
            }
            FLOAT => {
                let raw: [u8; 8] = self
                    .take(8)?
                    .try_into()
                    .map_err(|_| self.bad("truncated".into()))?;
                Number::from_f64(f64::from_le_bytes(raw))
                    .map(Value::Number)
                    .ok_or_else(|| self.bad("not a finite number".into()))?
            }
            STRING => Value::String(self.string()?),
            TIMESTAMP => {
                let ms = self.varint()?;
                if ms > TIMESTAMP_MS_MAX {
                    return Err(self.bad("timestamp out of range".into()));
                }
                Value::String(rfc3339(ms as i64))
            }
            ULID => Value::String(self.ulid()?),
            ARRAY => {
                let n = self.len()?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            OBJECT => {
                let n = self.len()?;
                let mut map = Map::new();
                for _ in 0..n {
                    let key = match self.byte()? {
                        0 => self.string()?,
                        i => KEYS
                            .get(usize::from(i) - 1)
                            .ok_or_else(|| self.bad(format!("unknown field code {i}")))?
                            .to_string(),
                    };
                    map.insert(key, self.value(depth + 1)?);
                }
                Value::Object(map)
            }
            other => return Err(self.bad(format!("unknown tag {other}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e300f64..1e300).prop_map(Value::from),
            ".*".prop_map(Value::String),
            // Timestamps and ULIDs, canonical and not.
            (0i64..4_102_444_800_000).prop_map(|ms| Value::String(rfc3339(ms))),
            "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z"
                .prop_map(Value::String),
            any::<u128>().prop_map(|v| Value::String(Id(v).to_string())),
            "[0-9A-Za-z]{26}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        prop::sample::select(KEYS.to_vec()).prop_map(str::to_string),
                        ".*"
                    ],
                    inner,
                    0..8
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Ids of every form a graph key holds: known and unknown collections, ULID keys,
    /// ULIDs followed by text, other text, non-canonical ULIDs, no collection at all.
    fn vertex_id() -> impl Strategy<Value = String> {
        let collection = prop_oneof![
            prop::sample::select(COLLECTIONS.to_vec()).prop_map(str::to_string),
            "[a-z_]{0,12}",
        ];
        let key = prop_oneof![
            any::<u128>().prop_map(|v| Id(v).to_string()),
            (any::<u128>(), "[-a-z0-9@.]{0,6}").prop_map(|(v, s)| Id(v).to_string() + &s),
            any::<u128>().prop_map(|v| Id(v).to_string().to_lowercase()),
            ".{0,40}",
        ];
        prop_oneof![
            4 => (collection, key).prop_map(|(c, k)| format!("{c}/{k}")),
            1 => "[^/]{0,20}",
        ]
    }

    proptest! {
        // An id reads back from its form, and its form is never a prefix of another id's:
        // scanning the form of an id as a key prefix finds that id's edges and no other's.
        #[test]
        fn ids_round_trip_and_no_form_is_a_prefix_of_another(
            a in vertex_id(),
            b in vertex_id(),
            tail in prop::collection::vec(any::<u8>(), 0..8),
        ) {
            let (mut form_a, mut form_b) = (Vec::new(), Vec::new());
            put_id(&mut form_a, &a);
            put_id(&mut form_b, &b);
            prop_assert_eq!(take_id(&form_a).unwrap(), (a.clone(), form_a.len()));
            if a != b {
                prop_assert!(!form_b.starts_with(&form_a), "{a:?} is a prefix of {b:?}");
            }
            let read = form_a.len();
            form_a.extend_from_slice(&tail);
            prop_assert_eq!(take_id(&form_a).unwrap(), (a, read));
            // Damaged: an error or some id, never a panic.
            for cut in 0..form_b.len() {
                let _ = take_id(&form_b[..cut]);
            }
        }

        #[test]
        fn every_json_value_round_trips(value in json_value()) {
            prop_assert_eq!(decode(&encode(&value)).unwrap(), value);
        }

        // Encoding a value through serde writes exactly what encoding its tree writes.
        #[test]
        fn serializing_a_tree_writes_the_same_bytes(value in json_value()) {
            prop_assert_eq!(to_vec(&value).unwrap(), encode(&value));
        }

        // Damaged bytes give an error or some value, never a panic or a huge allocation.
        #[test]
        fn damaged_documents_never_panic(value in json_value(), at in any::<usize>(), byte in any::<u8>()) {
            let mut bytes = encode(&value);
            let i = at % bytes.len();
            bytes[i] = byte;
            let _ = decode(&bytes);
            let _ = decode(&bytes[..i]);
        }
    }

    #[test]
    fn a_vertex_shrinks_and_round_trips() {
        let vertex = json!({
            "_id": "executions/01M8ARR8ZBSRTDT3TGMFND4E34", "_key": "01M8ARR8ZBSRTDT3TGMFND4E34",
            "capability": "runtime.echo", "capability_version": 1,
            "execution_id": "01M8ARR8ZBSRTDT3TGMFND4E34", "finished_at": "2026-11-26T01:50:35.500Z",
            "idempotency_key": null, "intent_id": "01M8ARR8ZBSRTDT3TGMFND4E33",
            "intent_type": "runtime.echo", "lsn": 7, "realm": "runtime",
            "result": {"value": "load"}, "session_id": "01M8ARR8WT9ERFE77PTC1PZ7JB",
            "status": "completed", "step_count": 1, "tenant_id": "bench",
            "steps": [{"attempts": 1, "duration_ms": 0, "finished_at": "2026-11-26T01:50:35.500Z",
                       "name": "echo_1", "started_at": "2026-11-26T01:50:35.500Z", "status": "completed"}],
            "submitted_at": "2026-11-26T01:50:35.499Z", "negative": -5, "ratio": 0.25,
        });
        let bytes = encode(&vertex);
        assert_eq!(decode(&bytes).unwrap(), vertex);
        let text = serde_json::to_vec(&vertex).unwrap().len();
        assert!(
            bytes.len() * 2 < text,
            "{} bytes against {text} as text",
            bytes.len()
        );
        // Not canonical: kept as strings.
        for s in [
            "2026-11-26T01:50:35.5Z",
            "01m8arr8zbsrtdt3tgmfnd4e34",
            "2026-13-45T99:99:99.999Z",
        ] {
            let v = json!(s);
            assert_eq!(decode(&encode(&v)).unwrap(), v);
            assert_eq!(encode(&v)[1], STRING, "{s}");
        }
        // User JSON as deep as serde_json parses, inside a vertex, reads back.
        let text = format!("{}1{}", "[".repeat(127), "]".repeat(127));
        let deep: Value = serde_json::from_str(&text).unwrap();
        let vertex = json!({"result": {"value": deep}});
        assert_eq!(decode(&encode(&vertex)).unwrap(), vertex);
        let mut too_deep = vec![FORMAT];
        too_deep.extend(std::iter::repeat_n(ARRAY, DEPTH_MAX + 2).flat_map(|t| [t, 1]));
        too_deep.push(NULL);
        assert!(decode(&too_deep).is_err());
        assert!(decode(&[]).is_err());
        assert!(decode(&[9, NULL]).is_err());
        assert!(decode(&[FORMAT, NULL, NULL]).is_err());
    }

    // Typed values read back as their JSON tree: options skipped or null, flattened fields,
    // raw JSON text, enums of every kind, maps with number keys, bytes, floats that are not
    // finite, and counts that need more than one byte.
    #[test]
    fn a_typed_value_reads_back_as_its_json_tree() {
        #[derive(serde::Serialize)]
        enum Kind {
            Unit,
            Newtype(u8),
            Tuple(i32, String),
            Struct { a: Option<u64> },
        }
        #[derive(serde::Serialize)]
        struct Inner<'a> {
            status: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            skipped: Option<u8>,
            absent: Option<u8>,
            result: &'a serde_json::value::RawValue,
        }
        #[derive(serde::Serialize)]
        struct Outer<'a> {
            _id: String,
            step_count: usize,
            #[serde(flatten)]
            inner: Inner<'a>,
            kinds: Vec<Kind>,
            by_number: std::collections::BTreeMap<u32, f64>,
            #[serde(with = "serde_bytes_as_seq")]
            bytes: Vec<u8>,
            many: Vec<u32>,
            unit: (),
            started_at: String,
            tuple: (i8, char, bool),
        }
        mod serde_bytes_as_seq {
            pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(v)
            }
        }
        let raw = serde_json::value::RawValue::from_string(
            r#"{"value": [1, -2, 0.5, "2026-11-26T01:50:35.500Z"], "z": null}"#.into(),
        )
        .unwrap();
        let value = Outer {
            _id: "executions/01M8ARR8ZBSRTDT3TGMFND4E34".into(),
            step_count: 3,
            inner: Inner {
                status: "completed",
                skipped: None,
                absent: None,
                result: &raw,
            },
            kinds: vec![
                Kind::Unit,
                Kind::Newtype(7),
                Kind::Tuple(-3, "x".into()),
                Kind::Struct { a: Some(u64::MAX) },
            ],
            by_number: [(1, 0.25), (20, f64::NAN)].into(),
            bytes: vec![0, 255],
            many: (0..300).collect(),
            unit: (),
            started_at: rfc3339(1_700_000_000_123),
            tuple: (i8::MIN, 'é', true),
        };
        let tree = serde_json::to_value(&value).unwrap();
        assert_eq!(decode(&to_vec(&value).unwrap()).unwrap(), tree);
        // A map whose keys cannot be text is refused, as serde_json refuses it.
        let bad: std::collections::BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into();
        assert!(serde_json::to_value(&bad).is_err());
        assert!(to_vec(&bad).is_err());
    }

    #[test]
    fn an_id_with_a_ulid_takes_its_sixteen_bytes() {
        let ulid = "01M8ARR8ZBSRTDT3TGMFND4E34";
        let form = |id: &str| {
            let mut out = Vec::new();
            put_id(&mut out, id);
            out
        };
        assert_eq!(form(&format!("executions/{ulid}")).len(), 1 + 1 + 16);
        assert_eq!(form(&format!("facts/{ulid}-f12")).len(), 1 + 1 + 16 + 1 + 4);
        assert_eq!(
            form("capabilities/runtime.echo@1").len(),
            1 + 1 + 1 + "runtime.echo@1".len()
        );
        // Bytes that are no id: an error.
        assert!(take_id(&[]).is_err());
        assert!(take_id(&[COLLECTIONS.len() as u8 + 1, KEY_TEXT, 0]).is_err());
        assert!(take_id(&[1, 9]).is_err());
        assert!(take_id(&[1, KEY_ULID, 0, 0]).is_err());
    }
}

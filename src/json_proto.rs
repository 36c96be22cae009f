//! JSON and protobuf, both ways:
//!
//! - between JSON values (the currency of tools, the engine and the registry) and protobuf's
//!   well-known `Struct`/`Value` types (the currency of the wire), for the transport and for
//!   tools that speak gRPC themselves (remote toolstream servers);
//! - the **canonical proto3 JSON mapping** of the contract's messages ([`to_json`],
//!   [`from_json`]): what protobuf's own printers and parsers write and read (lowerCamelCase
//!   names, RFC 3339 timestamps, 64-bit integers as strings, default values left out, a double
//!   that holds an integer written as one, `5` rather than `5.0`, as protobuf's C++ and Go
//!   printers write it; both are valid proto3 JSON). It is
//!   produced by prost-reflect from the contract's own descriptors ([`crate::pb::DESCRIPTOR_POOL`]),
//!   never by a hand-kept model, so the HTTP routes, the WebSocket and the CLI's JSON lines all
//!   speak one schema that `json_format.Parse(text, RunEvent())` or protobuf-es reads.

use prost_reflect::{DeserializeOptions, DynamicMessage, ReflectMessage, SerializeOptions};
use prost_types::value::Kind;
use serde_json::{Map, Number, Value};

/// Why a message could not be written as JSON or read from it.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The text is not JSON, or not the JSON of this message (the message names the field).
    #[error("invalid {message} JSON: {reason}")]
    Parse {
        /// The message expected, like `toolstream.v1.RunToolRequest`.
        message: String,
        /// What is wrong.
        reason: String,
    },
    /// The message holds something JSON cannot carry (a non-finite number in a `Value`).
    #[error("cannot write {message} as JSON: {reason}")]
    Write {
        /// The message.
        message: String,
        /// What is wrong.
        reason: String,
    },
}

/// `message` in the canonical proto3 JSON mapping, on one line.
pub fn to_json<M: ReflectMessage>(message: &M) -> Result<String, JsonError> {
    let dynamic = message.transcode_to_dynamic();
    let mut serializer = serde_json::Serializer::with_formatter(Vec::new(), IntegralDoubles);
    dynamic
        .serialize_with_options(&mut serializer, &SerializeOptions::new())
        .map_err(|e| JsonError::Write {
            message: dynamic.descriptor().full_name().to_owned(),
            reason: e.to_string(),
        })?;
    // serde_json writes UTF-8 only.
    String::from_utf8(serializer.into_inner()).map_err(|e| JsonError::Write {
        message: dynamic.descriptor().full_name().to_owned(),
        reason: e.to_string(),
    })
}

/// Reads `M` from its canonical proto3 JSON (proto field names are accepted too, as protobuf's
/// parsers do). Unknown fields are errors that name the field.
pub fn from_json<M: ReflectMessage + Default>(text: &[u8]) -> Result<M, JsonError> {
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let message = read_dynamic::<M, _>(&mut deserializer)?;
    deserializer.end().map_err(|e| parse_error::<M>(e))?;
    transcode(message)
}

/// Reads `M` from a JSON value holding its canonical proto3 JSON (see [`from_json`]).
pub fn from_json_value<M: ReflectMessage + Default>(value: Value) -> Result<M, JsonError> {
    transcode(read_dynamic::<M, _>(value)?)
}

fn read_dynamic<'de, M, D>(deserializer: D) -> Result<DynamicMessage, JsonError>
where
    M: ReflectMessage + Default,
    D: serde::Deserializer<'de>,
    D::Error: std::fmt::Display,
{
    DynamicMessage::deserialize_with_options(
        M::default().descriptor(),
        deserializer,
        &DeserializeOptions::new(),
    )
    .map_err(|e| parse_error::<M>(e))
}

fn transcode<M: ReflectMessage + Default>(message: DynamicMessage) -> Result<M, JsonError> {
    message.transcode_to::<M>().map_err(|e| parse_error::<M>(e))
}

fn parse_error<M: ReflectMessage + Default>(reason: impl std::fmt::Display) -> JsonError {
    JsonError::Parse {
        message: M::default().descriptor().full_name().to_owned(),
        reason: reason.to_string(),
    }
}

/// JSON object → `google.protobuf.Struct`.
pub fn json_to_struct(object: Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: object
            .into_iter()
            .map(|(key, value)| (key, json_to_value(value)))
            .collect(),
    }
}

/// JSON value → `google.protobuf.Value`. Numbers become doubles, as the protobuf type requires.
pub fn json_to_value(value: Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(json_to_value).collect(),
        }),
        Value::Object(object) => Kind::StructValue(json_to_struct(object)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// The size of `value` encoded as a `google.protobuf.Value` (what `json_to_value(value)` would
/// encode to), computed from the JSON without making the protobuf value: for refusing a value
/// too large for a message before it is sent.
pub fn value_encoded_len(value: &Value) -> usize {
    match value {
        // The enum's varint (0), or the bool's.
        Value::Null | Value::Bool(_) => 2,
        // A fixed 64-bit double.
        Value::Number(_) => 9,
        Value::String(text) => delimited_len(text.len()),
        Value::Array(items) => delimited_len(
            items
                .iter()
                .map(|item| delimited_len(value_encoded_len(item)))
                .sum(),
        ),
        Value::Object(object) => delimited_len(
            object
                .iter()
                .map(|(key, item)| delimited_len(entry_len(key, item).0))
                .sum(),
        ),
    }
}

/// Writes `value` as a `google.protobuf.Value` message body, the bytes `json_to_value(value)`
/// encodes to (a test holds the two together), without making the protobuf value: no copy of
/// its strings, no map built. Its length is [`value_encoded_len`].
pub fn encode_value(value: &Value, buf: &mut impl bytes::BufMut) {
    use prost::encoding::{WireType, encode_key, encode_varint};
    // The fields of `google.protobuf.Value`, `Struct`'s map entry and `ListValue`.
    const NULL: u32 = 1;
    const NUMBER: u32 = 2;
    const STRING: u32 = 3;
    const BOOL: u32 = 4;
    const STRUCT: u32 = 5;
    const LIST: u32 = 6;
    const ENTRY_KEY: u32 = 1;
    const ENTRY_VALUE: u32 = 2;
    fn delimited(tag: u32, len: usize, buf: &mut impl bytes::BufMut) {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(len as u64, buf);
    }
    match value {
        Value::Null => {
            encode_key(NULL, WireType::Varint, buf);
            encode_varint(0, buf);
        }
        Value::Bool(b) => {
            encode_key(BOOL, WireType::Varint, buf);
            encode_varint(u64::from(*b), buf);
        }
        Value::Number(n) => {
            encode_key(NUMBER, WireType::SixtyFourBit, buf);
            buf.put_f64_le(n.as_f64().unwrap_or(f64::NAN));
        }
        Value::String(text) => {
            delimited(STRING, text.len(), buf);
            buf.put_slice(text.as_bytes());
        }
        Value::Array(items) => {
            let body: usize = items
                .iter()
                .map(|item| delimited_len(value_encoded_len(item)))
                .sum();
            delimited(LIST, body, buf);
            for item in items {
                // `ListValue.values`, field 1.
                delimited(1, value_encoded_len(item), buf);
                encode_value(item, buf);
            }
        }
        Value::Object(object) => {
            let body: usize = object
                .iter()
                .map(|(key, item)| delimited_len(entry_len(key, item).0))
                .sum();
            delimited(STRUCT, body, buf);
            for (key, item) in object {
                // `Struct.fields`, field 1: one map entry each, its key left out when empty.
                let (entry, value_len) = entry_len(key, item);
                delimited(1, entry, buf);
                if !key.is_empty() {
                    delimited(ENTRY_KEY, key.len(), buf);
                    buf.put_slice(key.as_bytes());
                }
                delimited(ENTRY_VALUE, value_len, buf);
                encode_value(item, buf);
            }
        }
    }
}

/// A length-delimited field's size with a one-byte key: key, length, body of `len` bytes.
fn delimited_len(len: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

/// The size of a `Struct` map entry of `key` and `item`, and of `item`'s encoding within it.
fn entry_len(key: &str, item: &Value) -> (usize, usize) {
    let value_len = value_encoded_len(item);
    // proto3 leaves the empty key out.
    let key_len = if key.is_empty() {
        0
    } else {
        delimited_len(key.len())
    };
    (key_len + delimited_len(value_len), value_len)
}

/// `google.protobuf.Struct` → JSON object.
pub fn struct_to_json(object: prost_types::Struct) -> Map<String, Value> {
    object
        .fields
        .into_iter()
        .map(|(key, value)| (key, value_to_json(value)))
        .collect()
}

/// `google.protobuf.Value` → JSON. Doubles with no fractional part become integers, so that
/// `{"count": 20}` sent by any client reaches a tool as the integer 20.
pub fn value_to_json(value: prost_types::Value) -> Value {
    match value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::NumberValue(n)) => number_to_json(n),
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::ListValue(list)) => {
            Value::Array(list.values.into_iter().map(value_to_json).collect())
        }
        Some(Kind::StructValue(object)) => Value::Object(struct_to_json(object)),
    }
}

/// 2^53: beyond it a double no longer holds every integer exactly.
const EXACT: f64 = 9_007_199_254_740_992.0;

/// Whether `n` is an integer a double holds exactly, to be written without a fraction.
fn is_exact_integer(n: f64) -> bool {
    n.fract() == 0.0 && n.abs() <= EXACT
}

fn number_to_json(n: f64) -> Value {
    if is_exact_integer(n) {
        Value::Number(Number::from(n as i64))
    } else {
        Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// serde_json's compact output, except that a double holding an integer is written as the
/// integer (every JSON number in a `Struct` is a double, so `{"count": 5}` would come back as
/// `{"count":5.0}`).
struct IntegralDoubles;

impl serde_json::ser::Formatter for IntegralDoubles {
    fn write_f64<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        value: f64,
    ) -> std::io::Result<()> {
        if is_exact_integer(value) {
            write!(writer, "{}", value as i64)
        } else {
            serde_json::ser::CompactFormatter.write_f64(writer, value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;
    use serde_json::json;

    #[test]
    fn values_are_encoded_and_measured_as_prost_encodes_them() {
        use prost::Message;
        let long = "x".repeat(300);
        let values = [
            json!(null),
            json!(true),
            json!(false),
            json!(1.5),
            json!(0),
            json!(-3),
            json!(u64::MAX),
            json!(""),
            json!("digest"),
            json!(long),
            json!([]),
            json!([1, "two", null, [false], {"": 0}]),
            json!({"a": {"b": [1, 2, 3], "c": {}}, "long": long, "": ""}),
            json!(
                (0..200)
                    .map(|i| json!({"file": format!("f{i}"), "n": i}))
                    .collect::<Vec<_>>()
            ),
        ];
        for value in values {
            let expected = json_to_value(value.clone()).encode_to_vec();
            assert_eq!(value_encoded_len(&value), expected.len(), "{value}");
            let mut written = Vec::new();
            encode_value(&value, &mut written);
            assert_eq!(written, expected, "{value}");
        }
    }

    #[test]
    fn messages_are_written_in_the_canonical_mapping() {
        let event = pb::RunEvent {
            run_id: "r1".into(),
            sequence: 7,
            timestamp: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 500_000_000,
            }),
            event: Some(pb::run_event::Event::Progress(pb::Progress {
                progress: Some(0.5),
                status: Some("half".into()),
                call_id: "c1".into(),
                ..pb::Progress::default()
            })),
        };
        let text = to_json(&event).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            json!({
                "runId": "r1",
                "sequence": "7",
                "timestamp": "2023-11-14T22:13:20.500Z",
                "progress": {"progress": 0.5, "status": "half", "callId": "c1"},
            })
        );
        assert!(!text.contains('\n'));
        let back: pb::RunEvent = from_json(text.as_bytes()).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn reading_accepts_proto_names_and_names_unknown_fields() {
        let request: pb::RunToolRequest = from_json_value(json!({
            "tool": "ticks",
            "arguments": {"count": 3},
            "options": {"min_progress_interval_ms": 100, "onDisconnect": "ON_DISCONNECT_CONTINUE"},
        }))
        .unwrap();
        assert_eq!(request.tool, "ticks");
        let options = request.options.unwrap();
        assert_eq!(options.min_progress_interval_ms, 100);
        assert_eq!(options.on_disconnect(), pb::OnDisconnect::Continue);

        let error = from_json::<pb::RunToolRequest>(br#"{"tool": "x", "argumnts": {}}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("argumnts"), "{error}");
        let error = from_json::<pb::RunToolRequest>(b"{")
            .unwrap_err()
            .to_string();
        assert!(error.contains("RunToolRequest"), "{error}");
    }

    #[test]
    fn integral_doubles_are_written_as_integers() {
        let event = pb::RunEvent {
            event: Some(pb::run_event::Event::Result(pb::Result {
                value: Some(json_to_value(
                    json!({"count": 5, "ratio": 0.5, "big": 1e300}),
                )),
            })),
            ..pb::RunEvent::default()
        };
        let text = to_json(&event).unwrap();
        assert!(
            text.contains(r#""count":5"#) && !text.contains("5.0"),
            "{text}"
        );
        assert!(text.contains(r#""ratio":0.5"#), "{text}");
        assert!(text.contains("1e+300"), "{text}");
        let back: pb::RunEvent = from_json(text.as_bytes()).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn json_round_trips_and_integers_stay_integers() {
        let original =
            json!({"count": 20, "ratio": 0.5, "names": ["a", null, true], "nested": {"x": -3}});
        let Value::Object(object) = original.clone() else {
            unreachable!()
        };
        let back = Value::Object(struct_to_json(json_to_struct(object)));
        assert_eq!(back, original);
        assert!(back["count"].is_u64());
    }
}

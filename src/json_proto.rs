//! Conversions between JSON (the currency of tools, the engine and the registry) and protobuf's
//! well-known `Struct`/`Value` types (the currency of the wire). Used by the transport and by
//! tools that speak gRPC themselves (remote toolstream servers).

use prost_types::value::Kind;
use serde_json::{Map, Number, Value};

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

fn number_to_json(n: f64) -> Value {
    // 2^53: beyond it a double no longer holds every integer exactly.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if n.fract() == 0.0 && n.abs() <= EXACT {
        Value::Number(Number::from(n as i64))
    } else {
        Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

//! Conversions between JSON (the engine's and tools' currency) and protobuf's well-known
//! `Struct`/`Value` types, and from engine events to wire events.

use std::time::{Duration, SystemTime};

use prost_types::value::Kind;
use serde_json::{Map, Number, Value};

use crate::engine::{self, CallArguments, EventKind};
use crate::pb;

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

fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    prost_types::Timestamp {
        seconds: since_epoch.as_secs() as i64,
        nanos: since_epoch.subsec_nanos() as i32,
    }
}

fn options(options: engine::RunOptions) -> pb::RunOptions {
    pb::RunOptions {
        min_progress_interval_ms: options
            .min_progress_interval
            .map_or(0, |d| d.as_millis().min(u32::MAX as u128) as u32),
    }
}

impl From<engine::RunEvent> for pb::RunEvent {
    fn from(event: engine::RunEvent) -> Self {
        use pb::run_event::Event;
        let run_id = event.run_id.to_string();
        let body = match event.kind {
            EventKind::Started(started) => Event::Started(pb::RunStarted {
                run_id: run_id.clone(),
                tool: started.tool,
                model: started.model,
                tools: started.tools,
                max_steps: started.max_steps,
                options: Some(options(started.options)),
                deadline_ms: started
                    .deadline
                    .map_or(0, |d| d.as_millis().min(u64::MAX as u128) as u64),
            }),
            EventKind::Progress { call, update } => Event::Progress(pb::Progress {
                progress: update.fraction,
                status: update.status,
                data: (!update.data.is_empty()).then(|| json_to_struct(update.data)),
                call_id: call.call_id.to_string(),
                tool: call.tool.to_string(),
                parent_call_id: call.parent_call_id.to_string(),
            }),
            EventKind::Result(value) => Event::Result(pb::Result {
                value: Some(json_to_value(value)),
            }),
            EventKind::ToolCallStarted { call, arguments } => {
                let (arguments, raw_arguments) = match arguments {
                    CallArguments::Object(object) => (Some(json_to_struct(object)), String::new()),
                    CallArguments::Raw(raw) => (None, raw),
                };
                Event::ToolCallStarted(pb::ToolCallStarted {
                    call_id: call.call_id.to_string(),
                    tool: call.tool.to_string(),
                    arguments,
                    parent_call_id: call.parent_call_id.to_string(),
                    raw_arguments,
                })
            }
            EventKind::ToolCallFinished { call, outcome } => {
                use pb::tool_call_finished::Outcome;
                Event::ToolCallFinished(pb::ToolCallFinished {
                    call_id: call.call_id.to_string(),
                    tool: call.tool.to_string(),
                    outcome: Some(match outcome {
                        Ok(value) => Outcome::Result(json_to_value(value)),
                        Err(error) => Outcome::Error(error),
                    }),
                    parent_call_id: call.parent_call_id.to_string(),
                })
            }
            EventKind::Message(text) => Event::Message(pb::MessageDelta { text }),
        };
        pb::RunEvent {
            run_id,
            sequence: event.sequence,
            timestamp: Some(timestamp(event.timestamp)),
            event: Some(body),
        }
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

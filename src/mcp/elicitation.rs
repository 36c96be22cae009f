//! A run's input request asked of the MCP client during its `tools/call`, as
//! `elicitation/create` (form mode): the request's prompt is the message, its JSON Schema the
//! `requestedSchema`. MCP only asks for objects of primitive properties, so any other schema is
//! wrapped as the one property `value` and the answer unwrapped. A client that did not declare
//! the capability, a schema MCP cannot carry, or a revision that forbids server-to-client
//! requests (2026-07-28) leave the request open for RespondToRun.

use rmcp::model::{ElicitRequestParams, ElicitationAction, ElicitationSchema};
use rmcp::service::{ElicitationMode, Peer, RoleServer};
use serde_json::{Value, json};

use crate::engine::Reply;

/// The property a non-object schema is wrapped in.
const WRAPPED: &str = "value";

/// An input request of the run, as a `tools/call` reads it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InputQuestion {
    /// The request's id within the run.
    pub(crate) request_id: String,
    /// What to ask, in words.
    pub(crate) prompt: String,
    /// The JSON Schema the answer must satisfy; `None`: any value.
    pub(crate) schema: Option<Value>,
}

/// How the schema sent relates to the request's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// The request's schema, sent as it is: the answer is the content.
    Object,
    /// The request's schema as the property `value`: the answer is that property.
    Wrapped,
}

/// The `requestedSchema` for a request's schema, and how to read the answer; `None` when MCP
/// cannot carry it (an object with a property that is not a primitive, an array, ...). A request
/// without a schema (any value) asks for text.
fn requested_schema(schema: Option<&Value>) -> Option<(ElicitationSchema, Shape)> {
    let is_object = schema.and_then(|schema| schema.get("type")) == Some(&Value::from("object"));
    let (requested, shape) = match schema {
        Some(schema) if is_object => (schema.clone(), Shape::Object),
        Some(schema) => (wrap(schema.clone()), Shape::Wrapped),
        None => (wrap(json!({"type": "string"})), Shape::Wrapped),
    };
    match serde_json::from_value(requested) {
        Ok(requested) => Some((requested, shape)),
        Err(error) => {
            tracing::debug!(%error, "an input request's schema is not an MCP elicitation schema");
            None
        }
    }
}

fn wrap(schema: Value) -> Value {
    json!({"type": "object", "properties": {WRAPPED: schema}, "required": [WRAPPED]})
}

/// The reply an elicitation's answer makes: accept gives the content (unwrapped), decline and
/// cancel decline the request.
fn reply(action: ElicitationAction, content: Option<Value>, shape: Shape) -> Reply {
    match action {
        ElicitationAction::Accept => {
            let value = match (shape, content) {
                (Shape::Object, content) => content.unwrap_or_else(|| json!({})),
                (Shape::Wrapped, Some(Value::Object(mut content))) => {
                    content.remove(WRAPPED).unwrap_or(Value::Null)
                }
                (Shape::Wrapped, _) => Value::Null,
            };
            Reply::Value(value)
        }
        // Decline, cancel, and any action a later revision adds: no answer was given.
        _ => Reply::Decline,
    }
}

/// Asks `question` of the client behind `peer` and answers with its reply; `None` when it
/// cannot be asked there (the request stays open for RespondToRun).
pub(crate) async fn elicit(peer: &Peer<RoleServer>, question: &InputQuestion) -> Option<Reply> {
    if !peer
        .supported_elicitation_modes()
        .contains(&ElicitationMode::Form)
    {
        return None;
    }
    let (requested_schema, shape) = requested_schema(question.schema.as_ref())?;
    let params = ElicitRequestParams::FormElicitationParams {
        meta: None,
        message: question.prompt.clone(),
        requested_schema,
    };
    match peer.create_elicitation(params).await {
        Ok(result) => Some(reply(result.action, result.content, shape)),
        Err(error) => {
            tracing::debug!(%error, request_id = question.request_id, "elicitation not answered");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_object_schemas_are_wrapped_as_value_and_unwrapped_from_the_answer() {
        let (requested, shape) =
            requested_schema(Some(&json!({"type": "boolean"}))).expect("a boolean is carried");
        assert_eq!(shape, Shape::Wrapped);
        assert_eq!(
            serde_json::to_value(&requested).expect("serializes"),
            json!({"type": "object", "properties": {"value": {"type": "boolean"}}, "required": ["value"]})
        );
        let accepted = reply(
            ElicitationAction::Accept,
            Some(json!({"value": true})),
            shape,
        );
        assert_eq!(accepted, Reply::Value(Value::Bool(true)));
        assert_eq!(
            reply(ElicitationAction::Cancel, None, shape),
            Reply::Decline
        );
    }

    #[test]
    fn object_schemas_go_as_they_are_and_nested_ones_are_not_carried() {
        let count = json!({
            "type": "object",
            "properties": {"count": {"type": "integer", "minimum": 1}},
            "required": ["count"]
        });
        let (_, shape) = requested_schema(Some(&count)).expect("primitive properties are carried");
        assert_eq!(shape, Shape::Object);
        assert_eq!(
            reply(ElicitationAction::Accept, Some(json!({"count": 2})), shape),
            Reply::Value(json!({"count": 2}))
        );
        let nested = json!({"type": "object", "properties": {"inner": {"type": "object"}}});
        assert!(requested_schema(Some(&nested)).is_none());
        assert!(requested_schema(Some(&json!({"type": "array"}))).is_none());
        assert!(
            requested_schema(None).is_some(),
            "any value is asked as text"
        );
    }
}

//! A run's input request asked of the MCP client during its `tools/call`, as
//! `elicitation/create` (form mode): the request's prompt is the message, its JSON Schema the
//! `requestedSchema`. MCP only asks for objects of primitive properties, so any other schema is
//! wrapped as the one property `value` and the answer unwrapped. The 2026-07-28 revision forbids
//! requests from the server: there the same form goes in an `InputRequiredResult` and the answer
//! comes back in the retried call's `inputResponses`. A client that did not declare the
//! capability, or a schema MCP cannot carry, leave the request open for RespondToRun.

use rmcp::model::{
    ElicitRequest, ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationSchema,
    InputRequest,
};
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

/// `question` as the parameters of an `elicitation/create` in form mode, and how to read the
/// answer; `None` when MCP cannot carry its schema.
fn form_request(question: &InputQuestion) -> Option<(ElicitRequestParams, Shape)> {
    let (requested_schema, shape) = requested_schema(question.schema.as_ref())?;
    let params = ElicitRequestParams::FormElicitationParams {
        meta: None,
        message: question.prompt.clone(),
        requested_schema,
    };
    Some((params, shape))
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
    let (params, shape) = form_request(question)?;
    match peer.create_elicitation(params).await {
        Ok(result) => Some(reply(result.action, result.content, shape)),
        Err(error) => {
            tracing::debug!(%error, request_id = question.request_id, "elicitation not answered");
            None
        }
    }
}

/// `question` as an input request of an `InputRequiredResult` (the 2026-07-28 revision's way
/// of asking: the client answers in its retried `tools/call`); `None` when MCP cannot carry
/// its schema.
pub(crate) fn input_request(question: &InputQuestion) -> Option<InputRequest> {
    let (params, _) = form_request(question)?;
    Some(InputRequest::Elicitation(ElicitRequest::new(params)))
}

/// The reply that an `inputResponses` entry (an elicitation result) makes to a request with
/// `schema`; `Err` says why the entry is not an elicitation result.
pub(crate) fn reply_to_response(schema: Option<&Value>, response: Value) -> Result<Reply, String> {
    let result: ElicitResult =
        serde_json::from_value(response).map_err(|error| error.to_string())?;
    let shape = requested_schema(schema).map_or(Shape::Object, |(_, shape)| shape);
    Ok(reply(result.action, result.content, shape))
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

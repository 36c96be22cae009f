//! What the agent loop knows of a language model: a conversation goes in, a stream of text deltas
//! and tool calls comes out. No HTTP here; providers live in their own modules.

use futures::stream::BoxStream;

use crate::tools::ToolSpec;

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatMessage {
    /// Instructions placed before the user's prompt.
    System(String),
    /// What the user asks.
    User(String),
    /// What the model answered: its text and the tool calls it asked for.
    Assistant {
        /// The text.
        text: String,
        /// The tool calls.
        tool_calls: Vec<ToolCallRequest>,
    },
    /// The answer of one tool call, fed back to the model.
    ToolResult {
        /// The call it answers.
        call_id: String,
        /// The result as JSON text, or the error in words.
        content: String,
    },
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallRequest {
    /// The model's id for the call.
    pub id: String,
    /// The registry name of the tool.
    pub name: String,
    /// The arguments exactly as the model wrote them (normally a JSON object).
    pub arguments: String,
}

/// One request to the model.
#[derive(Debug, Clone)]
pub struct ModelRequest {
    /// The model's name.
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// The tools the model may call.
    pub tools: Vec<ToolSpec>,
}

/// A piece of the model's answer, in the order it arrives.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelOutput {
    /// Text to append to the answer.
    Text(String),
    /// The model's turn is over: the tool calls it asked for (empty when it answered).
    Done {
        /// The calls, in the model's order.
        tool_calls: Vec<ToolCallRequest>,
    },
}

/// How talking to the model failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ModelError {
    /// The endpoint cannot be reached, or the connection broke.
    #[error("model endpoint {endpoint} is unreachable: {reason}")]
    Unreachable {
        /// The URL.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The endpoint refused the request (bad key, unknown model, overload).
    #[error("model endpoint {endpoint} answered HTTP {status}: {message}")]
    Refused {
        /// The URL.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The endpoint's own message.
        message: String,
    },
    /// The endpoint reported an error in the middle of its answer (an error chunk in the stream).
    #[error("model endpoint {endpoint} reported an error mid-answer: {message}")]
    Failed {
        /// The URL.
        endpoint: String,
        /// The endpoint's own message.
        message: String,
        /// The error says the endpoint is overloaded, rate-limited or failing on its side, which
        /// may pass.
        transient: bool,
    },
    /// The endpoint answered something that is not the protocol.
    #[error("model endpoint {endpoint} answered something unexpected: {reason}")]
    Protocol {
        /// The URL.
        endpoint: String,
        /// What was wrong.
        reason: String,
    },
}

/// A language model the agent can talk to.
pub trait ModelProvider: Send + Sync + 'static {
    /// Where the model is, for messages.
    fn endpoint(&self) -> &str;

    /// Sends the conversation and streams the answer. The stream ends after
    /// [`ModelOutput::Done`] or an error; dropping it abandons the request.
    fn stream(&self, request: ModelRequest) -> BoxStream<'static, Result<ModelOutput, ModelError>>;
}

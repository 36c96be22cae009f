//! The agent loop of one run: model → tool calls → results → model, until the model answers
//! without tool calls or the step limit is reached.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt, stream};
use serde_json::Value;

use super::model::{
    ChatMessage, ModelError, ModelOutput, ModelProvider, ModelRequest, ToolCallRequest,
};
use super::progress::{RunLevel, RunProgress, StepProgress};
use crate::engine::{CallArguments, CallError, CallTag, EventKind, RunContext, RunError};
use crate::tools::{Answer, InputKind, Progress, Question, ToolSpec};

/// Everything a run needs, resolved before it starts.
pub(super) struct Conversation {
    pub(super) provider: Arc<dyn ModelProvider>,
    pub(super) model: String,
    pub(super) system_prompt: String,
    pub(super) prompt: String,
    pub(super) tools: Vec<ToolSpec>,
    pub(super) max_steps: u32,
    /// Tool calls of the run in flight at once; further calls wait for one to end.
    pub(super) max_parallel_calls: usize,
    /// Tools whose calls need a person's approval first (`"*"`: every tool).
    pub(super) approval_required: Vec<String>,
}

impl From<ModelError> for RunError {
    fn from(error: ModelError) -> Self {
        match &error {
            ModelError::Unreachable { .. } => RunError::Unavailable(error.to_string()),
            // Overload and outages may pass; a refused key or an unknown model is the server's
            // configuration, which the client cannot fix.
            ModelError::Refused { status, .. } if *status == 429 || *status >= 500 => {
                RunError::Unavailable(error.to_string())
            }
            ModelError::Refused { .. } => RunError::FailedPrecondition(error.to_string()),
            ModelError::Failed {
                transient: true, ..
            } => RunError::Unavailable(error.to_string()),
            ModelError::Failed { .. } | ModelError::Protocol { .. } => {
                RunError::Internal(error.to_string())
            }
        }
    }
}

/// The client went away; the engine is cancelling the run anyway.
fn gone<T>(_: T) -> RunError {
    RunError::Cancelled
}

impl Conversation {
    pub(super) async fn run(self, context: RunContext) -> Result<Value, RunError> {
        let mut messages = Vec::new();
        if !self.system_prompt.is_empty() {
            messages.push(ChatMessage::System(self.system_prompt.clone()));
        }
        messages.push(ChatMessage::User(self.prompt.clone()));
        let progress = RunProgress::new(Progress::new(Arc::new(RunLevel::new(context.clone()))));

        for step in 1..=self.max_steps {
            let (text, tool_calls) = self.ask_model(&context, messages.clone()).await?;
            if tool_calls.is_empty() {
                progress.answered();
                return Ok(Value::String(text));
            }
            messages.push(ChatMessage::Assistant {
                text,
                tool_calls: tool_calls.clone(),
            });
            let answers = self
                .run_calls(&context, progress.step(step, tool_calls.len()), &tool_calls)
                .await?;
            for (call, content) in tool_calls.iter().zip(answers) {
                messages.push(ChatMessage::ToolResult {
                    call_id: call.id.clone(),
                    content,
                });
            }
        }
        Err(RunError::FailedPrecondition(format!(
            "the agent used its {} steps without reaching an answer; raise max_steps or narrow the prompt",
            self.max_steps
        )))
    }

    /// One model turn: streams its text as message events, returns the text and the calls.
    async fn ask_model(
        &self,
        context: &RunContext,
        messages: Vec<ChatMessage>,
    ) -> Result<(String, Vec<ToolCallRequest>), RunError> {
        let mut output = self.provider.stream(ModelRequest {
            model: self.model.clone(),
            messages,
            tools: self.tools.clone(),
        });
        let mut text = String::new();
        while let Some(piece) = output.next().await {
            match piece? {
                ModelOutput::Text(delta) => {
                    text.push_str(&delta);
                    context
                        .emit(EventKind::Message(delta))
                        .await
                        .map_err(gone)?;
                }
                ModelOutput::Done { tool_calls } => return Ok((text, tool_calls)),
            }
        }
        Err(RunError::Internal(format!(
            "model endpoint {} ended its answer without finishing it",
            self.provider.endpoint()
        )))
    }

    /// Runs the calls of one step in parallel, at most `max_parallel_calls` at once, in the
    /// model's order; returns each call's answer for the model, in that order. A call waiting for
    /// its turn has not started: its `tool_call_started` comes when it starts.
    async fn run_calls(
        &self,
        context: &RunContext,
        step_progress: Arc<StepProgress>,
        calls: &[ToolCallRequest],
    ) -> Result<Vec<String>, RunError> {
        let step_progress = &step_progress;
        // Nothing runs until the stream below polls it.
        let runs: Vec<_> = calls
            .iter()
            .enumerate()
            .map(|(index, call)| async move {
                let answer = self.run_call(context, step_progress, index, call).await;
                step_progress.finished(index);
                answer.map(|answer| (index, answer))
            })
            .collect();
        let mut answers: Vec<(usize, String)> = stream::iter(runs)
            // Unordered, so that a slow call does not hold back the start of the next ones.
            .buffer_unordered(self.max_parallel_calls.max(1))
            .try_collect()
            .await?;
        answers.sort_unstable_by_key(|(index, _)| *index);
        Ok(answers.into_iter().map(|(_, answer)| answer).collect())
    }

    async fn run_call(
        &self,
        context: &RunContext,
        step_progress: &Arc<StepProgress>,
        index: usize,
        call: &ToolCallRequest,
    ) -> Result<String, RunError> {
        let tag = CallTag::call(call.id.as_str(), call.name.as_str());
        let parsed = parse_arguments(&call.arguments);
        if let Ok(object) = &parsed
            && self.needs_approval(&call.name)
            && let Some(refusal) = self.approve(context, &tag, object).await
        {
            // Not made: no tool_call_started (that event means the call runs).
            return Ok(refusal);
        }
        let arguments = match &parsed {
            Ok(object) => CallArguments::Object(object.clone()),
            Err(_) => CallArguments::Raw(call.arguments.clone()),
        };
        context
            .emit(EventKind::ToolCallStarted {
                call: tag.clone(),
                arguments,
            })
            .await
            .map_err(gone)?;

        let outcome = match parsed {
            Err(reason) => Err(reason),
            Ok(_) if !self.tools.iter().any(|t| t.name == call.name) => Err(format!(
                "there is no tool named {:?}; the tools you can call are: {}",
                call.name,
                self.tools
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Ok(object) => {
                let progress = step_progress.call(index, context.call_progress(tag.clone()));
                let outcome = context
                    .call_tool(&tag, Value::Object(object), progress.handle())
                    .await;
                // Before tool_call_finished: a tool that kept its handle cannot report after it.
                progress.close();
                outcome.map_err(|error| describe_call_error(&call.name, &error))
            }
        };
        let answer = match &outcome {
            Ok(value) => value.to_string(),
            Err(error) => format!("error: {error}"),
        };
        context
            .emit(EventKind::ToolCallFinished { call: tag, outcome })
            .await
            .map_err(gone)?;
        Ok(answer)
    }
}

impl Conversation {
    /// Whether calls of `tool` wait for a person's approval.
    fn needs_approval(&self, tool: &str) -> bool {
        self.tools.iter().any(|spec| spec.name == tool)
            && self
                .approval_required
                .iter()
                .any(|name| name == "*" || name == tool)
    }

    /// Asks a person whether the call `tag` with `arguments` may run. `None`: approved (the
    /// answer `true`); otherwise what the model is told instead of the call's result.
    async fn approve(
        &self,
        context: &RunContext,
        tag: &CallTag,
        arguments: &serde_json::Map<String, Value>,
    ) -> Option<String> {
        let mut data = serde_json::Map::new();
        data.insert("tool".to_owned(), Value::String(tag.tool.to_string()));
        data.insert("arguments".to_owned(), Value::Object(arguments.clone()));
        let question = Question {
            prompt: format!(
                "Allow the call of tool {:?} with arguments {}?",
                &*tag.tool,
                Value::Object(arguments.clone())
            ),
            schema: Some(serde_json::json!({"type": "boolean"})),
            kind: InputKind::Approval,
            data: Some(data),
            expire_time: None,
        };
        let why = match context.ask(tag.clone(), question).await {
            Answer::Answered(Value::Bool(true)) => return None,
            Answer::Answered(_) | Answer::Declined => "a person declined it",
            Answer::Expired => "nobody approved it in time",
            Answer::Cancelled | Answer::Refused(_) => "it could not be approved",
        };
        Some(format!(
            "error: the call of tool {:?} was not made: it needs approval and {why}",
            &*tag.tool
        ))
    }
}

/// A failed call in words, for the model to read (and for `tool_call_finished`).
fn describe_call_error(tool: &str, error: &CallError) -> String {
    match error {
        CallError::Rejected(error) => error.to_string(),
        CallError::Failed(error) => format!("tool {tool:?} failed: {error}"),
        CallError::Panicked(message) => format!("tool {tool:?} crashed: {message}"),
    }
}

fn parse_arguments(text: &str) -> Result<serde_json::Map<String, Value>, String> {
    if text.trim().is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err("the arguments must be a JSON object".to_owned()),
        Err(e) => Err(format!("the arguments are not valid JSON: {e}")),
    }
}

//! RunAgent: a language model chooses tool calls, the tools run (in parallel when it asks for
//! several, at most `max_parallel_calls` at once), their results go back to the model, until it
//! answers. Every step streams as run events: the model's text, each call's start, progress and
//! end, and progress of the run as a whole.
//!
//! The loop ([`run`]) sees the model only through [`ModelProvider`]; [`openai`] is the provider
//! for the OpenAI-compatible chat-completions API. The agent sits on top of the engine: a run is
//! started with [`Engine::start_run`], so limits, deadlines and cancellation are the engine's.

mod model;
pub mod openai;
mod progress;
mod run;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub use model::{
    ChatMessage, ModelError, ModelOutput, ModelProvider, ModelRequest, ToolCallRequest,
};

use crate::engine::{Engine, Owner, RunError, RunHandle, RunKind, RunOptions, RunStarted};

/// Used when neither the request nor the server names a step limit.
pub const DEFAULT_MAX_STEPS: u32 = 8;

/// Tool calls of one agent run in flight at once, unless the server says otherwise.
pub const DEFAULT_MAX_PARALLEL_CALLS: usize = 8;

/// The model behind RunAgent, as configured on the server.
#[derive(Clone)]
pub struct AgentSettings {
    /// The provider; `None` when no model endpoint is configured.
    pub provider: Option<Arc<dyn ModelProvider>>,
    /// The model used when a request names none.
    pub default_model: Option<String>,
    /// The step limit used when a request sets none.
    pub default_max_steps: u32,
    /// Tool calls of one run in flight at once (at least 1); further calls wait for one to end.
    pub max_parallel_calls: usize,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            provider: None,
            default_model: None,
            default_max_steps: DEFAULT_MAX_STEPS,
            max_parallel_calls: DEFAULT_MAX_PARALLEL_CALLS,
        }
    }
}

/// One RunAgent call, in domain terms.
#[derive(Debug, Clone, Default)]
pub struct AgentRequest {
    /// What the user asks.
    pub prompt: String,
    /// Instructions before the prompt; empty for none.
    pub system_prompt: String,
    /// Tools the model may call; empty for all.
    pub tools: Vec<String>,
    /// The model; empty for the server's default.
    pub model: String,
    /// Most model turns; 0 for the server's default.
    pub max_steps: u32,
    /// Delivery options.
    pub options: RunOptions,
    /// The client's deadline, from now.
    pub deadline: Option<Duration>,
    /// Whom the run belongs to (`None`: no one).
    pub owner: Option<Owner>,
    /// Labels to find the run by.
    pub labels: BTreeMap<String, String>,
    /// The caller's idempotency key; empty for none.
    pub idempotency_key: String,
    /// Tools whose calls need a person's approval before they run (`"*"`: every tool), besides
    /// the server's ([`Agent::with_approval_required`]).
    pub approval_required: Vec<String>,
}

/// Starts agent runs on an engine.
pub struct Agent {
    engine: Arc<Engine>,
    settings: AgentSettings,
    /// Tools whose calls always need approval (`[model] approval_required`).
    approval_required: Vec<String>,
}

const HOW_TO_CONFIGURE: &str = "start the server with --model-url URL (an OpenAI-compatible API \
     base ending in /v1; or TOOLSTREAM_MODEL_URL, or `url` under [model] in the config file) and \
     --model NAME (or TOOLSTREAM_MODEL), or name a model in the request";

impl Agent {
    /// An agent running its tools on `engine`.
    pub fn new(engine: Arc<Engine>, settings: AgentSettings) -> Self {
        Agent {
            engine,
            settings,
            approval_required: Vec::new(),
        }
    }

    /// The same agent, asking for a person's approval before every call of these tools in every
    /// run (`"*"`: every tool), besides those a request names.
    pub fn with_approval_required(mut self, tools: Vec<String>) -> Self {
        self.approval_required = tools;
        self
    }

    /// The engine its runs run on.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Whether a model provider is configured (agent runs can start at all).
    pub fn has_model(&self) -> bool {
        self.settings.provider.is_some()
    }

    /// Checks the request and starts the run. Fails before anything runs when no model is
    /// configured, the prompt is empty, or the request names an unknown tool.
    pub async fn start(&self, request: AgentRequest) -> Result<RunHandle, RunError> {
        let Some(provider) = self.settings.provider.clone() else {
            return Err(RunError::FailedPrecondition(format!(
                "RunAgent needs a language model and none is configured: {HOW_TO_CONFIGURE}"
            )));
        };
        let model = if request.model.is_empty() {
            self.settings.default_model.clone().ok_or_else(|| {
                RunError::FailedPrecondition(format!(
                    "no model named in the request and no default model configured: {HOW_TO_CONFIGURE}"
                ))
            })?
        } else {
            request.model
        };
        if request.prompt.trim().is_empty() {
            return Err(RunError::InvalidArguments("the prompt is empty".into()));
        }
        let registry = self.engine.registry();
        let tools = if request.tools.is_empty() {
            registry.specs()
        } else {
            let mut specs = Vec::with_capacity(request.tools.len());
            for name in &request.tools {
                let spec = registry
                    .spec(name)
                    .ok_or_else(|| RunError::UnknownTool(name.clone()))?;
                specs.push(spec);
            }
            specs
        };
        let max_steps = match request.max_steps {
            0 => self.settings.default_max_steps,
            n => n,
        };
        let started = RunStarted {
            prompt: request.prompt.clone(),
            model: model.clone(),
            tools: tools.iter().map(|t| t.name.clone()).collect(),
            max_steps,
            options: request.options,
            deadline: request.deadline,
            owner: request.owner,
            labels: request.labels,
            idempotency_key: request.idempotency_key,
            ..RunStarted::new(RunKind::Agent)
        };
        let conversation = run::Conversation {
            provider,
            model,
            system_prompt: request.system_prompt,
            prompt: request.prompt,
            tools,
            max_steps,
            max_parallel_calls: self.settings.max_parallel_calls,
            approval_required: self
                .approval_required
                .iter()
                .chain(&request.approval_required)
                .cloned()
                .collect(),
        };
        self.engine
            .start_or_join(started, move |context| conversation.run(context))
            .await
    }
}

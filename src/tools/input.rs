//! Questions a tool asks a person while it runs, and the answers it gets.
//!
//! A tool asks through its [`Progress`](super::Progress) handle
//! ([`Progress::ask`](super::Progress::ask)); the engine makes the question an input request of
//! the run (the run waits on it, clients see it and answer it), and the tool's future resumes
//! with the [`Answer`]. Asking never hangs: a request nobody answers lapses at the run's input
//! timeout or deadline ([`Answer::Expired`]), and a run that ends resolves its open requests
//! ([`Answer::Cancelled`]).

use std::time::SystemTime;

use serde_json::{Map, Value};

/// What a question asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InputKind {
    /// A tool's own question: the answer is a value satisfying the schema.
    #[default]
    Input,
    /// Whether a tool call may run: the answer is a boolean.
    Approval,
}

/// A question for a person.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Question {
    /// What to ask, in words.
    pub prompt: String,
    /// JSON Schema the answer must satisfy; `None`: any value.
    pub schema: Option<Value>,
    /// A tool's own question, or an approval.
    pub kind: InputKind,
    /// Context for the person answering (for an approval: the call's tool and arguments).
    pub data: Option<Map<String, Value>>,
    /// When the question lapses at the latest (a question relayed from a remote run lapses when
    /// the remote's does); the run's input timeout or deadline may end it sooner. `None`: only
    /// those apply.
    pub expire_time: Option<SystemTime>,
}

impl Question {
    /// A tool's own question, `prompt`, whose answer must satisfy `schema` (`None`: any value).
    pub fn new(prompt: impl Into<String>, schema: Option<Value>) -> Self {
        Question {
            prompt: prompt.into(),
            schema,
            ..Question::default()
        }
    }
}

/// How a question was resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A person answered with this value (it satisfies the schema).
    Answered(Value),
    /// A person declined to answer.
    Declined,
    /// Nobody answered before the run's input timeout or deadline.
    Expired,
    /// The run ended (cancelled, or its caller left) before an answer came.
    Cancelled,
    /// The question could not be asked at all (its schema is not a valid JSON Schema, or nothing
    /// can answer where the tool runs); the reason in words. No request was made.
    Refused(String),
}

impl Answer {
    /// The value, when a person answered.
    pub fn value(&self) -> Option<&Value> {
        match self {
            Answer::Answered(value) => Some(value),
            _ => None,
        }
    }

    /// The outcome's name as the command-tool protocol writes it (`answered`, `declined`,
    /// `expired`, `cancelled`; `refused` for a question that could not be asked).
    pub fn outcome_name(&self) -> &'static str {
        match self {
            Answer::Answered(_) => "answered",
            Answer::Declined => "declined",
            Answer::Expired => "expired",
            Answer::Cancelled => "cancelled",
            Answer::Refused(_) => "refused",
        }
    }
}

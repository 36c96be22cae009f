//! The events a run produces, in domain terms (the transport turns them into wire messages).

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use super::kind::RunKind;
use super::owner::Owner;
use super::partial::HeldPartial;
use crate::tools::{Answer, InputKind, ProgressUpdate, SubTask};

/// One event of a run.
pub struct RunEvent {
    /// The run's id.
    pub run_id: Arc<str>,
    /// Position among the events the run produced, from 1; 0 for gaps and heartbeats.
    pub sequence: u64,
    /// When the run produced it.
    pub timestamp: SystemTime,
    /// What happened.
    pub kind: EventKind,
    /// The event as gRPC sends it (encoded bytes), made by the first reader that needs it.
    wire: OnceLock<WireBytes>,
    /// The event in one other form (the web's JSON text), made by the first reader that needs it.
    other: OnceLock<Box<dyn Any + Send + Sync>>,
    /// What the run's log knows of it ([`Standing`] bits), kept on the event so that asking
    /// costs no lookup however many calls the run has. Changed only under the log's lock.
    standing: AtomicU8,
}

/// Bits of [`RunEvent::standing`].
struct Standing;

impl Standing {
    /// Newer progress of the same call was logged.
    const SUPERSEDED: u8 = 1;
    /// Its call finished with it: no newer progress of the call will come.
    const FINAL: u8 = 2;
    /// The log no longer holds it (evicted past `max_events`).
    const GONE: u8 = 4;
}

impl RunEvent {
    /// A new event.
    pub fn new(run_id: Arc<str>, sequence: u64, timestamp: SystemTime, kind: EventKind) -> Self {
        RunEvent {
            run_id,
            sequence,
            timestamp,
            kind,
            wire: OnceLock::new(),
            other: OnceLock::new(),
            standing: AtomicU8::new(0),
        }
    }

    fn has(&self, bit: u8) -> bool {
        self.standing.load(Ordering::Relaxed) & bit != 0
    }

    fn mark(&self, bit: u8) {
        self.standing.fetch_or(bit, Ordering::Relaxed);
    }

    /// Whether newer progress of the same call was logged (see [`super::log`]).
    pub(crate) fn is_superseded(&self) -> bool {
        self.has(Standing::SUPERSEDED)
    }

    pub(crate) fn mark_superseded(&self) {
        self.mark(Standing::SUPERSEDED);
    }

    /// Whether its call finished with it (nothing newer of the call will come).
    pub(crate) fn is_final(&self) -> bool {
        self.has(Standing::FINAL)
    }

    pub(crate) fn mark_final(&self) {
        self.mark(Standing::FINAL);
    }

    /// Whether the log evicted it.
    pub(crate) fn is_gone(&self) -> bool {
        self.has(Standing::GONE)
    }

    pub(crate) fn mark_gone(&self) {
        self.mark(Standing::GONE);
    }

    /// The event's wire encoding, made by `encode` on first use and kept with the event: a
    /// logged event is encoded once however many streams send it, and a stream sending it holds
    /// the event (one reference count), not a copy of the bytes. The engine does not know the
    /// encoding; the transport does.
    pub fn wire(&self, encode: impl FnOnce(&RunEvent) -> WireBytes) -> &[u8] {
        self.wire.get_or_init(|| encode(self)).as_slice()
    }

    /// The event in one other transport form `T` (the web's JSON text), made by `make` on first
    /// use and cloned for every reader after that. A second other form would be made each time.
    pub fn other_form<T: Any + Send + Sync + Clone>(&self, make: impl Fn(&RunEvent) -> T) -> T {
        let cached = self.other.get_or_init(|| Box::new(make(self)));
        match cached.downcast_ref::<T>() {
            Some(form) => form.clone(),
            None => make(self),
        }
    }
}

/// Encodings up to this many bytes are kept inside the event: a progress event's with a status
/// of a few dozen characters fits.
const WIRE_INLINE: usize = 118;

/// An event's encoding for the wire, as [`RunEvent::wire`] keeps it: inside the event when it is
/// small (a progress event's, typically), so that encoding the event allocates nothing; on the
/// heap otherwise.
pub type WireBytes = InlineBytes<WIRE_INLINE>;

/// Bytes kept inline when there are at most `N` of them (no allocation of their own), on the
/// heap otherwise: an event's encoding ([`WireBytes`]), a held partial result's value.
#[derive(Clone, PartialEq)]
pub struct InlineBytes<const N: usize>(Storage<N>);

#[derive(Clone, PartialEq)]
enum Storage<const N: usize> {
    Inline { len: u8, bytes: [u8; N] },
    Heap(Box<[u8]>),
}

impl<const N: usize> InlineBytes<N> {
    /// An inline length is kept in a byte.
    const LEN_FITS: () = assert!(N <= u8::MAX as usize);

    /// `len` bytes, all written by `write` (inline when they fit).
    pub fn written(len: usize, write: impl FnOnce(&mut [u8])) -> Self {
        let () = Self::LEN_FITS;
        if len <= N {
            let mut bytes = [0; N];
            write(&mut bytes[..len]);
            InlineBytes(Storage::Inline {
                len: len as u8,
                bytes,
            })
        } else {
            let mut bytes = vec![0; len].into_boxed_slice();
            write(&mut bytes);
            InlineBytes(Storage::Heap(bytes))
        }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            Storage::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Storage::Heap(bytes) => bytes,
        }
    }
}

impl<const N: usize> From<Vec<u8>> for InlineBytes<N> {
    fn from(bytes: Vec<u8>) -> Self {
        InlineBytes(Storage::Heap(bytes.into_boxed_slice()))
    }
}

impl Clone for RunEvent {
    fn clone(&self) -> Self {
        RunEvent::new(
            Arc::clone(&self.run_id),
            self.sequence,
            self.timestamp,
            self.kind.clone(),
        )
    }
}

impl std::fmt::Debug for RunEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunEvent")
            .field("run_id", &self.run_id)
            .field("sequence", &self.sequence)
            .field("timestamp", &self.timestamp)
            .field("kind", &self.kind)
            .finish()
    }
}

/// What happened.
#[derive(Debug, Clone)]
pub enum EventKind {
    /// The run started; always first.
    Started(Box<RunStarted>),
    /// Progress of the run, of a tool call inside an agent run, or of a sub-task of either.
    Progress {
        /// Which call (or sub-task) reported it; empty at the top level. Shared by every report
        /// of the call: logging progress copies no part of it.
        call: Arc<CallTag>,
        /// The report.
        update: ProgressUpdate,
        /// The server's estimate of the seconds the call has left, made as the report entered
        /// the log (see `eta`); `None` while unknown or for indeterminate progress.
        eta_seconds: Option<f64>,
    },
    /// The run's result; always last.
    Result(Value),
    /// An agent's tool call started.
    ToolCallStarted {
        /// The call.
        call: CallTag,
        /// The arguments the model gave.
        arguments: CallArguments,
    },
    /// An agent's tool call ended.
    ToolCallFinished {
        /// The call.
        call: CallTag,
        /// Its result, or its error in words.
        outcome: Result<Value, String>,
    },
    /// A piece of the model's text.
    Message(String),
    /// The run asks a person for input; open until its [`EventKind::InputResolved`].
    InputRequested(Arc<InputRequest>),
    /// An input request was resolved.
    InputResolved {
        /// The request, as in its `InputRequested`.
        request_id: Arc<str>,
        /// How.
        outcome: InputOutcome,
    },
    /// A piece of a call's output, made before its result. Never coalesced (unlike progress):
    /// held, stored and replayed like every other event, and evicted only past the log's bound.
    PartialResult {
        /// Which call (or sub-task) made it; empty at the top level.
        call: Arc<CallTag>,
        /// The output, its value encoded (see [`HeldPartial`]).
        output: HeldPartial,
    },
    /// Events `from..=to` are gone from the run's log and cannot be sent to this reader. Made
    /// per reader, never stored; its sequence is 0.
    Gap {
        /// The first sequence gone.
        from: u64,
        /// The last sequence gone.
        to: u64,
        /// Why, in words.
        reason: String,
    },
    /// The stream is alive; the run produced nothing new. Made per reader, never stored; its
    /// sequence is 0.
    Heartbeat {
        /// The last sequence the run produced so far.
        last_sequence: u64,
    },
}

impl EventKind {
    /// Progress may be coalesced; every other event is delivered.
    pub fn is_progress(&self) -> bool {
        matches!(self, EventKind::Progress { .. })
    }

    /// The call a progress, partial-result or tool-call event belongs to.
    pub fn call(&self) -> Option<&CallTag> {
        match self {
            EventKind::Progress { call, .. } | EventKind::PartialResult { call, .. } => Some(call),
            EventKind::ToolCallStarted { call, .. } | EventKind::ToolCallFinished { call, .. } => {
                Some(call)
            }
            _ => None,
        }
    }
}

/// Arguments of a tool call as the model sent them.
#[derive(Debug, Clone)]
pub enum CallArguments {
    /// A JSON object.
    Object(serde_json::Map<String, Value>),
    /// Text that is not a JSON object.
    Raw(String),
}

/// Names the tool call (or sub-task) an event belongs to. Empty fields mean the top level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallTag {
    /// The call's id. A sub-task's is its parent's id, `/`, and its own (`call_1/2/1`); at the
    /// top level of a run, its own alone (`2/1`).
    pub call_id: Arc<str>,
    /// The tool it calls; a sub-task's label.
    pub tool: Arc<str>,
    /// The call it was made from, when calls nest (a sub-task, a relayed remote node).
    pub parent_call_id: Arc<str>,
}

impl CallTag {
    /// The top level of a run: not inside any tool call.
    pub fn top() -> Self {
        CallTag {
            call_id: Arc::from(""),
            tool: Arc::from(""),
            parent_call_id: Arc::from(""),
        }
    }

    /// A call of `tool` with id `call_id` at the top level of the run.
    pub fn call(call_id: impl Into<Arc<str>>, tool: impl Into<Arc<str>>) -> Self {
        CallTag {
            call_id: call_id.into(),
            tool: tool.into(),
            parent_call_id: Arc::from(""),
        }
    }

    /// The tag of `task`, a sub-task of this call: its ids are made absolute by putting this
    /// call's id before them, so they are unique in the run whatever made them.
    pub fn sub_task(&self, task: &SubTask) -> CallTag {
        let absolute = |relative: &str| -> Arc<str> {
            if self.call_id.is_empty() {
                Arc::from(relative)
            } else {
                Arc::from(format!("{}/{relative}", self.call_id))
            }
        };
        CallTag {
            call_id: absolute(&task.id),
            tool: Arc::clone(&task.label),
            parent_call_id: if task.parent.is_empty() {
                Arc::clone(&self.call_id)
            } else {
                absolute(&task.parent)
            },
        }
    }
}

/// Options of a run's delivery, and of its life without a caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// At most one progress event per call per this interval; `None` sends all the client can
    /// take.
    pub min_progress_interval: Option<Duration>,
    /// What the caller leaving does to the run.
    pub on_disconnect: OnDisconnect,
    /// A stream silent this long gets a heartbeat event; `None` sends none.
    pub heartbeat_interval: Option<Duration>,
    /// How long an input request stays open; `None`: until the run's deadline.
    pub input_timeout: Option<Duration>,
}

/// What happens to a run when the stream that started it ends first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnDisconnect {
    /// The run is cancelled (the default).
    #[default]
    Cancel,
    /// The run goes on; anyone can watch, look up or cancel it by its id.
    Continue,
}

/// What runs, with its options resolved: the content of the first event.
#[derive(Debug, Clone)]
pub struct RunStarted {
    /// What the run runs: a tool, or an agent.
    pub kind: RunKind,
    /// RunTool: the arguments as the caller sent them (the empty object when it sent none);
    /// `None` for agent runs. Kept for the run's record (GetRun), never sent in the event.
    pub arguments: Option<Value>,
    /// RunAgent: the user's prompt; empty for tool runs. Kept for the run's record (GetRun),
    /// never sent in the event.
    pub prompt: String,
    /// RunAgent: the model.
    pub model: String,
    /// RunAgent: the tools the model may call.
    pub tools: Vec<String>,
    /// RunAgent: the most model turns.
    pub max_steps: u32,
    /// Delivery options in force.
    pub options: RunOptions,
    /// The deadline, from the start.
    pub deadline: Option<Duration>,
    /// Whom the run belongs to (`None`: no one); never sent on the wire.
    pub owner: Option<Owner>,
    /// Labels to find the run by (ListRuns); kept for the run's record, never sent in the event.
    pub labels: BTreeMap<String, String>,
    /// The caller's idempotency key; empty for none. Kept for the run's record, never sent in
    /// the event.
    pub idempotency_key: String,
}

impl RunStarted {
    /// The start of a run of `kind`, with the default options and nothing else set.
    pub fn new(kind: RunKind) -> Self {
        RunStarted {
            kind,
            arguments: None,
            prompt: String::new(),
            model: String::new(),
            tools: Vec::new(),
            max_steps: 0,
            options: RunOptions::default(),
            deadline: None,
            owner: None,
            labels: BTreeMap::new(),
            idempotency_key: String::new(),
        }
    }
}

/// A question the run asks, as its `input_requested` event carries it.
#[derive(Debug, Clone)]
pub struct InputRequest {
    /// Unique within the run (`input-1`, `input-2`, ...).
    pub request_id: Arc<str>,
    /// The call (or sub-task) that asks; the top level in a tool run.
    pub call: Arc<CallTag>,
    /// What to ask, in words.
    pub prompt: String,
    /// JSON Schema the answer must satisfy; `None`: any value.
    pub schema: Option<Value>,
    /// A tool's question, or an approval of a tool call.
    pub kind: InputKind,
    /// Context for the person answering (an approval: `tool` and `arguments`).
    pub data: Option<Map<String, Value>>,
    /// When it lapses unless answered, when a timeout or deadline applies.
    pub expire_time: Option<SystemTime>,
}

/// How a request was resolved, as its `input_resolved` event carries it.
#[derive(Debug, Clone, PartialEq)]
pub enum InputOutcome {
    /// Answered with this value (it satisfies the schema).
    Answered(Value),
    /// Declined by whoever answered.
    Declined,
    /// Nobody answered in time.
    Expired,
    /// The run ended before an answer came.
    Cancelled,
}

impl From<Answer> for InputOutcome {
    /// How a question resolved elsewhere resolves the request here; one that could not be asked
    /// there is CANCELLED here.
    fn from(answer: Answer) -> Self {
        match answer {
            Answer::Answered(value) => InputOutcome::Answered(value),
            Answer::Declined => InputOutcome::Declined,
            Answer::Expired => InputOutcome::Expired,
            Answer::Cancelled | Answer::Refused(_) => InputOutcome::Cancelled,
        }
    }
}

impl From<InputOutcome> for Answer {
    fn from(outcome: InputOutcome) -> Self {
        match outcome {
            InputOutcome::Answered(value) => Answer::Answered(value),
            InputOutcome::Declined => Answer::Declined,
            InputOutcome::Expired => Answer::Expired,
            InputOutcome::Cancelled => Answer::Cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log holds every event of a run (partial results and inputs are never dropped), each
    /// as large as the largest kind: the run's start, which happens once, is boxed so that it
    /// does not set that size.
    #[test]
    fn an_event_is_sized_by_the_kinds_a_run_has_many_of() {
        let size = std::mem::size_of::<EventKind>();
        eprintln!(
            "EventKind: {size} bytes, RunEvent: {} bytes",
            std::mem::size_of::<RunEvent>()
        );
        assert!(
            size < std::mem::size_of::<RunStarted>(),
            "EventKind is {size} bytes"
        );
    }
}

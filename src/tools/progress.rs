//! The handle through which a tool reports progress, and the sub-tasks it can split its work into.
//!
//! A [`Progress`] handle reports for one node of a tree: the call itself (the handle a tool is
//! given) or a sub-task made with [`Progress::child`], to any depth. A sub-task's reports reach
//! the client as progress of a node of its own (the sink tags them, see [`ProgressSink::task`])
//! and roll up into its parent's fraction, which is reported too:
//!
//! ```text
//! parent = own + Σ weight × fraction / max(1, Σ weight)        (at most 1)
//! ```
//!
//! where `own` is the fraction the parent itself last reported (0 if none), and a child's fraction
//! is what it last reported, 0 before it reports, 1 once it finished ([`Progress::finish`], or its
//! last handle dropped). Weights that add up to at most 1 are shares of the parent (children of
//! weight `1/n` fill it exactly); larger sums are normalised, so weights can be sizes (bytes) when
//! every child is made before the total matters.
//!
//! A handle with no sub-tasks (the common case, and the hot path: a tool reporting millions of
//! times) passes each report straight to its sink; the tree's bookkeeping starts with the first
//! child.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::input::{Answer, Question};

/// One progress report: the seed's `{"progress": 0.4, "status": "...", ...extra}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProgressUpdate {
    /// Fraction done, 0.0 to 1.0; `None` when only a status is known.
    pub fraction: Option<f64>,
    /// What the tool is doing now.
    pub status: Option<String>,
    /// Every other key the tool reported.
    pub data: Map<String, Value>,
}

impl ProgressUpdate {
    /// Splits a reported JSON object into fraction, status and extra data. A `progress` that is
    /// not a number, or a `status` that is not a string, stays in `data` untouched.
    pub fn from_object(mut object: Map<String, Value>) -> Self {
        let fraction = match object.get("progress") {
            Some(Value::Number(n)) => {
                let f = n.as_f64();
                object.remove("progress");
                f
            }
            Some(Value::Null) => {
                object.remove("progress");
                None
            }
            _ => None,
        };
        let status = match object.remove("status") {
            Some(Value::String(s)) => Some(s),
            Some(Value::Null) | None => None,
            Some(other) => {
                object.insert("status".to_owned(), other);
                None
            }
        };
        ProgressUpdate {
            fraction,
            status,
            data: object,
        }
    }

    /// Whether it says nothing: no fraction, no status, no data.
    pub fn is_empty(&self) -> bool {
        self.fraction.is_none() && self.status.is_none() && self.data.is_empty()
    }
}

/// A piece of a call's output, made before the call's result (see [`Progress::partial`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartialOutput {
    /// Which output of the call it belongs to; empty for the call's main output.
    pub key: String,
    /// The output (when `append` is false) or its next item.
    pub value: Value,
    /// True: the next item of the output `key`; false: replaces that output.
    pub append: bool,
}

/// Why a partial result was not sent. The tool can pass it on with `?`: it becomes a
/// [`ToolError::OutOfRange`](super::ToolError::OutOfRange) that fails the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartialRefused {
    /// It would make a message larger than the server sends.
    #[error(
        "a partial result of {bytes} bytes is larger than the message limit of {limit} bytes \
         ([limits] max_message_bytes); send it in smaller pieces (partial_append) or as the result"
    )]
    TooLarge {
        /// Its size, encoded as the event that would carry it.
        bytes: usize,
        /// The server's `[limits] max_message_bytes`.
        limit: usize,
    },
}

impl From<PartialRefused> for super::ToolError {
    fn from(refused: PartialRefused) -> Self {
        super::ToolError::OutOfRange(refused.to_string())
    }
}

/// A sub-task, named relative to the call (or sub-task) a sink reports for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubTask {
    /// Its id, unique among the sub-tasks of the sink's call: `"2"`, or a path such as `"2/1"`
    /// for a relayed tree.
    pub id: Arc<str>,
    /// The id of the sub-task it belongs to, relative in the same way; empty: the sink's call.
    pub parent: Arc<str>,
    /// What it is, for people (a file name, "item 3").
    pub label: Arc<str>,
}

/// Where progress goes. The engine implements it for each run (and each tool call of an agent).
pub trait ProgressSink: Send + Sync + 'static {
    /// Accepts one update. Must never block: a slow client must not slow the tool.
    fn report(&self, update: ProgressUpdate);

    /// A sink for a sub-task of this sink's call, whose reports are tagged as that sub-task's.
    /// The default drops them: a sink that follows only the call's own progress (the call's
    /// fraction still includes its sub-tasks).
    fn task(&self, task: &SubTask) -> Arc<dyn ProgressSink> {
        let _ = task;
        Arc::new(Discard)
    }

    /// Asks a person `question` on behalf of this sink's call and completes with how it was
    /// resolved (see [`Progress::ask`]). The default can ask nobody: the question is refused at
    /// once, so a tool run outside a run never waits.
    fn ask(&self, question: Question) -> BoxFuture<'static, Answer> {
        let _ = question;
        Box::pin(std::future::ready(Answer::Refused(
            "nothing can answer a question here (the tool runs outside a run)".to_owned(),
        )))
    }

    /// [`ask`](Self::ask), unless `settled` completes first: the question was resolved
    /// elsewhere (the remote run that asked it), and the request here is resolved with the same
    /// outcome (see [`Progress::ask_until`]). The default only stops waiting: a sink that holds
    /// no requests has nothing to resolve.
    fn ask_until(
        &self,
        question: Question,
        settled: BoxFuture<'static, Answer>,
    ) -> BoxFuture<'static, Answer> {
        let asked = self.ask(question);
        Box::pin(async move {
            match futures::future::select(asked, settled).await {
                futures::future::Either::Left((answer, _))
                | futures::future::Either::Right((answer, _)) => answer,
            }
        })
    }
    /// Accepts one partial result of this sink's call. Never blocks, and never drops one it
    /// accepted (partial results are not coalesced); refuses one it cannot send. The default
    /// drops them: a sink that follows only progress.
    fn partial(&self, output: PartialOutput) -> Result<(), PartialRefused> {
        let _ = output;
        Ok(())
    }
}

/// Drops every update.
struct Discard;

impl ProgressSink for Discard {
    fn report(&self, _: ProgressUpdate) {}
}

/// A cheap, cloneable handle a tool reports its progress through. Reporting never blocks and never
/// fails: when the client reads slower than the tool reports, older unsent progress is replaced.
///
/// A handle reports for its call, or for a sub-task of it made with [`child`](Self::child); see
/// the [module docs](self) for how a sub-task's progress rolls up. A sub-task is complete when
/// [`finish`](Self::finish) is called or its last handle is dropped.
///
/// It also tells the tool when its run must end ([`deadline`](Self::deadline)), for a tool that
/// passes work on and should pass the deadline on with it.
#[derive(Clone)]
pub struct Progress {
    node: Arc<Node>,
    deadline: Option<Instant>,
}

/// One node of a call's progress tree: the call itself, a sub-task, or a relayed node.
struct Node {
    sink: Arc<dyn ProgressSink>,
    /// The node this one rolls up into; `None` for a call and for relayed nodes.
    parent: Option<Parent>,
    /// Set once the node has children: its reports then carry its rolled-up fraction.
    has_children: AtomicBool,
    /// The fraction the node itself last reported, as `f64` bits (0.0 before any).
    own: AtomicU64,
    tree: Mutex<Tree>,
}

struct Parent {
    node: Arc<Node>,
    /// This node's place among its parent's children.
    index: usize,
}

/// The bookkeeping of a node with children, or of a sub-task.
#[derive(Default)]
struct Tree {
    children: Vec<Child>,
    /// The sum of the children's weights.
    weights: f64,
    /// The sum of the finished children's weights.
    finished_weights: f64,
    /// The sum of weight × fraction over the children still going.
    going: f64,
    /// How many children are still going.
    unfinished: usize,
    /// The node's latest status since it has children, repeated when a child moves it.
    status: Option<String>,
    /// The fraction last reported for this node.
    shown: Option<f64>,
    /// A finished sub-task reports nothing more.
    finished: bool,
}

struct Child {
    weight: f64,
    fraction: f64,
    finished: bool,
}

impl Node {
    fn new(sink: Arc<dyn ProgressSink>, parent: Option<Parent>) -> Arc<Self> {
        Arc::new(Node {
            sink,
            parent,
            has_children: AtomicBool::new(false),
            own: AtomicU64::new(0.0f64.to_bits()),
            tree: Mutex::new(Tree::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Tree> {
        // Every update leaves the tree consistent before anything can panic.
        self.tree
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reports for this node. Inlined: it is the hot path of a tool with no sub-tasks.
    #[inline]
    fn report(&self, update: ProgressUpdate) {
        if let Some(fraction) = update.fraction.filter(|f| !f.is_nan()) {
            self.own
                .store(fraction.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
        }
        if self.parent.is_none() && !self.has_children.load(Ordering::Acquire) {
            // A call with no sub-tasks: nothing to roll up.
            self.sink.report(update);
        } else {
            self.report_in_tree(update);
        }
    }

    /// Reports for a node with children or a parent, rolling up.
    fn report_in_tree(&self, mut update: ProgressUpdate) {
        // Held while reporting (and rolling up), so that the node's reports reach the client in
        // the order their fractions were decided.
        let mut tree = self.lock();
        if tree.finished {
            return;
        }
        if self.has_children.load(Ordering::Acquire) {
            if update.status.is_some() {
                tree.status.clone_from(&update.status);
            }
            update.fraction = Some(self.rolled_up(&tree));
        }
        let shown = update.fraction.filter(|f| !f.is_nan());
        self.sink.report(update);
        if let Some(fraction) = shown {
            tree.shown = Some(fraction);
            if let Some(parent) = &self.parent {
                parent
                    .node
                    .child_moved(parent.index, fraction.clamp(0.0, 1.0), false);
            }
        }
    }

    /// This node's fraction: its own plus its children's share.
    fn rolled_up(&self, tree: &Tree) -> f64 {
        let own = f64::from_bits(self.own.load(Ordering::Relaxed));
        // Once every child finished, their share is exact (no rounding left from the sums of
        // their moves), so that shares adding up to 1 reach exactly 1.
        let share = if tree.unfinished == 0 {
            tree.weights / tree.weights.max(1.0)
        } else {
            (tree.finished_weights + tree.going) / tree.weights.max(1.0)
        };
        (own + share).clamp(0.0, 1.0)
    }

    /// Child `index` is now at `fraction` (or finished): reports this node's new fraction, and
    /// so on up the tree.
    fn child_moved(&self, index: usize, fraction: f64, finished: bool) {
        let mut tree = self.lock();
        let Some(child) = tree.children.get_mut(index) else {
            return;
        };
        if child.finished {
            return;
        }
        let (weight, before) = (child.weight, child.fraction);
        if finished {
            child.fraction = 1.0;
            child.finished = true;
            tree.finished_weights += weight;
            tree.going -= weight * before;
            tree.unfinished -= 1;
            if tree.unfinished == 0 {
                tree.going = 0.0;
            }
        } else {
            child.fraction = fraction;
            tree.going += weight * (fraction - before);
        }
        if tree.finished {
            return;
        }
        let rolled = self.rolled_up(&tree);
        if tree.shown == Some(rolled) {
            return;
        }
        tree.shown = Some(rolled);
        self.sink.report(ProgressUpdate {
            fraction: Some(rolled),
            status: tree.status.clone(),
            data: Map::new(),
        });
        if let Some(parent) = &self.parent {
            parent.node.child_moved(parent.index, rolled, false);
        }
    }

    /// A sub-task is complete: its last report says 1.0, and it counts fully in its parent.
    fn finish(&self) {
        let Some(parent) = &self.parent else {
            return;
        };
        let mut tree = self.lock();
        if tree.finished {
            return;
        }
        tree.finished = true;
        tree.shown = Some(1.0);
        self.sink.report(ProgressUpdate {
            fraction: Some(1.0),
            ..ProgressUpdate::default()
        });
        parent.node.child_moved(parent.index, 1.0, true);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The last handle of a sub-task is gone: the sub-task is done.
        self.finish();
    }
}

impl Progress {
    /// A handle that sends its updates to `sink`, with no deadline.
    pub fn new(sink: Arc<dyn ProgressSink>) -> Self {
        Progress {
            node: Node::new(sink, None),
            deadline: None,
        }
    }

    /// The same handle, telling the tool its run ends at `deadline` (`None`: no deadline).
    pub fn with_deadline(self, deadline: Option<Instant>) -> Self {
        Progress { deadline, ..self }
    }

    /// When the run ends whether or not the tool is done, if it has a deadline. The engine
    /// enforces it (the tool's future is dropped then); a tool only reads it to tell what it
    /// calls, as a remote tool sends the time left as the call's `grpc-timeout`.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Asks a person `prompt` and waits for the answer, which satisfies `schema` (a JSON Schema;
    /// `None` takes any value). The run shows the question as an open input request until a
    /// client answers it (RespondToRun, the CLI's prompt, ...). Never hangs: a request nobody
    /// answers lapses at the run's input timeout or deadline ([`Answer::Expired`]), and a run that
    /// ends resolves it ([`Answer::Cancelled`]).
    pub async fn ask(&self, prompt: impl Into<String>, schema: Option<Value>) -> Answer {
        self.ask_question(Question::new(prompt, schema)).await
    }

    /// [`ask`](Self::ask) with every part of the question given (kind, context data).
    pub async fn ask_question(&self, question: Question) -> Answer {
        self.node.sink.ask(question).await
    }

    /// [`ask_question`](Self::ask_question) for a question asked elsewhere first and relayed
    /// here (a remote run's): when `settled` completes before anyone here answers, the question
    /// was resolved where it was asked, and the request here is resolved with `settled`'s
    /// outcome (an answer, a decline, an expiry), so nobody is asked a question that no longer
    /// needs an answer. Completes with whichever came first.
    pub async fn ask_until(
        &self,
        question: Question,
        settled: BoxFuture<'static, Answer>,
    ) -> Answer {
        self.node.sink.ask_until(question, settled).await
    }

    /// A handle that drops every update, for running a tool outside a run.
    pub fn discard() -> Self {
        Progress::new(Arc::new(Discard))
    }

    /// Reports a fraction done (0.0–1.0) and a status line.
    pub fn report(&self, fraction: f64, status: impl Into<String>) {
        self.update(ProgressUpdate {
            fraction: Some(fraction),
            status: Some(status.into()),
            data: Map::new(),
        });
    }

    /// Reports a fraction done with no status.
    pub fn fraction(&self, fraction: f64) {
        self.update(ProgressUpdate {
            fraction: Some(fraction),
            ..ProgressUpdate::default()
        });
    }

    /// Reports a status line with no fraction (indeterminate progress). On a handle with
    /// sub-tasks the report still carries the fraction they add up to.
    pub fn status(&self, status: impl Into<String>) {
        self.update(ProgressUpdate {
            status: Some(status.into()),
            ..ProgressUpdate::default()
        });
    }

    /// Reports a full update, extra data included.
    #[inline]
    pub fn update(&self, update: ProgressUpdate) {
        self.node.report(update);
    }

    /// Sends `value` as this call's main output so far, before its result: it replaces the
    /// partial output sent before (a running total, the best answer yet). Partial results are
    /// never coalesced: every one reaches every reader that keeps up with the run's log. Fails
    /// only for a value larger than the server's message limit, which is not sent (the tool may
    /// pass the error on with `?`). On a sub-task's handle, the output is the sub-task's.
    pub fn partial(&self, value: impl Into<Value>) -> Result<(), PartialRefused> {
        self.partial_output(PartialOutput {
            key: String::new(),
            value: value.into(),
            append: false,
        })
    }

    /// Sends `value` as the next item of this call's output `key` ("" for its main output),
    /// before its result: a file's digest as soon as it is known, a search hit as it is found.
    /// Readers assemble the items of each key into a list, in order. Fails as
    /// [`partial`](Self::partial) does.
    pub fn partial_append(
        &self,
        key: impl Into<String>,
        value: impl Into<Value>,
    ) -> Result<(), PartialRefused> {
        self.partial_output(PartialOutput {
            key: key.into(),
            value: value.into(),
            append: true,
        })
    }

    /// Sends a partial result as given (for tools relaying another's, such as command tools).
    pub fn partial_output(&self, output: PartialOutput) -> Result<(), PartialRefused> {
        self.node.sink.partial(output)
    }

    /// A handle for a sub-task of this one, named `label`, standing for `weight` of this
    /// handle's progress (a weight that is not a positive number counts as 0).
    ///
    /// The sub-task shows at once, as a node of its own under this one; its reports roll up into
    /// this handle's fraction, which is reported with each change (see the [module docs](self)).
    /// It is complete, and counts fully, when [`finish`](Self::finish) is called or its last
    /// handle is dropped.
    pub fn child(&self, label: impl Into<String>, weight: f64) -> Progress {
        let weight = if weight.is_finite() && weight > 0.0 {
            weight
        } else {
            0.0
        };
        let index = {
            let mut tree = self.node.lock();
            tree.children.push(Child {
                weight,
                fraction: 0.0,
                finished: false,
            });
            tree.weights += weight;
            tree.unfinished += 1;
            self.node.has_children.store(true, Ordering::Release);
            tree.children.len() - 1
        };
        let sink = self.node.sink.task(&SubTask {
            id: Arc::from((index + 1).to_string()),
            parent: Arc::from(""),
            label: Arc::from(label.into()),
        });
        // Announced before it reports, so it shows (and weighs) from the start.
        sink.report(ProgressUpdate::default());
        Progress {
            node: Node::new(
                sink,
                Some(Parent {
                    node: Arc::clone(&self.node),
                    index,
                }),
            ),
            deadline: self.deadline,
        }
    }

    /// Marks this sub-task complete: it reports 1.0 and counts fully in its parent; nothing it
    /// reports later (through any clone) is sent. On the handle of a call itself it does
    /// nothing: a call completes with its result.
    pub fn finish(self) {
        self.node.finish();
    }

    /// A handle for a node of a tree made elsewhere and relayed here (a remote run's sub-tasks):
    /// its reports are tagged `id`, under `parent` (empty: this handle's node), both relative to
    /// this handle, and labelled `label`. Unlike a [`child`](Self::child), it does not roll up:
    /// the relayed tree's top level already includes it.
    pub fn relayed(&self, id: &str, parent: &str, label: &str) -> Progress {
        let sink = self.node.sink.task(&SubTask {
            id: Arc::from(id),
            parent: Arc::from(parent),
            label: Arc::from(label),
        });
        Progress {
            node: Node::new(sink, None),
            deadline: self.deadline,
        }
    }

    /// The sink this handle reports to (for sinks that wrap another call's handle).
    pub(crate) fn sink(&self) -> &Arc<dyn ProgressSink> {
        &self.node.sink
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Records every report of a tree as `(node, fraction, status)`, the node named by its path
    /// of sub-task ids ("" for the call, "2/1" for the first sub-task of the second).
    #[derive(Clone, Default)]
    struct Recorder {
        path: String,
        seen: Arc<Mutex<Vec<Report>>>,
    }

    /// `(node, fraction, status)`.
    type Report = (String, Option<f64>, Option<String>);

    impl ProgressSink for Recorder {
        fn report(&self, update: ProgressUpdate) {
            self.seen
                .lock()
                .unwrap()
                .push((self.path.clone(), update.fraction, update.status));
        }

        fn task(&self, task: &SubTask) -> Arc<dyn ProgressSink> {
            assert!(
                task.parent.is_empty(),
                "a child is named relative to its parent"
            );
            let path = if self.path.is_empty() {
                task.id.to_string()
            } else {
                format!("{}/{}", self.path, task.id)
            };
            Arc::new(Recorder {
                path,
                seen: Arc::clone(&self.seen),
            })
        }
    }

    impl Recorder {
        /// The fractions reported for `node`, in order.
        fn fractions(&self, node: &str) -> Vec<f64> {
            self.seen
                .lock()
                .unwrap()
                .iter()
                .filter(|(path, ..)| path == node)
                .filter_map(|(_, fraction, _)| *fraction)
                .collect()
        }

        fn last(&self, node: &str) -> f64 {
            *self.fractions(node).last().expect("a fraction")
        }

        /// Every node reported, in the order first seen.
        fn nodes(&self) -> Vec<String> {
            let mut nodes: Vec<String> = Vec::new();
            for (path, ..) in self.seen.lock().unwrap().iter() {
                if !nodes.contains(path) {
                    nodes.push(path.clone());
                }
            }
            nodes
        }
    }

    fn tree() -> (Recorder, Progress) {
        let recorder = Recorder::default();
        let progress = Progress::new(Arc::new(recorder.clone()));
        (recorder, progress)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_handle_without_children_passes_reports_through() {
        let (seen, progress) = tree();
        progress.report(0.25, "a quarter");
        progress.status("thinking");
        progress.fraction(1.5);
        assert_eq!(
            seen.seen.lock().unwrap().clone(),
            [
                ("".into(), Some(0.25), Some("a quarter".into())),
                ("".into(), None, Some("thinking".into())),
                // Out of range is the engine's to clamp, with a warning.
                ("".into(), Some(1.5), None),
            ]
        );
    }

    #[test]
    fn children_roll_up_into_their_parent_by_weight() {
        let (seen, progress) = tree();
        let a = progress.child("a", 0.5);
        let b = progress.child("b", 0.3);
        let _c = progress.child("c", 0.2);
        assert_eq!(seen.nodes(), ["1", "2", "3"], "announced when made");
        a.fraction(0.5);
        assert!(close(seen.last(""), 0.25));
        b.fraction(1.0);
        assert!(close(seen.last(""), 0.55));
        a.fraction(1.0);
        assert!(close(seen.last(""), 0.8));
        assert_eq!(seen.fractions("1"), [0.5, 1.0]);
        assert_eq!(seen.fractions("2"), [1.0]);
    }

    #[test]
    fn weights_above_one_are_normalised_and_the_parent_adds_its_own_share() {
        let (seen, progress) = tree();
        // Sizes as weights: 300 and 100 bytes.
        let big = progress.child("big", 300.0);
        let small = progress.child("small", 100.0);
        big.fraction(0.5);
        assert!(close(seen.last(""), 0.375));
        small.finish();
        assert!(close(seen.last(""), 0.625));

        // A parent that did a tenth itself before splitting the rest in two.
        let (seen, progress) = tree();
        progress.report(0.1, "prepared");
        let a = progress.child("a", 0.45);
        let _b = progress.child("b", 0.45);
        a.fraction(1.0);
        assert!(close(seen.last(""), 0.55));
        progress.status("still going");
        let last = seen.seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!(
            last.1,
            Some(seen.last("")),
            "a status carries the rolled-up fraction"
        );
        assert!(close(last.1.unwrap(), 0.55));
    }

    #[test]
    fn three_levels_roll_up_to_the_top() {
        let (seen, progress) = tree();
        let a = progress.child("a", 0.5);
        let _b = progress.child("b", 0.5);
        let a1 = a.child("a1", 0.5);
        let a2 = a.child("a2", 0.5);
        let a11 = a1.child("a11", 1.0);
        a11.fraction(0.5);
        assert!(close(seen.last("1/1/1"), 0.5));
        assert!(close(seen.last("1/1"), 0.5));
        assert!(close(seen.last("1"), 0.25));
        assert!(close(seen.last(""), 0.125));
        drop(a11);
        assert!(
            close(seen.last("1/1/1"), 1.0),
            "a dropped child reports 1.0"
        );
        assert!(close(seen.last(""), 0.25));
        a2.fraction(1.0);
        assert!(close(seen.last("1"), 1.0));
        assert!(close(seen.last(""), 0.5));
        assert_eq!(
            seen.nodes(),
            ["1", "2", "1/1", "1/2", "1/1/1", ""].map(String::from),
            "every node is tagged by its own path"
        );
    }

    #[test]
    fn children_finishing_out_of_order_and_one_that_never_reports() {
        let (seen, progress) = tree();
        let first = progress.child("first", 0.25);
        let silent = progress.child("silent", 0.25);
        let third = progress.child("third", 0.5);
        first.fraction(0.5);
        third.finish();
        assert!(close(seen.last(""), 0.625));
        // The silent child counts 0 until it finishes, then fully.
        assert!(seen.fractions("2").is_empty());
        drop(silent);
        assert!(close(seen.last(""), 0.875));
        assert_eq!(seen.fractions("2"), [1.0]);
        first.finish();
        assert!(close(seen.last(""), 1.0));
        let top = seen.fractions("");
        assert!(top.windows(2).all(|w| w[0] <= w[1]), "{top:?}");
    }

    #[test]
    fn a_finished_child_reports_nothing_more_through_any_clone() {
        let (seen, progress) = tree();
        let child = progress.child("c", 1.0);
        let kept = child.clone();
        child.finish();
        kept.report(0.2, "too late");
        assert_eq!(seen.fractions("1"), [1.0]);
        assert_eq!(seen.fractions(""), [1.0]);
        // The clone going away finishes nothing twice.
        drop(kept);
        assert_eq!(seen.fractions(""), [1.0]);
    }

    #[test]
    fn the_seeds_nested_example_gives_the_seeds_numbers() {
        let (seen, progress) = tree();
        let items = 4;
        let mut expected = Vec::new();
        for i in 0..items {
            let sub = progress.child(format!("item {}", i + 1), 1.0 / items as f64);
            for j in 0..3 {
                // The seed: base_progress + sub_progress / len(items).
                expected.push(i as f64 / items as f64 + (j + 1) as f64 / 3.0 / items as f64);
                sub.report(
                    (j + 1) as f64 / 3.0,
                    format!("Item {}, step {}", i + 1, j + 1),
                );
            }
        }
        let top = seen.fractions("");
        assert_eq!(top.len(), expected.len(), "{top:?}");
        assert!(
            top.iter().zip(&expected).all(|(a, b)| close(*a, *b)),
            "{top:?}"
        );
        assert_eq!(seen.nodes().len(), items + 1);
    }

    #[test]
    fn relayed_nodes_are_tagged_but_do_not_roll_up() {
        let (seen, progress) = tree();
        let node = progress.relayed("7", "", "remote file");
        node.fraction(0.5);
        drop(node);
        assert_eq!(seen.fractions("7"), [0.5]);
        assert!(seen.fractions("").is_empty());
    }

    #[test]
    fn from_object_splits_progress_status_and_data() {
        let Value::Object(object) = json!({"progress": 0.5, "status": "half", "items": 3}) else {
            unreachable!()
        };
        let update = ProgressUpdate::from_object(object);
        assert_eq!(update.fraction, Some(0.5));
        assert_eq!(update.status.as_deref(), Some("half"));
        assert_eq!(update.data.get("items"), Some(&json!(3)));
        assert!(!update.data.contains_key("progress"));
    }

    #[test]
    fn from_object_keeps_mistyped_keys_as_data() {
        let Value::Object(object) = json!({"progress": "lots", "status": 7}) else {
            unreachable!()
        };
        let update = ProgressUpdate::from_object(object);
        assert_eq!(update.fraction, None);
        assert_eq!(update.status, None);
        assert_eq!(update.data.get("progress"), Some(&json!("lots")));
        assert_eq!(update.data.get("status"), Some(&json!(7)));
    }
}

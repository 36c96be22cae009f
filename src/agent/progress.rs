//! Progress of an agent run: each call's progress passes through unchanged, tagged with its call,
//! and the run's own progress is one bar for a UI.
//!
//! How many model turns a run takes is known only when the model answers, so the run's fraction
//! gives each step half of what is left: step `k` (from 1) moves it from `1 − 2^−(k−1)` toward
//! `1 − 2^−k` as its calls progress (the first step covers 0 to 0.5, the second 0.5 to 0.75, ...),
//! by the step's share: the mean of its calls' fractions (a call that has not reported or not
//! started yet counts as 0, a finished call as 1). It never goes back: a tool that reports a lower
//! fraction than before cannot lower it. When the model answers, the run reports 1.0 (status
//! `answered`) before its result.
//!
//! The run's own progress carries no time left (`eta_seconds`): how many turns are to come is
//! unknown, so any estimate would only climb while the model thinks. Each call's progress keeps the
//! server's estimate for that call.
//!
//! A call's progress handle is closed before the call's `tool_call_finished` is emitted, so a
//! tool that keeps a clone of its handle (or of a sub-task's) cannot report after its call ended.
//! A call's sub-tasks pass through tagged as the call's (`call_1/1` under `call_1`); they count
//! in the step through the call's own fraction, which includes them.

use std::sync::{Arc, Mutex, MutexGuard};

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::engine::{CallTag, EventKind, RunContext};
use crate::tools::{
    Answer, PartialOutput, PartialRefused, Progress, ProgressSink, ProgressUpdate, Question,
    SubTask,
};

/// Locks `mutex`; a panic while it was held leaves nothing here half-updated that matters.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The run's own progress, across its steps.
pub(super) struct RunProgress {
    run: Progress,
    /// The highest fraction reported so far. Held while reporting, so that reports from calls
    /// running in parallel reach the run in the order their fractions were decided.
    reported: Mutex<f64>,
}

impl RunProgress {
    pub(super) fn new(run: Progress) -> Arc<Self> {
        Arc::new(RunProgress {
            run,
            reported: Mutex::new(0.0),
        })
    }

    /// The model answered: the run is done.
    pub(super) fn answered(&self) {
        let mut reported = lock(&self.reported);
        *reported = 1.0;
        self.run.report(1.0, "answered");
    }

    /// The calls of model step `step` (from 1).
    pub(super) fn step(self: &Arc<Self>, step: u32, calls: usize) -> Arc<StepProgress> {
        Arc::new(StepProgress {
            run: Arc::clone(self),
            step,
            fractions: Mutex::new(vec![0.0; calls]),
        })
    }

    fn report(&self, step: u32, step_share: f64, status: String) {
        let mut reported = lock(&self.reported);
        // What the steps before this one left, halved at each step.
        let left = 0.5_f64.powf(f64::from(step.saturating_sub(1)));
        let fraction = (1.0 - left) + left * step_share.clamp(0.0, 1.0) / 2.0;
        let fraction = fraction.clamp(0.0, 1.0).max(*reported);
        *reported = fraction;
        self.run.report(fraction, status);
    }
}

/// The run's top level as a progress sink: each report is logged as the run's own progress,
/// without a time left (see the module docs).
pub(super) struct RunLevel {
    context: RunContext,
    top: Arc<CallTag>,
}

impl RunLevel {
    pub(super) fn new(context: RunContext) -> Self {
        RunLevel {
            context,
            top: Arc::new(CallTag::top()),
        }
    }
}

impl ProgressSink for RunLevel {
    fn report(&self, update: ProgressUpdate) {
        let event = EventKind::Progress {
            call: Arc::clone(&self.top),
            update,
            eta_seconds: None,
        };
        // `emit` never waits (the log is bounded on its own), so it is ready at once; reports
        // come from synchronous sinks. After the run ended there is nothing to report to.
        let _ = self.context.emit(event).now_or_never();
    }
}

/// The calls of one model step.
pub(super) struct StepProgress {
    run: Arc<RunProgress>,
    step: u32,
    fractions: Mutex<Vec<f64>>,
}

impl StepProgress {
    /// The progress of call `index`: its handle forwards to `call` and updates the whole, until
    /// it is closed.
    pub(super) fn call(self: &Arc<Self>, index: usize, call: Progress) -> CallProgress {
        CallProgress {
            sink: Arc::new(CallSink {
                step: Arc::clone(self),
                index,
                call: Arc::new(Mutex::new(Some(call))),
            }),
        }
    }

    /// Call `index` ended, either way.
    pub(super) fn finished(&self, index: usize) {
        self.set(index, 1.0);
    }

    fn set(&self, index: usize, fraction: f64) {
        // Held while reporting, so the status's count never goes back either.
        let mut fractions = lock(&self.fractions);
        if let Some(slot) = fractions.get_mut(index) {
            *slot = fraction.clamp(0.0, 1.0);
        }
        let total = fractions.len();
        let done = fractions.iter().filter(|f| **f >= 1.0).count();
        let share = fractions.iter().sum::<f64>() / total.max(1) as f64;
        self.run.report(
            self.step,
            share,
            format!("step {}: {done} of {total} tool calls done", self.step),
        );
    }
}

/// The progress of one tool call.
pub(super) struct CallProgress {
    sink: Arc<CallSink>,
}

impl CallProgress {
    /// The handle the tool reports through. It keeps the run's deadline, for tools that pass
    /// it on.
    pub(super) fn handle(&self) -> Progress {
        let deadline = lock(&self.sink.call).as_ref().and_then(Progress::deadline);
        Progress::new(Arc::clone(&self.sink) as Arc<dyn ProgressSink>).with_deadline(deadline)
    }

    /// Ends the call's progress: once this returns, nothing reported through any clone of the
    /// handle reaches the run.
    pub(super) fn close(&self) {
        lock(&self.sink.call).take();
    }
}

/// The call's own progress; `None` once the call is closed. Held while forwarding, so that
/// closing waits for a report in flight.
type OpenCall = Arc<Mutex<Option<Progress>>>;

struct CallSink {
    step: Arc<StepProgress>,
    index: usize,
    call: OpenCall,
}

impl ProgressSink for CallSink {
    fn report(&self, update: ProgressUpdate) {
        let call = lock(&self.call);
        let Some(call) = call.as_ref() else {
            return;
        };
        let fraction = update.fraction;
        call.update(update);
        if let Some(fraction) = fraction.filter(|f| !f.is_nan()) {
            self.step.set(self.index, fraction);
        }
    }

    fn ask(&self, question: Question) -> BoxFuture<'static, Answer> {
        ask_while_open(&self.call, |call| call.sink().ask(question))
    }

    fn ask_until(
        &self,
        question: Question,
        settled: BoxFuture<'static, Answer>,
    ) -> BoxFuture<'static, Answer> {
        ask_while_open(&self.call, |call| call.sink().ask_until(question, settled))
    }
    /// A partial result of the call goes to the run under the call (never to the model, which
    /// sees only the call's result), while the call is open.
    fn partial(&self, output: PartialOutput) -> Result<(), PartialRefused> {
        match lock(&self.call).as_ref() {
            Some(call) => call.partial_output(output),
            None => Ok(()),
        }
    }

    fn task(&self, task: &SubTask) -> Arc<dyn ProgressSink> {
        let sink = lock(&self.call).as_ref().map(|call| call.sink().task(task));
        Arc::new(TaskSink {
            call: Arc::clone(&self.call),
            sink,
        })
    }
}

/// A sub-task of a call: its reports pass through while the call is open.
struct TaskSink {
    call: OpenCall,
    /// `None` when it was made after the call closed.
    sink: Option<Arc<dyn ProgressSink>>,
}

impl ProgressSink for TaskSink {
    fn report(&self, update: ProgressUpdate) {
        let call = lock(&self.call);
        if let (Some(_), Some(sink)) = (call.as_ref(), &self.sink) {
            sink.report(update);
        }
    }

    fn partial(&self, output: PartialOutput) -> Result<(), PartialRefused> {
        let call = lock(&self.call);
        match (call.as_ref(), &self.sink) {
            (Some(_), Some(sink)) => sink.partial(output),
            _ => Ok(()),
        }
    }

    fn task(&self, task: &SubTask) -> Arc<dyn ProgressSink> {
        Arc::new(TaskSink {
            call: Arc::clone(&self.call),
            sink: self.sink.as_ref().map(|sink| sink.task(task)),
        })
    }

    fn ask(&self, question: Question) -> BoxFuture<'static, Answer> {
        match &self.sink {
            Some(sink) => ask_while_open(&self.call, |_| sink.ask(question)),
            None => closed_call(),
        }
    }

    fn ask_until(
        &self,
        question: Question,
        settled: BoxFuture<'static, Answer>,
    ) -> BoxFuture<'static, Answer> {
        match &self.sink {
            Some(sink) => ask_while_open(&self.call, |_| sink.ask_until(question, settled)),
            None => closed_call(),
        }
    }
}

/// Asks through `ask` while the call is open; a closed call asks nobody.
fn ask_while_open(
    call: &OpenCall,
    ask: impl FnOnce(&Progress) -> BoxFuture<'static, Answer>,
) -> BoxFuture<'static, Answer> {
    match lock(call).as_ref() {
        Some(progress) => ask(progress),
        None => closed_call(),
    }
}

fn closed_call() -> BoxFuture<'static, Answer> {
    Box::pin(std::future::ready(Answer::Cancelled))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the fractions and statuses reported to it.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<(Option<f64>, Option<String>)>>);

    impl ProgressSink for Recorded {
        fn report(&self, update: ProgressUpdate) {
            lock(&self.0).push((update.fraction, update.status));
        }
    }

    impl Recorded {
        fn fractions(&self) -> Vec<f64> {
            lock(&self.0).iter().filter_map(|(f, _)| *f).collect()
        }
    }

    #[test]
    fn run_progress_never_goes_back() {
        let run = Arc::new(Recorded::default());
        let progress = RunProgress::new(Progress::new(run.clone()));

        let step = progress.step(1, 2);
        let a = step.call(0, Progress::discard());
        a.handle().fraction(0.8);
        // The tool goes back; the run does not.
        a.handle().fraction(0.2);
        step.finished(0);
        step.finished(1);
        // A new step starts from where the last one ended.
        let step = progress.step(2, 2);
        step.call(0, Progress::discard()).handle().fraction(0.5);
        step.finished(0);
        step.finished(1);
        progress.answered();

        let seen = run.fractions();
        assert!(
            seen.windows(2).all(|pair| pair[1] >= pair[0]),
            "went back: {seen:?}"
        );
        // Each step covers half of what is left; the answer ends it at 1.
        assert_eq!(seen, [0.2, 0.2, 0.25, 0.5, 0.5625, 0.625, 0.75, 1.0]);
    }

    #[test]
    fn a_closed_call_reports_nothing() {
        let run = Arc::new(Recorded::default());
        let call = Arc::new(Recorded::default());
        let progress = RunProgress::new(Progress::new(run.clone()));
        let step = progress.step(1, 1);
        let progress = step.call(0, Progress::new(call.clone()));
        let kept = progress.handle();
        kept.report(0.5, "half");
        progress.close();
        kept.report(0.75, "after the end");
        assert_eq!(lock(&call.0).clone(), [(Some(0.5), Some("half".into()))]);
        assert_eq!(run.fractions(), [0.25]);
    }
}

//! Progress of an agent run as a whole: one bar for a UI, combined from the tool calls of the
//! current step. Each call's progress passes through unchanged, tagged with its call; the run's
//! own progress is the mean of the calls' fractions (a call with no fraction yet counts as 0, a
//! finished call as 1).

use std::sync::{Arc, Mutex};

use crate::tools::{Progress, ProgressSink, ProgressUpdate};

/// The calls of one model step.
pub(super) struct StepProgress {
    run: Progress,
    step: u32,
    fractions: Mutex<Vec<f64>>,
}

impl StepProgress {
    pub(super) fn new(run: Progress, step: u32, calls: usize) -> Arc<Self> {
        Arc::new(StepProgress {
            run,
            step,
            fractions: Mutex::new(vec![0.0; calls]),
        })
    }

    /// A progress handle for call `index` that forwards to `call` and updates the whole.
    /// It keeps the run's deadline, for tools that pass it on.
    pub(super) fn call(self: &Arc<Self>, index: usize, call: Progress) -> Progress {
        let deadline = call.deadline();
        Progress::new(Arc::new(CallSink {
            step: Arc::clone(self),
            index,
            call,
        }))
        .with_deadline(deadline)
    }

    /// Call `index` ended, either way.
    pub(super) fn finished(&self, index: usize) {
        self.set(index, 1.0);
    }

    fn set(&self, index: usize, fraction: f64) {
        let (overall, done, total) = {
            let mut fractions = self
                .fractions
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(slot) = fractions.get_mut(index) {
                *slot = fraction.clamp(0.0, 1.0);
            }
            let total = fractions.len();
            let done = fractions.iter().filter(|f| **f >= 1.0).count();
            (
                fractions.iter().sum::<f64>() / total.max(1) as f64,
                done,
                total,
            )
        };
        self.run.report(
            overall,
            format!("step {}: {done} of {total} tool calls done", self.step),
        );
    }
}

struct CallSink {
    step: Arc<StepProgress>,
    index: usize,
    call: Progress,
}

impl ProgressSink for CallSink {
    fn report(&self, update: ProgressUpdate) {
        let fraction = update.fraction;
        self.call.update(update);
        if let Some(fraction) = fraction.filter(|f| !f.is_nan()) {
            self.step.set(self.index, fraction);
        }
    }
}

//! The input requests a run's log holds open, and what waits for their answers: state of the
//! log ([`super::log`]), changed only under its lock; asking and answering are `input.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::RunObserver;
use super::event::{EventKind, InputOutcome, RunEvent};

/// The run's input requests: those open now, and (on the replica that executes the run) what
/// waits for their answers. Part of the log's state, changed only under its lock.
#[derive(Default)]
pub(crate) struct Inputs {
    /// The `input_requested` events not yet resolved, oldest first.
    pub(crate) open: Vec<Arc<RunEvent>>,
    /// How many requests this log made (their ids count up).
    pub(super) asked: u64,
    /// The asking tools' ends of the open requests this replica executes.
    pub(super) waiters: HashMap<Arc<str>, Waiter>,
}

/// A tool waiting for the answer to one request.
pub(super) struct Waiter {
    pub(super) answer: oneshot::Sender<InputOutcome>,
    /// When the request was made (for the time waited).
    pub(super) asked_at: Instant,
    /// Told when the run starts and stops waiting, and how long each request waited.
    pub(super) observer: Option<Arc<dyn RunObserver>>,
    /// The request's schema, compiled; `None`: any value.
    pub(super) validator: Option<jsonschema::Validator>,
}

impl Inputs {
    /// Notes an `input_requested` or `input_resolved` event the log holds (the run's own, or one
    /// replicated from the replica that executes it).
    pub(crate) fn observe(&mut self, event: &Arc<RunEvent>) {
        match &event.kind {
            EventKind::InputRequested(_) => self.open.push(Arc::clone(event)),
            EventKind::InputResolved { request_id, .. } => self.open.retain(|open| {
                !matches!(&open.kind, EventKind::InputRequested(request) if request.request_id == *request_id)
            }),
            _ => {}
        }
    }

    /// Closes the open request `request_id` with `outcome`: the event that says so, with what
    /// to tell the asking tool (once the log's lock is released) in `deliver`. `None` when the
    /// request is not open here.
    pub(super) fn close(
        &mut self,
        request_id: &str,
        outcome: InputOutcome,
        deliver: &mut Option<(oneshot::Sender<InputOutcome>, InputOutcome)>,
    ) -> Option<EventKind> {
        let (request_id, waiter) = self.waiters.remove_entry(request_id)?;
        if let Some(observer) = &waiter.observer {
            observer.input_resolved(waiter.asked_at.elapsed());
            if self.waiters.is_empty() {
                observer.input_waiting(false);
            }
        }
        *deliver = Some((waiter.answer, outcome.clone()));
        Some(EventKind::InputResolved {
            request_id,
            outcome,
        })
    }

    /// Whether this log made the request `request_id` (open or resolved since).
    pub(super) fn made(&self, request_id: &str) -> bool {
        request_id
            .strip_prefix("input-")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n >= 1 && n <= self.asked)
    }
}

/// When a run's input requests lapse (its input timeout and its deadline), and who is told of
/// its waiting.
#[derive(Clone, Default)]
pub(crate) struct InputLimits {
    /// How long a request stays open; `None`: until the deadline.
    pub(crate) timeout: Option<Duration>,
    /// When the run ends whatever happens.
    pub(crate) deadline: Option<Instant>,
    /// The engine's observer (metrics, webhooks).
    pub(crate) observer: Option<Arc<dyn RunObserver>>,
    /// Tells the observer that the run began waiting ([`RunObserver::run_waiting`]), when it
    /// wants to know; called outside the log's lock, since it takes a snapshot of the run.
    pub(crate) began_waiting: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl InputLimits {
    /// When a request made now lapses, if ever.
    pub(super) fn lapse_at(&self, now: Instant) -> Option<Instant> {
        let timed_out = self.timeout.map(|timeout| now + timeout);
        match (timed_out, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

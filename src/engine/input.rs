//! Input requests: a run that asks a person and waits for the answer (human in the loop).
//!
//! A tool asks through its progress handle ([`crate::tools::Progress::ask`]); the run's log
//! ([`RunLog`]) makes the question an `InputRequested` event, so an open request is part of the
//! run's state like its progress: stored and replayed, shown to readers that start from the latest
//! state and by GetRun (`pending_inputs`, state INPUT_REQUIRED while one is open). The request is
//! open until exactly one `InputResolved` event closes it, decided under the log's lock:
//! - a client answers ([`RunLog::respond`]): the first valid answer wins; an answer failing the
//!   request's schema is refused naming the field and the request stays open; a second answer,
//!   or one for a request that lapsed, is refused;
//! - it lapses at the run's input timeout or deadline (EXPIRED);
//! - the run ends first (CANCELLED; EXPIRED when its deadline passed).
//!
//! The asking tool's future resumes with the outcome, so a tool never waits on a request nobody
//! can answer for longer than the run lives.

use std::sync::Arc;
use std::time::SystemTime;

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::RunError;
use super::event::{CallTag, EventKind, InputOutcome, InputRequest};
use super::log::{LogState, RunLog};
use super::open_requests::{InputLimits, Waiter};
use crate::registry::schema_problems;
use crate::tools::{Answer, Question};

/// What a client answers to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// This value.
    Value(Value),
    /// No answer: the request is declined.
    Decline,
}

impl RunLog {
    /// Asks `question` for `call`: logs the request and returns the future the asking tool
    /// awaits. It completes with the outcome however the request is resolved, and at the latest
    /// when the request lapses (the run's input timeout or deadline, or the question's own
    /// `expire_time`, whichever comes first). When `settled` completes first, the question was
    /// resolved where it was first asked (a remote run) and the request is resolved with its
    /// outcome. A tool that stops waiting (drops the future) withdraws its question: the request
    /// is resolved CANCELLED.
    pub(crate) fn ask(
        self: &Arc<Self>,
        call: Arc<CallTag>,
        question: Question,
        settled: Option<BoxFuture<'static, Answer>>,
    ) -> BoxFuture<'static, Answer> {
        let validator = match &question.schema {
            None => None,
            Some(schema) => match jsonschema::validator_for(schema) {
                Ok(validator) => Some(validator),
                Err(error) => {
                    let reason =
                        format!("the question's schema is not a valid JSON Schema: {error}");
                    return Box::pin(std::future::ready(Answer::Refused(reason)));
                }
            },
        };
        let now = Instant::now();
        let wall_now = SystemTime::now();
        let limits = self.input_limits();
        let observer = limits.observer.clone();
        let (lapse_at, expire_time) = lapse(&limits, question.expire_time, now, wall_now);
        let mut began_waiting = false;
        let (answer, answered) = oneshot::channel();
        let mut asked: Option<Arc<str>> = None;
        let logged = self.append_with(
            |state: &mut LogState, _| {
                state.inputs.asked += 1;
                let request_id: Arc<str> = Arc::from(format!("input-{}", state.inputs.asked));
                if state.inputs.waiters.is_empty() {
                    began_waiting = true;
                    if let Some(observer) = &observer {
                        observer.input_waiting(true);
                    }
                }
                let waiter = Waiter {
                    answer,
                    asked_at: now,
                    observer,
                    validator,
                };
                state.inputs.waiters.insert(Arc::clone(&request_id), waiter);
                asked = Some(Arc::clone(&request_id));
                let request = InputRequest {
                    request_id,
                    call,
                    prompt: question.prompt,
                    schema: question.schema,
                    kind: question.kind,
                    data: question.data,
                    expire_time,
                };
                Some((EventKind::InputRequested(Arc::new(request)), None))
            },
            None,
            None,
        );
        let (Ok(()), Some(request_id)) = (logged, asked) else {
            // The run ended (or is ending): nobody will answer.
            return Box::pin(std::future::ready(Answer::Cancelled));
        };
        // Told once the request is logged, outside the lock (a snapshot takes it).
        if began_waiting && let Some(tell) = &limits.began_waiting {
            tell();
        }
        let withdraw = Withdraw {
            log: Arc::clone(self),
            request_id,
        };
        Box::pin(async move {
            let mut answered = answered;
            let lapsed = async {
                match lapse_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let settled = async {
                match settled {
                    Some(settled) => settled.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                outcome = &mut answered => return outcome.map_or(Answer::Cancelled, Answer::from),
                () = lapsed => withdraw.log.resolve(&withdraw.request_id, InputOutcome::Expired),
                answer = settled => withdraw.log.resolve(&withdraw.request_id, InputOutcome::from(answer)),
            }
            // Whoever resolved the request sent its outcome; a log dropped with the request
            // open means the run is gone.
            answered.await.map_or(Answer::Cancelled, Answer::from)
        })
    }

    /// Answers the open request `request_id` with `reply`. Fails when the run ended, when no
    /// request has that id, when it was resolved already, and when the value fails the
    /// request's schema (the request then stays open).
    pub(crate) fn respond(&self, request_id: &str, reply: Reply) -> Result<(), RunError> {
        let mut decided: Result<(), RunError> = Ok(());
        let mut deliver: Option<(oneshot::Sender<InputOutcome>, InputOutcome)> = None;
        let logged = self.append_with(
            |state: &mut LogState, _| {
                let Some(waiter) = state.inputs.waiters.get(request_id) else {
                    decided = Err(if state.inputs.made(request_id) {
                        RunError::FailedPrecondition(format!(
                            "input request {request_id:?} was already resolved; only the first \
                             answer counts"
                        ))
                    } else {
                        RunError::UnknownInputRequest(request_id.to_owned())
                    });
                    return None;
                };
                let outcome = match reply {
                    Reply::Decline => InputOutcome::Declined,
                    Reply::Value(value) => {
                        if let Some(validator) = &waiter.validator {
                            let problems = schema_problems(validator, &value);
                            if !problems.is_empty() {
                                decided = Err(RunError::InvalidArguments(format!(
                                    "the answer to input request {request_id:?} does not satisfy \
                                     its schema: {}",
                                    problems.join("; ")
                                )));
                                return None;
                            }
                        }
                        InputOutcome::Answered(value)
                    }
                };
                Some((state.inputs.close(request_id, outcome, &mut deliver)?, None))
            },
            None,
            None,
        );
        if logged.is_err() {
            return Err(RunError::FailedPrecondition(
                "the run has ended; its input requests can no longer be answered".to_owned(),
            ));
        }
        if let Some((answer, outcome)) = deliver {
            // The asking tool may be gone (its call was dropped): the answer is logged anyway.
            let _ = answer.send(outcome);
        }
        decided
    }

    /// Resolves the open request `request_id` with `outcome` unless something resolved it first.
    fn resolve(&self, request_id: &str, outcome: InputOutcome) {
        let mut deliver = None;
        let _ = self.append_with(
            |state: &mut LogState, _| {
                Some((state.inputs.close(request_id, outcome, &mut deliver)?, None))
            },
            None,
            None,
        );
        if let Some((answer, outcome)) = deliver {
            let _ = answer.send(outcome);
        }
    }

    /// Resolves every request still open with `outcome`: the run is ending.
    pub(crate) fn resolve_open(&self, outcome: &InputOutcome) {
        let mut open: Vec<Arc<str>> = self.lock().inputs.waiters.keys().cloned().collect();
        open.sort();
        for request_id in open {
            self.resolve(&request_id, outcome.clone());
        }
    }
}

/// The question of an asking tool that may stop waiting: dropped, it resolves the request
/// CANCELLED unless something resolved it first (then it does nothing).
struct Withdraw {
    log: Arc<RunLog>,
    request_id: Arc<str>,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        self.log.resolve(&self.request_id, InputOutcome::Cancelled);
    }
}

/// When a request asked at `now` (`wall_now` on the clock) lapses, as an instant to wait for
/// and as the `expire_time` clients see: the first of the run's input timeout, its deadline and
/// the question's own `expire_time`. The question's time is shown as it was given, never later.
fn lapse(
    limits: &InputLimits,
    asked_to_expire: Option<SystemTime>,
    now: Instant,
    wall_now: SystemTime,
) -> (Option<Instant>, Option<SystemTime>) {
    let run_lapse = limits.lapse_at(now);
    let run_expire = run_lapse.map(|at| wall_now + at.saturating_duration_since(now));
    match (run_lapse.zip(run_expire), asked_to_expire) {
        (Some((at, expire)), Some(asked)) if expire <= asked => (Some(at), Some(expire)),
        (_, Some(asked)) => {
            let left = asked.duration_since(wall_now).unwrap_or_default();
            (Some(now + left), Some(asked))
        }
        (run, None) => (run.map(|(at, _)| at), run.map(|(_, expire)| expire)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn log() -> Arc<RunLog> {
        RunLog::new(Arc::from("0".repeat(32)), 8, 100)
    }

    /// The outcomes of the log's `input_resolved` events, by request.
    fn resolved(log: &RunLog) -> Vec<(String, InputOutcome)> {
        log.lock()
            .events
            .iter()
            .filter_map(|event| match &event.kind {
                EventKind::InputResolved {
                    request_id,
                    outcome,
                } => Some((request_id.to_string(), outcome.clone())),
                _ => None,
            })
            .collect()
    }

    fn question() -> Question {
        Question::new("Go?", Some(json!({"type": "boolean"})))
    }

    #[tokio::test]
    async fn every_request_is_resolved_exactly_once_whatever_comes_after() {
        let log = log();
        let asked = log.ask(Arc::new(CallTag::top()), question(), None);
        assert_eq!(log.lock().inputs.open.len(), 1);
        assert!(matches!(
            log.respond("input-1", Reply::Value(json!("yes"))),
            Err(RunError::InvalidArguments(_))
        ));
        log.respond("input-1", Reply::Value(json!(true)))
            .expect("the first valid answer");
        // Everything after the first answer resolves nothing more.
        assert!(matches!(
            log.respond("input-1", Reply::Decline),
            Err(RunError::FailedPrecondition(_))
        ));
        log.resolve("input-1", InputOutcome::Expired);
        log.resolve_open(&InputOutcome::Cancelled);
        assert_eq!(asked.await, Answer::Answered(json!(true)));
        assert_eq!(
            resolved(&log),
            [("input-1".to_owned(), InputOutcome::Answered(json!(true)))]
        );
        assert!(log.lock().inputs.open.is_empty());
        assert!(matches!(
            log.respond("input-2", Reply::Decline),
            Err(RunError::UnknownInputRequest(_))
        ));
    }

    #[tokio::test]
    async fn a_run_that_ends_resolves_its_open_requests_and_refuses_answers() {
        let log = log();
        let first = log.ask(Arc::new(CallTag::top()), question(), None);
        let second = log.ask(Arc::new(CallTag::top()), Question::new("Name?", None), None);
        log.resolve_open(&InputOutcome::Cancelled);
        log.finish(Err(RunError::CancelRequested));
        assert_eq!(first.await, Answer::Cancelled);
        assert_eq!(second.await, Answer::Cancelled);
        assert_eq!(resolved(&log).len(), 2);
        assert!(matches!(
            log.respond("input-1", Reply::Decline),
            Err(RunError::FailedPrecondition(_))
        ));
        // Asking once the run ended asks nobody.
        let late = log.ask(Arc::new(CallTag::top()), question(), None).await;
        assert_eq!(late, Answer::Cancelled);
    }

    #[tokio::test]
    async fn a_tool_that_stops_waiting_withdraws_its_question() {
        let log = log();
        drop(log.ask(Arc::new(CallTag::top()), question(), None));
        assert_eq!(
            resolved(&log),
            [("input-1".to_owned(), InputOutcome::Cancelled)]
        );
        assert!(log.lock().inputs.open.is_empty());
    }

    #[tokio::test]
    async fn a_question_settled_where_it_was_asked_first_resolves_the_request_the_same_way() {
        let log = log();
        let settled = Box::pin(std::future::ready(Answer::Answered(json!(false))));
        let answer = log
            .ask(Arc::new(CallTag::top()), question(), Some(settled))
            .await;
        assert_eq!(answer, Answer::Answered(json!(false)));
        assert_eq!(
            resolved(&log),
            [("input-1".to_owned(), InputOutcome::Answered(json!(false)))]
        );
        assert!(matches!(
            log.respond("input-1", Reply::Value(json!(true))),
            Err(RunError::FailedPrecondition(_))
        ));
    }

    #[tokio::test]
    async fn a_question_lapses_at_its_own_expire_time_when_that_comes_first() {
        let log = log();
        let expire_time = SystemTime::now() + std::time::Duration::from_millis(20);
        let question = Question {
            expire_time: Some(expire_time),
            ..question()
        };
        let answer = log.ask(Arc::new(CallTag::top()), question, None).await;
        assert_eq!(answer, Answer::Expired);
        let shown = log
            .lock()
            .events
            .iter()
            .find_map(|event| match &event.kind {
                EventKind::InputRequested(request) => Some(request.expire_time),
                _ => None,
            });
        assert_eq!(shown, Some(Some(expire_time)));
    }

    #[tokio::test]
    async fn a_schema_that_is_no_json_schema_is_refused_before_anything_is_asked() {
        let log = log();
        let answer = log
            .ask(
                Arc::new(CallTag::top()),
                Question::new("?", Some(json!({"type": 7}))),
                None,
            )
            .await;
        assert!(matches!(answer, Answer::Refused(_)), "{answer:?}");
        assert!(log.lock().inputs.open.is_empty());
    }
}

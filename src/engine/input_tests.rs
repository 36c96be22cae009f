//! Property tests of input requests (`input.rs`): random sequences of asking, answering (valid,
//! failing the schema, again), declining, lapsing, being settled where the question was first
//! asked, the asking tool giving up, and the run ending, against one run's log and a model of
//! what each should do. After every step: the open requests (what makes a run INPUT_REQUIRED
//! rather than RUNNING, see `runs.rs`) are exactly the model's; every request has at most one
//! `input_resolved`, with the model's outcome; each asking tool got that outcome once the request
//! was resolved; an answer is refused as the model says (a second one, an unknown request, a
//! value failing the schema, a run that ended); once the run ended nothing more is logged. At the
//! end every request was resolved exactly once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;
use tokio::sync::oneshot;

use super::RunError;
use super::event::{CallTag, EventKind, InputOutcome};
use super::input::Reply;
use super::log::RunLog;
use super::open_requests::InputLimits;
use crate::tools::{Answer, Question};

/// How long a request stays open.
const INPUT_TIMEOUT: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
enum Op {
    /// A tool asks a yes/no question.
    Ask,
    /// A client answers request `.0` (an index into those asked; one past them: an unknown
    /// request) with a boolean.
    Answer(u8, bool),
    /// A client answers with a value failing the schema.
    AnswerInvalid(u8),
    Decline(u8),
    /// The question is settled where it was first asked (a remote run), with outcome `.1`.
    Settle(u8, u8),
    /// The asking tool stops waiting.
    Withdraw(u8),
    /// Time passes (milliseconds).
    Advance(u16),
    /// The run ends: 0 succeeded, 1 cancelled, 2 deadline passed.
    End(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Ask),
        3 => (any::<u8>(), any::<bool>()).prop_map(|(k, v)| Op::Answer(k, v)),
        1 => any::<u8>().prop_map(Op::AnswerInvalid),
        1 => any::<u8>().prop_map(Op::Decline),
        1 => (any::<u8>(), 0u8..5).prop_map(|(k, o)| Op::Settle(k, o)),
        1 => any::<u8>().prop_map(Op::Withdraw),
        2 => (0u16..160).prop_map(Op::Advance),
        1 => (0u8..3).prop_map(Op::End),
    ]
}

/// One request, as the model sees it, with the asking tool's end of it.
struct Asked {
    asked_at: tokio::time::Instant,
    /// `None` while open.
    resolved: Option<InputOutcome>,
    /// The asking tool's future, until it completed or was dropped.
    waiting: Option<Pin<Box<dyn Future<Output = Answer> + Send>>>,
    /// What the tool got.
    got: Option<Answer>,
    /// Settles the question where it was first asked.
    settle: Option<oneshot::Sender<Answer>>,
}

fn settled_answer(choice: u8) -> Answer {
    match choice {
        0 => Answer::Answered(json!(true)),
        1 => Answer::Declined,
        2 => Answer::Expired,
        3 => Answer::Cancelled,
        _ => Answer::Refused("cannot ask there".to_owned()),
    }
}

/// Polls every waiting tool once, noting what those that completed got.
async fn poll_waiting(asked: &mut [Asked]) {
    for request in asked.iter_mut() {
        if let Some(waiting) = request.waiting.as_mut()
            && let std::task::Poll::Ready(answer) = futures::poll!(waiting.as_mut())
        {
            request.got = Some(answer);
            request.waiting = None;
        }
    }
}

/// The `input_resolved` outcomes the log holds for `request_id`.
fn resolutions(log: &RunLog, request_id: &str) -> Vec<InputOutcome> {
    log.lock()
        .events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::InputResolved {
                request_id: id,
                outcome,
            } if &**id == request_id => Some(outcome.clone()),
            _ => None,
        })
        .collect()
}

fn open_ids(log: &RunLog) -> Vec<String> {
    log.lock()
        .inputs
        .open
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::InputRequested(request) => Some(request.request_id.to_string()),
            _ => None,
        })
        .collect()
}

/// Checks the log and the tools against the model.
fn check(log: &RunLog, asked: &[Asked]) -> Result<(), TestCaseError> {
    let expected_open: Vec<String> = asked
        .iter()
        .enumerate()
        .filter(|(_, request)| request.resolved.is_none())
        .map(|(i, _)| format!("input-{}", i + 1))
        .collect();
    prop_assert_eq!(open_ids(log), expected_open);
    for (i, request) in asked.iter().enumerate() {
        let request_id = format!("input-{}", i + 1);
        let logged = resolutions(log, &request_id);
        match &request.resolved {
            None => prop_assert!(
                logged.is_empty(),
                "{request_id} open but resolved: {logged:?}"
            ),
            Some(outcome) => {
                prop_assert_eq!(&logged, &vec![outcome.clone()], "{}", request_id);
                // A tool still waiting got the outcome; one that gave up got nothing.
                if request.got.is_some() || request.waiting.is_some() {
                    prop_assert_eq!(request.got.clone(), Some(Answer::from(outcome.clone())));
                }
            }
        }
    }
    Ok(())
}

/// Which request an index names: one of those asked, or the next id (unknown).
fn pick(asked: &[Asked], k: u8) -> usize {
    k as usize % (asked.len() + 1)
}

async fn run_case(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let log = RunLog::new(Arc::from("0".repeat(32)), 8, 100_000);
    log.set_input_limits(InputLimits {
        timeout: Some(INPUT_TIMEOUT),
        deadline: None,
        ..InputLimits::default()
    });
    let mut asked: Vec<Asked> = Vec::new();
    let mut ended = false;
    let mut events_at_end = 0;
    for op in ops {
        match op {
            Op::Ask => {
                let (settle, settled) = oneshot::channel::<Answer>();
                let settled = Box::pin(async move { settled.await.unwrap_or(Answer::Cancelled) });
                let question = Question::new("Go?", Some(json!({"type": "boolean"})));
                let waiting = log.ask(Arc::new(CallTag::top()), question, Some(settled));
                if ended {
                    // Asking once the run ended asks nobody, and logs nothing.
                    prop_assert_eq!(waiting.await, Answer::Cancelled);
                } else {
                    asked.push(Asked {
                        asked_at: tokio::time::Instant::now(),
                        resolved: None,
                        waiting: Some(waiting),
                        got: None,
                        settle: Some(settle),
                    });
                }
            }
            Op::Answer(k, _) | Op::AnswerInvalid(k) | Op::Decline(k) => {
                let index = pick(&asked, k);
                let request_id = format!("input-{}", index + 1);
                let reply = match op {
                    Op::Answer(_, value) => Reply::Value(json!(value)),
                    Op::AnswerInvalid(_) => Reply::Value(json!("yes")),
                    _ => Reply::Decline,
                };
                let answered = log.respond(&request_id, reply.clone());
                let request = asked.get_mut(index);
                match (ended, request) {
                    (true, _) => prop_assert!(
                        matches!(answered, Err(RunError::FailedPrecondition(_))),
                        "{answered:?}"
                    ),
                    (false, None) => prop_assert!(
                        matches!(answered, Err(RunError::UnknownInputRequest(_))),
                        "{answered:?}"
                    ),
                    (false, Some(request)) if request.resolved.is_some() => prop_assert!(
                        matches!(answered, Err(RunError::FailedPrecondition(_))),
                        "a second answer: {answered:?}"
                    ),
                    (false, Some(request)) => match reply {
                        Reply::Value(value) if !value.is_boolean() => prop_assert!(
                            matches!(answered, Err(RunError::InvalidArguments(_))),
                            "{answered:?}"
                        ),
                        Reply::Value(value) => {
                            prop_assert!(answered.is_ok(), "{answered:?}");
                            request.resolved = Some(InputOutcome::Answered(value));
                        }
                        Reply::Decline => {
                            prop_assert!(answered.is_ok(), "{answered:?}");
                            request.resolved = Some(InputOutcome::Declined);
                        }
                    },
                }
            }
            Op::Settle(k, choice) => {
                let index = pick(&asked, k);
                if let Some(request) = asked.get_mut(index)
                    && let Some(settle) = request.settle.take()
                {
                    let answer = settled_answer(choice);
                    // Only a tool still waiting, on a run still going, sees it.
                    if request.resolved.is_none() && request.waiting.is_some() && !ended {
                        request.resolved = Some(InputOutcome::from(answer.clone()));
                    }
                    let _ = settle.send(answer);
                }
            }
            Op::Withdraw(k) => {
                let index = pick(&asked, k);
                if let Some(request) = asked.get_mut(index)
                    && request.waiting.take().is_some()
                    && request.resolved.is_none()
                    && !ended
                {
                    request.resolved = Some(InputOutcome::Cancelled);
                }
            }
            Op::Advance(ms) => {
                tokio::time::advance(Duration::from_millis(u64::from(ms))).await;
                let now = tokio::time::Instant::now();
                for request in asked.iter_mut() {
                    if request.resolved.is_none()
                        && request.waiting.is_some()
                        && request.asked_at + INPUT_TIMEOUT <= now
                    {
                        request.resolved = Some(InputOutcome::Expired);
                    }
                }
            }
            Op::End(how) => {
                if !ended {
                    let (outcome, end) = match how {
                        0 => (InputOutcome::Cancelled, Ok(json!(null))),
                        1 => (InputOutcome::Cancelled, Err(RunError::CancelRequested)),
                        _ => (
                            InputOutcome::Expired,
                            Err(RunError::DeadlineExceeded(Duration::from_secs(1))),
                        ),
                    };
                    // As the engine ends a run: its open requests first, then the end.
                    log.resolve_open(&outcome);
                    log.finish(end);
                    for request in asked.iter_mut().filter(|r| r.resolved.is_none()) {
                        request.resolved = Some(outcome.clone());
                    }
                    ended = true;
                    events_at_end = log.lock().events.len();
                }
            }
        }
        poll_waiting(&mut asked).await;
        check(&log, &asked)?;
        if ended {
            prop_assert_eq!(
                log.lock().events.len(),
                events_at_end,
                "logged after the end"
            );
        }
    }
    // Whatever happened, the run ends, and every request it made was resolved exactly once.
    log.resolve_open(&InputOutcome::Cancelled);
    log.finish(Err(RunError::CancelRequested));
    for (i, _) in asked.iter().enumerate() {
        prop_assert_eq!(resolutions(&log, &format!("input-{}", i + 1)).len(), 1);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn input_requests_follow_their_state_machine(ops in proptest::collection::vec(op(), 1..80)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime");
        runtime.block_on(run_case(ops))?;
    }
}

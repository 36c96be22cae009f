//! Answers to input requests of runs that execute on another replica.
//!
//! Only the replica that executes a run holds what waits for its answers, so it alone decides
//! (the first valid answer wins, under its log's lock). RespondToRun on any other replica pushes
//! the answer onto the owner's answer list (`{p}replica:{r}:inputs`) with the name of a reply key
//! of its own, and waits on that key; the owner, which blocks on its list beside its cancel list,
//! decides and pushes the outcome (nothing, or the error) onto the reply key. An owner that is
//! lost answers nothing: the run is then ended by the sweeper, its requests resolve nothing, and
//! the answer fails as for any ended run.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::codec::{self, StoredRecord};
use super::{Shared, millis};
use crate::engine::RunError;
use crate::engine::input::Reply;
use crate::engine::runs::{RunSnapshot, RunState};
use crate::engine::store::respond_local;

/// How long an answer waits for the run's owner to decide before it is checked again.
const OWNER_WAIT: Duration = Duration::from_secs(5);

/// An answer on its way to the run's owner.
#[derive(Serialize, Deserialize)]
pub(super) struct RoutedAnswer {
    run: String,
    request: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<Value>,
    #[serde(default)]
    decline: bool,
    /// Where the owner pushes what it decided.
    reply: String,
}

/// What the owner decided.
#[derive(Serialize, Deserialize)]
struct Decision {
    /// The error (as [`codec::encode_error`] writes it); `None`: the answer was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Shared {
    /// Takes an answer to a run `record` says runs on another replica there, and answers the
    /// run's state then.
    pub(super) async fn respond_elsewhere(
        self: &Arc<Self>,
        run_id: &str,
        record: StoredRecord,
        request_id: &str,
        reply: Reply,
    ) -> Result<RunSnapshot, RunError> {
        if record.state != RunState::Running {
            return Err(ended_as(&record));
        }
        let reply_key = self.keys.reply(&uuid::Uuid::new_v4().simple().to_string());
        let (value, decline) = match reply {
            Reply::Value(value) => (Some(value), false),
            Reply::Decline => (None, true),
        };
        let routed = RoutedAnswer {
            run: run_id.to_owned(),
            request: request_id.to_owned(),
            value,
            decline,
            reply: reply_key.clone(),
        };
        let text = serde_json::to_string(&routed)
            .map_err(|e| RunError::Internal(format!("an answer could not be encoded: {e}")))?;
        let inputs = self.keys.inputs(&record.owner);
        let _: () = redis::pipe()
            .rpush(&inputs, text)
            .ignore()
            .pexpire(&inputs, millis(OWNER_WAIT * 2) as i64)
            .ignore()
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.unavailable(e))?;
        let popped: Option<[String; 2]> = self
            .blocking_conn(OWNER_WAIT)
            .await?
            .blpop(&reply_key, OWNER_WAIT.as_secs_f64())
            .await
            .map_err(|e| self.unavailable(e))?;
        let decided = match popped {
            Some([_, text]) => serde_json::from_str::<Decision>(&text)
                .ok()
                .and_then(|decision| decision.error)
                .map_or(Ok(()), |error| Err(codec::decode_error(&error))),
            None => {
                // No decision in time: the owner may be gone (then the run ends, and so does
                // any chance of an answer) or slow.
                let record = self.existing(run_id).await?;
                let record = self.settle(run_id, record).await?;
                if record.state != RunState::Running {
                    return Err(ended_as(&record));
                }
                return Err(RunError::Unavailable(format!(
                    "the replica {:?} running this run did not take the answer within {:?}; \
                     look at the run and answer again if its request is still open",
                    record.owner, OWNER_WAIT
                )));
            }
        };
        decided?;
        let record = self.existing(run_id).await?;
        Ok(self.settle(run_id, record).await?.snapshot(run_id))
    }

    /// Decides an answer routed to this replica (see the module docs) and replies.
    pub(super) async fn answer_here(&self, text: &str) {
        let Ok(routed) = serde_json::from_str::<RoutedAnswer>(text) else {
            tracing::warn!("an answer routed to this replica is not readable; dropped");
            return;
        };
        let reply = if routed.decline {
            Reply::Decline
        } else {
            Reply::Value(routed.value.unwrap_or(Value::Null))
        };
        let decided = match self.local.get(&routed.run) {
            Some(record) => respond_local(&record, &routed.request, reply).map(|_| ()),
            None => Err(ended()),
        };
        let decision = Decision {
            error: decided.err().map(|error| codec::encode_error(&error)),
        };
        let Ok(text) = serde_json::to_string(&decision) else {
            return;
        };
        let replied: redis::RedisResult<()> = redis::pipe()
            .rpush(&routed.reply, text)
            .ignore()
            .pexpire(&routed.reply, millis(OWNER_WAIT * 2) as i64)
            .ignore()
            .query_async(&mut self.conn())
            .await;
        if let Err(error) = replied {
            tracing::debug!(%error, "the decision on a routed answer could not be sent back");
        }
    }
}

/// The run of `record` ended: how, so that an answer to a run whose replica was lost says so.
fn ended_as(record: &StoredRecord) -> RunError {
    match record.error.as_deref().map(codec::decode_error) {
        Some(error) => RunError::FailedPrecondition(format!(
            "the run has ended ({error}); its input requests can no longer be answered"
        )),
        None => ended(),
    }
}

fn ended() -> RunError {
    RunError::FailedPrecondition(
        "the run has ended; its input requests can no longer be answered".to_owned(),
    )
}

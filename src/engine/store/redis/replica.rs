//! A replica among others: its lease (which is also the store's health check), the sweeper that
//! ends the runs of lost replicas, and the listener for cancel requests from other replicas.
//!
//! - **Lease.** The replica's lease key expires two thirds of the lease time (`[runs] lease_secs`)
//!   after it was last set, and the replica sets it every sixth of the lease time (at most every
//!   second), so three renewals in a row can fail before it lapses. Success means the store is
//!   reachable (health SERVING, new runs taken); failure means it is not (health NOT_SERVING, new
//!   runs UNAVAILABLE naming the store) until a renewal succeeds again.
//! - **Sweeper.** Every quarter of the lease time (at most every 5 s) each replica looks for
//!   replicas whose lease lapsed and ends their running runs with UNAVAILABLE naming them (a
//!   script that does nothing if the run ended or the lease came back), so a dead replica leaves
//!   no run RUNNING. A follower of a silent run checks its owner as often. Either way a dead
//!   replica's runs end within the lease time: its key lapses within two thirds of it, and is
//!   noticed within a quarter more. The sweeper also drops expired runs from the index. Only a
//!   replica that has reached the store for a whole lease time takes another for lost, so after
//!   an outage of the store (every lease lapsed) live replicas renew before anyone judges them.
//! - **Cancel requests.** A CancelRun on another replica pushes the run id onto this replica's
//!   cancel list; the replica blocks on that list (its own connection) and cancels the run.
//!   It blocks on its answer list in the same command: answers to its runs' input requests given
//!   on other replicas (see `answers`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use redis::AsyncCommands;

use super::codec;
use super::follower::block_time;
use super::{Shared, millis, scripts};
use crate::engine::runs::CancelReason;

/// The replica's host name, the default start of its id.
pub(super) fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let status = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    let name = if status == 0 {
        let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
        String::from_utf8_lossy(&buffer[..end]).into_owned()
    } else {
        String::new()
    };
    if name.is_empty() {
        "toolstream".to_owned()
    } else {
        name
    }
}

/// How long the lease key lives after each renewal.
fn lease_key_ttl(lease: Duration) -> Duration {
    lease * 2 / 3
}

/// How often the lease is renewed (and the store's health checked).
fn renew_interval(lease: Duration) -> Duration {
    (lease / 6).clamp(Duration::from_millis(20), Duration::from_secs(1))
}

/// How often lost replicas are looked for.
fn sweep_interval(lease: Duration) -> Duration {
    (lease / 4).clamp(Duration::from_millis(50), Duration::from_secs(5))
}

/// Starts the replica's background tasks; they stop with the store.
pub(super) fn spawn(shared: &Arc<Shared>) {
    tokio::spawn(renew_lease(Arc::clone(shared)));
    tokio::spawn(sweep(Arc::clone(shared)));
    tokio::spawn(listen_for_cancels(Arc::clone(shared)));
}

async fn renew_lease(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(renew_interval(shared.lease));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => return,
            _ = tick.tick() => shared.renew_lease().await,
        }
    }
}

async fn sweep(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(sweep_interval(shared.lease));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !*shared.health.borrow() {
            continue;
        }
        if let Err(error) = shared.sweep_once().await {
            tracing::debug!(%error, "sweeping for lost replicas failed");
        }
    }
}

async fn listen_for_cancels(shared: Arc<Shared>) {
    let block = block_time(shared.lease);
    let key = shared.keys.cancels(&shared.replica);
    let answers = shared.keys.inputs(&shared.replica);
    let lists = [key.clone(), answers.clone()];
    loop {
        let connected = tokio::select! {
            () = shared.stop.cancelled() => return,
            connected = shared.connector.dedicated(block) => connected,
        };
        let Ok(mut conn) = connected else {
            tokio::select! {
                () = shared.stop.cancelled() => return,
                () = tokio::time::sleep(renew_interval(shared.lease)) => continue,
            }
        };
        loop {
            let popped: redis::RedisResult<Option<[String; 2]>> = tokio::select! {
                () = shared.stop.cancelled() => return,
                popped = conn.blpop(&lists, block.as_secs_f64()) => popped,
            };
            match popped {
                Ok(Some([list, answer])) if list == answers => {
                    shared.answer_here(&answer).await;
                }
                Ok(Some([_, run_id])) => {
                    if let Some(record) = shared.local.get(&run_id)
                        && record.log.lock().end.is_none()
                    {
                        tracing::info!(run_id, "cancelled through CancelRun on another replica");
                        record.cancel(CancelReason::Requested);
                    }
                }
                Ok(None) => {}
                Err(_) => break,
            }
        }
    }
}

/// Whether `error` says the store refuses this replica (a wrong password or user, a server
/// certificate that does not verify, a client certificate it does not accept) rather than that it
/// cannot be reached: waiting does not mend it.
fn is_refusal(error: &redis::RedisError) -> bool {
    let text = error.to_string();
    error.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("NOAUTH" | "WRONGPASS"))
        // rustls: the server's certificate did not verify, or the server wanted ours (TLS 1.3
        // says so in an alert), or did not accept it.
        || text.contains("invalid peer certificate")
        || text.contains("alert: CertificateRequired")
        || text.contains("alert: BadCertificate")
        || text.contains("alert: UnknownCA")
}

impl Shared {
    /// Renews this replica's lease; the outcome is the store's health.
    pub(super) async fn renew_lease(&self) {
        let now = codec::unix_millis(SystemTime::now());
        // Two pipelines, sent together: the replica's keys, and the fleet's (in Redis Cluster
        // they are in two slots; a pipeline goes to one).
        let (mut own, mut fleet) = (self.conn(), self.conn());
        let (mut own_pipe, mut fleet_pipe) = (redis::pipe(), redis::pipe());
        let own_keys = own_pipe
            .cmd("SET")
            .arg(self.keys.lease(&self.replica))
            .arg(now)
            .arg("PX")
            .arg(millis(lease_key_ttl(self.lease)))
            .ignore()
            .cmd("PEXPIRE")
            .arg(self.keys.replica_runs(&self.replica))
            .arg(self.index_ttl())
            .ignore()
            .query_async::<()>(&mut own);
        let fleet_keys = fleet_pipe
            .cmd("ZADD")
            .arg(self.keys.replicas())
            .arg(now)
            .arg(&self.replica)
            .ignore()
            .cmd("PEXPIRE")
            .arg(self.keys.replicas())
            .arg(self.index_ttl())
            .ignore()
            .query_async::<()>(&mut fleet);
        let renewed = tokio::try_join!(own_keys, fleet_keys).map(|_| ());
        match renewed {
            Ok(()) => {
                *self
                    .refused
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
                self.reachable_since
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .get_or_insert_with(tokio::time::Instant::now);
                let recovered = self
                    .health
                    .send_if_modified(|up| !std::mem::replace(up, true));
                if recovered {
                    tracing::info!(store = %self.name, replica = %self.replica, "the run store is reachable: SERVING");
                }
            }
            Err(error) => {
                *self
                    .refused
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) =
                    is_refusal(&error).then(|| error.to_string());
                *self
                    .last_error
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = error.to_string();
                *self
                    .reachable_since
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
                let lost = self
                    .health
                    .send_if_modified(|up| std::mem::replace(up, false));
                if lost {
                    tracing::warn!(
                        store = %self.name,
                        %error,
                        "the run store cannot be reached: NOT_SERVING, new runs refused"
                    );
                }
            }
        }
    }

    /// Whether the store has been reachable without a break for at least `time`.
    pub(super) fn reachable_for(&self, time: Duration) -> bool {
        self.reachable_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_some_and(|since| since.elapsed() >= time)
    }

    /// Ends the runs of replicas whose lease lapsed, and forgets expired runs in the index.
    async fn sweep_once(&self) -> redis::RedisResult<()> {
        let replicas: Vec<String> = self.conn().zrange(self.keys.replicas(), 0, -1).await?;
        for replica in replicas.iter().filter(|r| **r != self.replica) {
            if self.lease_alive(replica).await? {
                continue;
            }
            let runs: HashSet<String> = self
                .conn()
                .smembers(self.keys.replica_runs(replica))
                .await?;
            for run_id in &runs {
                self.declare_lost(run_id, replica).await?;
            }
            let left: usize = self.conn().scard(self.keys.replica_runs(replica)).await?;
            if left == 0 {
                let _: usize = self.conn().zrem(self.keys.replicas(), replica).await?;
            }
        }
        let expired_before = SystemTime::now()
            .checked_sub(self.limits.retention)
            .map_or(0, codec::unix_millis);
        let _: usize = scripts::FORGET_EXPIRED
            .key(self.keys.finished())
            .key(self.keys.index())
            .arg(expired_before)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Leaves the fleet at shutdown: the lease goes at once, so runs whose end could not be
    /// written are ended by the other replicas without waiting for it to lapse.
    pub(super) async fn leave(&self) {
        let left: redis::RedisResult<()> = redis::pipe()
            .del(self.keys.lease(&self.replica))
            .ignore()
            .query_async(&mut self.conn())
            .await;
        if let Err(error) = left {
            tracing::debug!(%error, "cannot release the lease; it lapses on its own");
        }
    }
}

//! Sending webhooks: each delivery is POSTed until its receiver answers 2xx, with exponential
//! back-off and jitter between attempts, for at most the configured time, with the same
//! `webhook-id` every time.
//!
//! Alone, a replica sends what its runs queued. With the Redis run store, what a replica queues
//! goes to a Redis stream (`{prefix}webhooks`) read by one consumer group that every replica
//! joins: a delivery is sent by whichever replica read it, which keeps touching it (XCLAIM to
//! itself) while it retries and acknowledges and deletes it once done. One it stopped touching
//! for `claim_after` (its replica died) is taken by another (XAUTOCLAIM) and sent from there,
//! within the same retry time, counted from the run's end.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamReadReply};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc};

use super::{Endpoint, Policy, WebhookEvent};
use crate::engine::RunSnapshot;
use crate::json_proto::to_json;
use crate::telemetry::metrics::Metrics;
use crate::transport::convert::timestamp;
use crate::transport::runs::run_to_wire;

/// Deliveries sent at once by one replica at most; beyond, the queue waits (and fills).
const MAX_IN_FLIGHT: usize = 256;
/// The consumer group of every replica on one Redis.
const GROUP: &str = "senders";
/// How long one blocking read of the shared queue waits for new deliveries.
const READ_BLOCK: Duration = Duration::from_secs(1);

/// One message to one receiver.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Delivery {
    /// `webhook-id`: the same on every attempt.
    pub(crate) id: String,
    /// The receiver (one of the configured URLs).
    pub(crate) url: String,
    /// The signed body.
    pub(crate) body: String,
    /// When it was queued (ms since the epoch): the retry time counts from here.
    pub(crate) queued_ms: u64,
}

impl Delivery {
    pub(crate) fn new(url: &str, body: &str) -> Self {
        Delivery {
            id: format!("msg_{}", uuid::Uuid::new_v4().simple()),
            url: url.to_owned(),
            body: body.to_owned(),
            queued_ms: millis_since_epoch(SystemTime::now()),
        }
    }
}

fn millis_since_epoch(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The body of a webhook: the envelope Standard Webhooks recommends, the Run as its `data`.
pub(crate) fn payload(event: WebhookEvent, run: &RunSnapshot, now: SystemTime) -> String {
    let run = to_json(&run_to_wire(run.clone())).unwrap_or_else(|_| "{}".to_owned());
    format!(
        r#"{{"type":"{}","timestamp":"{}","data":{run}}}"#,
        event.name(),
        timestamp(now)
    )
}

/// The Redis side of the deliveries of a fleet: where a replica puts what it queues, and reads
/// what any replica queued.
#[derive(Clone)]
pub struct SharedQueue {
    client: redis::Client,
    conn: ConnectionManager,
    stream: String,
    consumer: String,
}

impl SharedQueue {
    /// The queue of the fleet whose run store is `client` with keys under `key_prefix`, read
    /// by this replica as `replica`.
    pub async fn open(
        client: redis::Client,
        key_prefix: &str,
        replica: &str,
    ) -> redis::RedisResult<SharedQueue> {
        let conn = ConnectionManager::new(client.clone()).await?;
        Ok(SharedQueue {
            client,
            conn,
            stream: format!("{key_prefix}webhooks"),
            consumer: replica.to_owned(),
        })
    }

    async fn ensure_group(&self) -> redis::RedisResult<()> {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn.clone())
            .await;
        match created {
            Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    async fn push(&self, delivery: &Delivery) -> redis::RedisResult<()> {
        let text = serde_json::to_string(delivery).unwrap_or_default();
        redis::cmd("XADD")
            .arg(&self.stream)
            .arg("*")
            .arg("d")
            .arg(text)
            .query_async::<String>(&mut self.conn.clone())
            .await
            .map(drop)
    }

    async fn done(&self, entry: &str) {
        let mut pipe = redis::pipe();
        pipe.cmd("XACK").arg(&self.stream).arg(GROUP).arg(entry);
        pipe.cmd("XDEL").arg(&self.stream).arg(entry);
        let done: redis::RedisResult<()> = pipe.query_async(&mut self.conn.clone()).await;
        if let Err(error) = done {
            tracing::warn!(%error, entry, "cannot acknowledge a webhook delivery in Redis; another replica may send it again");
        }
    }

    /// Keeps `entries` this replica's: their idle time starts again.
    async fn touch(&self, entries: &[String]) {
        if entries.is_empty() {
            return;
        }
        let touched: redis::RedisResult<redis::Value> = redis::cmd("XCLAIM")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(0)
            .arg(entries)
            .arg("JUSTID")
            .query_async(&mut self.conn.clone())
            .await;
        if let Err(error) = touched {
            tracing::debug!(%error, "cannot renew this replica's webhook deliveries in Redis");
        }
    }
}

/// What sends deliveries: the receivers, the policy, the HTTP client, the metrics.
#[derive(Clone)]
struct Sender {
    endpoints: Arc<[Endpoint]>,
    policy: Policy,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    permits: Arc<Semaphore>,
}

/// Sends what `receiver` brings until the server stops (see the module docs).
pub(crate) async fn deliver(
    mut receiver: mpsc::Receiver<Delivery>,
    endpoints: Arc<[Endpoint]>,
    policy: Policy,
    metrics: Arc<Metrics>,
    shared: Option<SharedQueue>,
) {
    let client = match reqwest::Client::builder()
        .timeout(policy.attempt_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the webhooks' HTTP client; no webhook is sent");
            return;
        }
    };
    let sender = Sender {
        endpoints,
        policy,
        client,
        metrics,
        permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
    };
    let Some(shared) = shared else {
        while let Some(delivery) = receiver.recv().await {
            sender.spawn(delivery, None).await;
        }
        return;
    };
    let in_flight = Arc::new(Mutex::new(HashSet::new()));
    tokio::spawn(consume(
        shared.clone(),
        sender.clone(),
        Arc::clone(&in_flight),
    ));
    tokio::spawn(claim_stale(shared.clone(), sender.clone(), in_flight));
    while let Some(delivery) = receiver.recv().await {
        if let Err(error) = shared.push(&delivery).await {
            // Redis is away: send it from here rather than lose it.
            tracing::warn!(%error, id = %delivery.id, "cannot queue a webhook in Redis; sending it from this replica");
            sender.spawn(delivery, None).await;
        }
    }
}

/// Entries this replica is sending now, so that it keeps them and does not take them twice.
type InFlight = Arc<Mutex<HashSet<String>>>;

fn lock(in_flight: &InFlight) -> std::sync::MutexGuard<'_, HashSet<String>> {
    in_flight.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads new deliveries of the fleet's queue and sends them.
async fn consume(shared: SharedQueue, sender: Sender, in_flight: InFlight) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let read = async {
            shared.ensure_group().await?;
            // Blocking reads get a connection of their own.
            let config = redis::AsyncConnectionConfig::new()
                .set_response_timeout(Some(READ_BLOCK + Duration::from_secs(2)));
            let mut conn = shared
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            loop {
                let reply: StreamReadReply = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(GROUP)
                    .arg(&shared.consumer)
                    .arg("COUNT")
                    .arg(16)
                    .arg("BLOCK")
                    .arg(READ_BLOCK.as_millis() as u64)
                    .arg("STREAMS")
                    .arg(&shared.stream)
                    .arg(">")
                    .query_async(&mut conn)
                    .await?;
                for key in reply.keys {
                    for entry in key.ids {
                        take(
                            &shared,
                            &sender,
                            &in_flight,
                            entry.id.clone(),
                            entry.get("d"),
                        )
                        .await;
                    }
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), redis::RedisError>(())
        };
        if let Err(error) = read.await {
            tracing::warn!(%error, "cannot read the webhook queue in Redis; trying again");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

/// Takes deliveries other replicas stopped touching, and keeps touching this replica's own.
async fn claim_stale(shared: SharedQueue, sender: Sender, in_flight: InFlight) {
    let claim_after = sender.policy.claim_after;
    let mut tick = tokio::time::interval((claim_after / 3).max(Duration::from_millis(100)));
    loop {
        tick.tick().await;
        let mine: Vec<String> = lock(&in_flight).iter().cloned().collect();
        shared.touch(&mine).await;
        let reply: redis::RedisResult<StreamAutoClaimReply> = redis::cmd("XAUTOCLAIM")
            .arg(&shared.stream)
            .arg(GROUP)
            .arg(&shared.consumer)
            .arg(claim_after.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(16)
            .query_async(&mut shared.conn.clone())
            .await;
        match reply {
            Ok(reply) => {
                for entry in reply.claimed {
                    tracing::info!(entry = %entry.id, "taking over a webhook delivery another replica stopped sending");
                    take(
                        &shared,
                        &sender,
                        &in_flight,
                        entry.id.clone(),
                        entry.get("d"),
                    )
                    .await;
                }
            }
            Err(error) => tracing::debug!(%error, "cannot claim stale webhook deliveries"),
        }
    }
}

/// Sends one entry of the shared queue unless this replica is sending it already; acknowledges
/// it once done.
async fn take(
    shared: &SharedQueue,
    sender: &Sender,
    in_flight: &InFlight,
    entry: String,
    text: Option<String>,
) {
    let Some(delivery) = text.and_then(|text| serde_json::from_str::<Delivery>(&text).ok()) else {
        tracing::warn!(
            entry,
            "an unreadable webhook delivery in Redis; dropping it"
        );
        shared.done(&entry).await;
        return;
    };
    if !lock(in_flight).insert(entry.clone()) {
        return;
    }
    let done = Some(Acknowledge {
        shared: shared.clone(),
        in_flight: Arc::clone(in_flight),
        entry,
    });
    sender.spawn(delivery, done).await;
}

/// What to do in Redis once a delivery from the shared queue is done.
struct Acknowledge {
    shared: SharedQueue,
    in_flight: InFlight,
    entry: String,
}

impl Sender {
    /// Sends `delivery` in a task of its own, once one of the permits is free.
    async fn spawn(&self, delivery: Delivery, done: Option<Acknowledge>) {
        let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
            return;
        };
        let sender = self.clone();
        tokio::spawn(async move {
            sender.send(delivery).await;
            if let Some(done) = done {
                done.shared.done(&done.entry).await;
                lock(&done.in_flight).remove(&done.entry);
            }
            drop(permit);
        });
    }

    /// Tries `delivery` until its receiver takes it or the retry time is over.
    async fn send(&self, delivery: Delivery) {
        let Some(endpoint) = self
            .endpoints
            .iter()
            .find(|endpoint| endpoint.url.as_str() == delivery.url)
        else {
            tracing::warn!(url = %delivery.url, id = %delivery.id, "a webhook for a URL this replica has no [[webhooks]] entry for; dropping it");
            return;
        };
        let queued = UNIX_EPOCH + Duration::from_millis(delivery.queued_ms);
        let mut delay = self.policy.first_retry;
        loop {
            let now = SystemTime::now();
            let seconds = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let attempt = self
                .client
                .post(endpoint.url.clone())
                .header("content-type", "application/json")
                .header("webhook-id", &delivery.id)
                .header("webhook-timestamp", seconds.to_string())
                .header(
                    "webhook-signature",
                    endpoint.secret.sign(&delivery.id, seconds, &delivery.body),
                )
                .body(delivery.body.clone())
                .send()
                .await;
            let failure = match attempt {
                Ok(response) if response.status().is_success() => {
                    self.metrics.webhook_delivery("delivered");
                    let latency = SystemTime::now().duration_since(queued).unwrap_or_default();
                    self.metrics.webhook_delivered_after(latency);
                    tracing::debug!(id = %delivery.id, url = %delivery.url, "webhook delivered");
                    return;
                }
                Ok(response) => format!("the receiver answered {}", response.status()),
                Err(error) => format!("{error}"),
            };
            // Full jitter over the upper half: retries of many deliveries spread out.
            let wait = delay.mul_f64(0.5 + fastrand::f64() * 0.5);
            let spent = SystemTime::now().duration_since(queued).unwrap_or_default();
            if spent + wait > self.policy.retry_for {
                self.metrics.webhook_delivery("gave_up");
                tracing::warn!(id = %delivery.id, url = %delivery.url, reason = %failure, "webhook not delivered within [webhook_delivery] retry_for_secs; giving up");
                return;
            }
            self.metrics.webhook_delivery("retried");
            tracing::info!(id = %delivery.id, url = %delivery.url, reason = %failure, retry_in_ms = wait.as_millis() as u64, "webhook attempt failed; retrying");
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(self.policy.max_retry);
        }
    }
}

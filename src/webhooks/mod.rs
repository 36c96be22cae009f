//! Webhooks: when a run ends, or begins waiting for input, each `[[webhooks]]` entry whose events
//! and tools match gets the run POSTed to its URL, signed per Standard Webhooks, at least once.
//!
//! - **Never in a run's way.** The engine tells its observer of each run's end
//!   ([`crate::engine::RunObserver::run_ended`]) and of each time it begins waiting for input
//!   ([`crate::engine::RunObserver::run_waiting`]: `run.input_required`, the open requests in the
//!   run's `pendingInputs`); [`WebhookObserver`] turns them into deliveries and
//!   puts them in a bounded queue without waiting. A full queue drops the delivery with a warning
//!   naming the run and the URL, and counts it (`toolstream_webhook_deliveries_total{outcome=
//!   "dropped"}`).
//! - **At least once** ([`delivery`]): each delivery is tried until a 2xx, with exponential
//!   back-off and jitter between attempts, for a bounded time (`[webhook_delivery]
//!   retry_for_secs`); every attempt carries the same `webhook-id`, so a receiver deduplicates.
//! - **Across replicas** ([`delivery`]): with the Redis run store, deliveries go through a Redis
//!   stream read by a consumer group of every replica; one a replica took and stopped touching
//!   (it died) is claimed by another after `claim_after_secs`.
//! - **No SSRF**: URLs come from the config file only, `http` or `https`.
//!
//! The payload is `{"type": "run.succeeded", "timestamp": "<RFC 3339>", "data": <the Run as
//! proto3 JSON>}`, the envelope Standard Webhooks recommends.

mod delivery;
mod signature;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use crate::config::{WebhookDelivery, WebhookEntry};
use crate::engine::{RunError, RunKind, RunObserver, RunSnapshot, RunState};
use crate::telemetry::metrics::{AGENT_LABEL, Metrics};
use delivery::Delivery;
pub(crate) use signature::Secret;

/// How long deliveries are retried unless configured.
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(3600);
/// The first retry's delay unless configured.
pub const DEFAULT_FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest delay between retries unless configured.
pub const DEFAULT_MAX_RETRY: Duration = Duration::from_secs(300);
/// How long one attempt may take unless configured.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The queue's bound unless configured.
pub const DEFAULT_QUEUE: usize = 10_000;
/// With Redis, how long a delivery may go untouched before another replica takes it, unless
/// configured.
pub const DEFAULT_CLAIM_AFTER: Duration = Duration::from_secs(60);

/// The event a webhook entry subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WebhookEvent {
    /// The run ended with a result.
    Succeeded,
    /// The run failed.
    Failed,
    /// The run was cancelled.
    Cancelled,
    /// The run began waiting for input (RUNNING to INPUT_REQUIRED).
    InputRequired,
}

impl WebhookEvent {
    /// Its name in config and payloads.
    pub fn name(self) -> &'static str {
        match self {
            WebhookEvent::Succeeded => "run.succeeded",
            WebhookEvent::Failed => "run.failed",
            WebhookEvent::Cancelled => "run.cancelled",
            WebhookEvent::InputRequired => "run.input_required",
        }
    }

    fn parse(name: &str) -> Option<WebhookEvent> {
        [
            WebhookEvent::Succeeded,
            WebhookEvent::Failed,
            WebhookEvent::Cancelled,
            WebhookEvent::InputRequired,
        ]
        .into_iter()
        .find(|event| event.name() == name)
    }

    fn of_end(state: RunState) -> Option<WebhookEvent> {
        match state {
            RunState::Succeeded => Some(WebhookEvent::Succeeded),
            RunState::Failed => Some(WebhookEvent::Failed),
            RunState::Cancelled => Some(WebhookEvent::Cancelled),
            RunState::Running | RunState::InputRequired => None,
        }
    }
}

/// Why the webhooks of a config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// An entry is wrong; the message says which and how.
    #[error("[[webhooks]] entry {index} ({url}): {reason}")]
    Entry {
        /// Its place among the entries, from 1.
        index: usize,
        /// Its URL as written.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

/// One receiver: where, with which secret, for which events and tools.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) url: reqwest::Url,
    pub(crate) secret: Secret,
    events: BTreeSet<WebhookEvent>,
    /// `None`: every run.
    tools: Option<BTreeSet<String>>,
}

impl Endpoint {
    fn wants(&self, event: WebhookEvent, run: &RunSnapshot) -> bool {
        let tool = run.kind.tool().unwrap_or(AGENT_LABEL);
        self.events.contains(&event) && self.tools.as_ref().is_none_or(|t| t.contains(tool))
    }
}

/// How deliveries are tried.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub(crate) retry_for: Duration,
    pub(crate) first_retry: Duration,
    pub(crate) max_retry: Duration,
    pub(crate) attempt_timeout: Duration,
    pub(crate) queue: usize,
    pub(crate) claim_after: Duration,
}

/// The webhooks a server sends: its receivers and how it tries them.
#[derive(Debug, Clone)]
pub struct Webhooks {
    endpoints: Arc<[Endpoint]>,
    policy: Policy,
}

impl Webhooks {
    /// The webhooks of `entries` (secrets read from their environment variables now), tried as
    /// `delivery` says.
    pub fn from_config(
        entries: &[WebhookEntry],
        delivery: &WebhookDelivery,
    ) -> Result<Webhooks, WebhookError> {
        let mut endpoints = Vec::with_capacity(entries.len());
        for (n, entry) in entries.iter().enumerate() {
            let invalid = |reason: String| WebhookError::Entry {
                index: n + 1,
                url: entry.url.clone(),
                reason,
            };
            let url = reqwest::Url::parse(&entry.url)
                .map_err(|e| invalid(format!("`url` is not a URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(invalid("`url` must be an http:// or https:// URL".into()));
            }
            if entry.secret_env.is_empty() {
                return Err(invalid(
                    "`secret_env` must name the environment variable holding the signing secret"
                        .into(),
                ));
            }
            let secret = std::env::var(&entry.secret_env).map_err(|_| {
                invalid(format!(
                    "the environment variable {} (secret_env) is not set",
                    entry.secret_env
                ))
            })?;
            let secret = Secret::parse(&secret).map_err(|reason| {
                invalid(format!("{} (secret_env): {reason}", entry.secret_env))
            })?;
            if entry.events.is_empty() {
                return Err(invalid(
                    "`events` is empty: name run.succeeded, run.failed, run.cancelled or \
                     run.input_required"
                        .into(),
                ));
            }
            let mut events = BTreeSet::new();
            for name in &entry.events {
                events.insert(WebhookEvent::parse(name).ok_or_else(|| {
                    invalid(format!(
                        "unknown event {name:?}: use run.succeeded, run.failed, run.cancelled or \
                         run.input_required"
                    ))
                })?);
            }
            let tools = entry.tools.as_ref().and_then(|tools| {
                (!tools.iter().any(|tool| tool == "*")).then(|| tools.iter().cloned().collect())
            });
            endpoints.push(Endpoint {
                url,
                secret,
                events,
                tools,
            });
        }
        let ms =
            |value: Option<u64>, default: Duration| value.map_or(default, Duration::from_millis);
        let secs =
            |value: Option<u64>, default: Duration| value.map_or(default, Duration::from_secs);
        Ok(Webhooks {
            endpoints: endpoints.into(),
            policy: Policy {
                retry_for: secs(delivery.retry_for_secs, DEFAULT_RETRY_FOR),
                first_retry: ms(delivery.first_retry_ms, DEFAULT_FIRST_RETRY),
                max_retry: ms(delivery.max_retry_ms, DEFAULT_MAX_RETRY),
                attempt_timeout: ms(delivery.attempt_timeout_ms, DEFAULT_ATTEMPT_TIMEOUT),
                queue: delivery.queue.unwrap_or(DEFAULT_QUEUE).max(1),
                claim_after: secs(delivery.claim_after_secs, DEFAULT_CLAIM_AFTER),
            },
        })
    }

    /// Whether any webhook is configured.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The observer to give the engine (it tells `inner` everything, as before, and queues
    /// webhooks), and the deliveries it queues, to [`Deliveries::start`] once serving.
    pub fn observe(
        self,
        inner: Arc<dyn RunObserver>,
        metrics: Arc<Metrics>,
    ) -> (Arc<WebhookObserver>, Deliveries) {
        let (queue, receiver) = mpsc::channel(self.policy.queue);
        let observer = Arc::new(WebhookObserver {
            inner,
            endpoints: Arc::clone(&self.endpoints),
            queue,
            metrics: Arc::clone(&metrics),
        });
        let deliveries = Deliveries {
            receiver,
            endpoints: self.endpoints,
            policy: self.policy,
            metrics,
        };
        (observer, deliveries)
    }
}

/// The deliveries an observer queues, not yet being sent.
pub struct Deliveries {
    receiver: mpsc::Receiver<Delivery>,
    endpoints: Arc<[Endpoint]>,
    policy: Policy,
    metrics: Arc<Metrics>,
}

impl Deliveries {
    /// Starts sending them. With `redis` (the run store's), deliveries go through a queue in
    /// Redis that every replica reads: they survive the replica that queued them. Must be
    /// called inside a tokio runtime.
    pub async fn start(self, redis: Option<crate::engine::SharedRedis>) {
        let shared = match redis {
            None => None,
            Some(redis) => {
                match SharedQueue::open(redis.client, &redis.key_prefix, &redis.replica).await {
                    Ok(queue) => Some(queue),
                    Err(error) => {
                        tracing::warn!(%error, "cannot open the webhook queue in Redis; this replica sends its own webhooks, which do not survive it");
                        None
                    }
                }
            }
        };
        tokio::spawn(delivery::deliver(
            self.receiver,
            self.endpoints,
            self.policy,
            self.metrics,
            shared,
        ));
    }
}

pub use delivery::SharedQueue;

/// The engine's observer with webhooks: passes everything on to the observer it wraps (the
/// metrics), and queues a delivery for each receiver that wants a run's end, or its waiting.
pub struct WebhookObserver {
    inner: Arc<dyn RunObserver>,
    endpoints: Arc<[Endpoint]>,
    queue: mpsc::Sender<Delivery>,
    metrics: Arc<Metrics>,
}

impl RunObserver for WebhookObserver {
    fn run_started(&self, kind: &RunKind) {
        self.inner.run_started(kind);
    }

    fn run_finished(&self, kind: &RunKind, outcome: Result<(), &RunError>, elapsed: Duration) {
        self.inner.run_finished(kind, outcome, elapsed);
    }

    fn events_produced(&self, count: u64) {
        self.inner.events_produced(count);
    }

    fn stream_ended(&self, delivered: u64, coalesced: u64) {
        self.inner.stream_ended(delivered, coalesced);
    }

    fn input_waiting(&self, waiting: bool) {
        self.inner.input_waiting(waiting);
    }

    fn input_resolved(&self, waited: Duration) {
        self.inner.input_resolved(waited);
    }

    fn watches_run_ends(&self) -> bool {
        true
    }

    fn run_ended(&self, run: &RunSnapshot) {
        if self.inner.watches_run_ends() {
            self.inner.run_ended(run);
        }
        if let Some(event) = WebhookEvent::of_end(run.state) {
            self.queue(event, run);
        }
    }

    fn watches_run_waits(&self) -> bool {
        self.inner.watches_run_waits()
            || self
                .endpoints
                .iter()
                .any(|endpoint| endpoint.events.contains(&WebhookEvent::InputRequired))
    }

    fn run_waiting(&self, run: &RunSnapshot) {
        if self.inner.watches_run_waits() {
            self.inner.run_waiting(run);
        }
        self.queue(WebhookEvent::InputRequired, run);
    }
}

impl WebhookObserver {
    /// Queues `event` of `run` for each receiver that wants it, without waiting.
    fn queue(&self, event: WebhookEvent, run: &RunSnapshot) {
        let wanting: Vec<&Endpoint> = self
            .endpoints
            .iter()
            .filter(|endpoint| endpoint.wants(event, run))
            .collect();
        if wanting.is_empty() {
            return;
        }
        let body = delivery::payload(event, run, SystemTime::now());
        for endpoint in wanting {
            let delivery = Delivery::new(endpoint.url.as_str(), &body);
            if let Err(error) = self.queue.try_send(delivery) {
                self.metrics.webhook_delivery("dropped");
                tracing::warn!(
                    run_id = %run.run_id,
                    url = %endpoint.url,
                    event = event.name(),
                    reason = match error {
                        mpsc::error::TrySendError::Full(_) => "the queue is full",
                        mpsc::error::TrySendError::Closed(_) => "the sender stopped",
                    },
                    "webhook dropped: raise [webhook_delivery] queue, or check that the receiver \
                     keeps up"
                );
            }
        }
    }
}

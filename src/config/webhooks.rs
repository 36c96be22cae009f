//! `[[webhooks]]` and `[webhook_delivery]`: kept as written; `crate::webhooks` checks them as
//! the server starts.

use serde::Deserialize;

/// One `[[webhooks]]` entry: where to POST which run events (see `docs/configuration.md`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEntry {
    /// The receiver's URL (`http` or `https`).
    pub url: String,
    /// The environment variable holding the signing secret (`whsec_` and base64).
    pub secret_env: String,
    /// Which events: `run.succeeded`, `run.failed`, `run.cancelled`, `run.input_required`.
    pub events: Vec<String>,
    /// Only runs of these tools (`<agent>` for agent runs); absent: every run.
    pub tools: Option<Vec<String>>,
}

/// `[webhook_delivery]`: how hard deliveries are tried. Absent settings take the defaults that
/// `crate::webhooks` states.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookDelivery {
    /// How long a delivery is retried from its first attempt.
    pub retry_for_secs: Option<u64>,
    /// The first retry's delay (doubled each retry, with jitter).
    pub first_retry_ms: Option<u64>,
    /// The longest delay between retries.
    pub max_retry_ms: Option<u64>,
    /// How long one attempt may take.
    pub attempt_timeout_ms: Option<u64>,
    /// Deliveries waiting to be handed to the senders at most; beyond, new ones are dropped.
    pub queue: Option<usize>,
    /// With Redis: a delivery not touched by its replica for this long is taken by another.
    pub claim_after_secs: Option<u64>,
}

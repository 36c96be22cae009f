//! What a backend service attaches to a run it creates: labels to find the run by, and an
//! idempotency key, so that a retried creation answers the run the first attempt started instead
//! of starting another.
//!
//! A key belongs to the run's owner: the store holds one *claim* per (owner, key), naming the run
//! that took the key and a fingerprint of what it was started with (tool, arguments, prompt). The
//! claim is taken atomically in the store ([`super::store::RunStore::claim`]), so that of many
//! racing creations on any replicas exactly one starts a run; the others join it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::RunError;
use super::event::RunStarted;
use super::owner::Owner;
use super::runs::unix_micros;

/// The most labels a run carries.
pub const MAX_LABELS: usize = 16;
/// The longest label key, in bytes.
pub const MAX_LABEL_KEY: usize = 63;
/// The longest label value, in bytes.
pub const MAX_LABEL_VALUE: usize = 256;
/// The longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 256;

/// How long a claim may name a run that no store holds before the key counts as free again: long
/// enough for the claiming replica to record its run (one script call), short enough that a key
/// whose run expired, or whose creator died before recording it, is reusable soon after.
pub(crate) const CLAIM_SETTLE: Duration = Duration::from_secs(10);

/// Checks a run's labels against the limits above.
pub(crate) fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), RunError> {
    if labels.len() > MAX_LABELS {
        return Err(RunError::InvalidArguments(format!(
            "a run takes at most {MAX_LABELS} labels; this one has {}",
            labels.len()
        )));
    }
    for (key, value) in labels {
        check_label_key(key)?;
        if value.len() > MAX_LABEL_VALUE {
            return Err(RunError::InvalidArguments(format!(
                "label {key:?}: its value has {} bytes; at most {MAX_LABEL_VALUE} are allowed",
                value.len()
            )));
        }
    }
    Ok(())
}

/// Checks one label key (also the keys a ListRuns filter names).
pub(crate) fn check_label_key(key: &str) -> Result<(), RunError> {
    let allowed =
        |byte: u8| byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"_.-/".contains(&byte);
    if key.is_empty() || key.len() > MAX_LABEL_KEY || !key.bytes().all(allowed) {
        let shown: String = key.chars().take(80).collect();
        return Err(RunError::InvalidArguments(format!(
            "label {shown:?}: a label key has 1 to {MAX_LABEL_KEY} bytes, each one of a-z 0-9 _ . \
             - /"
        )));
    }
    Ok(())
}

/// Checks an idempotency key's size.
pub(crate) fn check_idempotency_key(key: &str) -> Result<(), RunError> {
    if key.len() > MAX_IDEMPOTENCY_KEY {
        let mut end = 40;
        while !key.is_char_boundary(end) {
            end -= 1;
        }
        return Err(RunError::InvalidArguments(format!(
            "idempotency key {:?}… has {} bytes; at most {MAX_IDEMPOTENCY_KEY} are allowed",
            &key[..end],
            key.len()
        )));
    }
    Ok(())
}

/// The claim a new run makes on its owner's idempotency key.
#[derive(Debug, Clone)]
pub(crate) struct KeyClaim {
    /// Where the claim lives: a digest of the owner and the key, so that neither leaks into
    /// the store's key names and every slot has the same size.
    pub(crate) slot: String,
    /// What the claim holds (see [`HeldClaim`]).
    pub(crate) held: HeldClaim,
}

/// What a claim holds: the run that took the key, what it was started with, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeldClaim {
    pub(crate) run_id: Arc<str>,
    pub(crate) fingerprint: String,
    pub(crate) claimed_us: u64,
}

impl HeldClaim {
    /// The claim as the store keeps it: `<run id> <fingerprint> <µs since the epoch>`.
    pub(crate) fn encode(&self) -> String {
        format!("{} {} {}", self.run_id, self.fingerprint, self.claimed_us)
    }

    /// A claim read back from the store.
    pub(crate) fn decode(text: &str) -> Option<HeldClaim> {
        let mut parts = text.split(' ');
        let run_id = parts.next()?;
        let fingerprint = parts.next()?;
        let claimed_us = parts.next()?.parse().ok()?;
        Some(HeldClaim {
            run_id: Arc::from(run_id),
            fingerprint: fingerprint.to_owned(),
            claimed_us,
        })
    }

    /// Whether the claim is older than [`CLAIM_SETTLE`].
    pub(crate) fn settled(&self) -> bool {
        let settle = u64::try_from(CLAIM_SETTLE.as_micros()).unwrap_or(u64::MAX);
        unix_micros(SystemTime::now()).saturating_sub(self.claimed_us) > settle
    }
}

/// How a claim went.
#[derive(Debug, Clone)]
pub(crate) enum ClaimOutcome {
    /// The key was free: it is now the new run's.
    Claimed,
    /// The key is held by another claim (possibly for a run that ended long ago).
    Held(HeldClaim),
}

/// The slot of `owner`'s `key`: hex SHA-256 of both.
pub(crate) fn claim_slot(owner: Option<&Owner>, key: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(owner.map_or("", Owner::as_str).as_bytes());
    digest.update([0u8]);
    digest.update(key.as_bytes());
    hex(&digest.finalize())
}

/// What a run was asked to do, as a digest: a key reused for another request is refused.
pub(crate) fn fingerprint(started: &RunStarted) -> String {
    let mut text = String::new();
    // As the first releases wrote it (the claims of a shared store outlive an upgrade): the
    // kind's word, then the tool's name (empty for an agent).
    text.push_str(if started.kind.is_agent() {
        "agent\n"
    } else {
        "tool\n"
    });
    text.push_str(started.kind.tool_name());
    text.push('\n');
    canonical_json(
        started.arguments.as_ref().unwrap_or(&Value::Null),
        &mut text,
    );
    text.push('\n');
    text.push_str(&started.prompt);
    hex(&Sha256::digest(text.as_bytes()))
}

/// `value` as JSON with every object's keys sorted, so that one request's fingerprint does not
/// depend on the order its client wrote the keys in.
fn canonical_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(object) => {
            let mut entries: Vec<_> = object.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (n, (key, value)) in entries.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical_json(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The error for a key reused for another request.
pub(crate) fn key_conflict(key: &str, run_id: &str) -> RunError {
    RunError::FailedPrecondition(format!(
        "idempotency key {key:?} was used for run {run_id} with another tool, other arguments or \
         another prompt; use a new key for a different request"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::RunKind;
    use serde_json::json;

    #[test]
    fn label_limits_name_the_label() {
        let mut labels = BTreeMap::new();
        labels.insert("team/a.b-c_9".to_owned(), "x".repeat(MAX_LABEL_VALUE));
        assert!(check_labels(&labels).is_ok());
        labels.insert("Bad".to_owned(), "v".to_owned());
        let error = check_labels(&labels)
            .expect_err("an upper-case key")
            .to_string();
        assert!(error.contains("\"Bad\""), "{error}");
        labels.remove("Bad");
        labels.insert("long".to_owned(), "x".repeat(MAX_LABEL_VALUE + 1));
        let error = check_labels(&labels).expect_err("a long value").to_string();
        assert!(error.contains("\"long\""), "{error}");
        let many: BTreeMap<_, _> = (0..=MAX_LABELS)
            .map(|n| (format!("k{n}"), String::new()))
            .collect();
        assert!(check_labels(&many).is_err());
    }

    #[test]
    fn a_fingerprint_ignores_key_order_but_not_values() {
        let started = |arguments: Value| RunStarted {
            arguments: Some(arguments),
            ..RunStarted::new(RunKind::tool_run("t"))
        };
        let a = fingerprint(&started(json!({"a": 1, "b": {"c": [1, 2], "d": null}})));
        let b = fingerprint(&started(json!({"b": {"d": null, "c": [1, 2]}, "a": 1})));
        let c = fingerprint(&started(json!({"a": 2, "b": {"c": [1, 2], "d": null}})));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn a_fingerprint_digests_the_text_earlier_releases_digested() {
        // Claims in a shared store outlive an upgrade: a retry reaching a newer replica must
        // find the same fingerprint.
        let tool = RunStarted {
            arguments: Some(json!({"b": 1, "a": [true]})),
            ..RunStarted::new(RunKind::tool_run("ticks"))
        };
        let agent = RunStarted {
            prompt: "hello".to_owned(),
            ..RunStarted::new(RunKind::Agent)
        };
        let digest = |text: &str| hex(&Sha256::digest(text.as_bytes()));
        assert_eq!(
            fingerprint(&tool),
            digest("tool\nticks\n{\"a\":[true],\"b\":1}\n")
        );
        assert_eq!(fingerprint(&agent), digest("agent\n\nnull\nhello"));
    }

    #[test]
    fn a_claim_reads_back_as_written() {
        let held = HeldClaim {
            run_id: Arc::from("0123456789abcdef0123456789abcdef"),
            fingerprint: "f".repeat(64),
            claimed_us: 42,
        };
        assert_eq!(HeldClaim::decode(&held.encode()), Some(held));
        assert_eq!(HeldClaim::decode("garbage"), None);
    }
}

//! The handle through which a tool reports progress.

use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::time::Instant;

/// One progress report: the seed's `{"progress": 0.4, "status": "...", ...extra}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProgressUpdate {
    /// Fraction done, 0.0 to 1.0; `None` when only a status is known.
    pub fraction: Option<f64>,
    /// What the tool is doing now.
    pub status: Option<String>,
    /// Every other key the tool reported.
    pub data: Map<String, Value>,
}

impl ProgressUpdate {
    /// Splits a reported JSON object into fraction, status and extra data. A `progress` that is
    /// not a number, or a `status` that is not a string, stays in `data` untouched.
    pub fn from_object(mut object: Map<String, Value>) -> Self {
        let fraction = match object.get("progress") {
            Some(Value::Number(n)) => {
                let f = n.as_f64();
                object.remove("progress");
                f
            }
            Some(Value::Null) => {
                object.remove("progress");
                None
            }
            _ => None,
        };
        let status = match object.remove("status") {
            Some(Value::String(s)) => Some(s),
            Some(Value::Null) | None => None,
            Some(other) => {
                object.insert("status".to_owned(), other);
                None
            }
        };
        ProgressUpdate {
            fraction,
            status,
            data: object,
        }
    }
}

/// Where progress goes. The engine implements it for each run (and each tool call of an agent).
pub trait ProgressSink: Send + Sync + 'static {
    /// Accepts one update. Must never block: a slow client must not slow the tool.
    fn report(&self, update: ProgressUpdate);
}

/// A cheap, cloneable handle a tool reports its progress through. Reporting never blocks and never
/// fails: when the client reads slower than the tool reports, older unsent progress is replaced.
///
/// It also tells the tool when its run must end ([`deadline`](Self::deadline)), for a tool that
/// passes work on and should pass the deadline on with it.
#[derive(Clone)]
pub struct Progress {
    sink: Arc<dyn ProgressSink>,
    deadline: Option<Instant>,
}

impl Progress {
    /// A handle that sends its updates to `sink`, with no deadline.
    pub fn new(sink: Arc<dyn ProgressSink>) -> Self {
        Progress {
            sink,
            deadline: None,
        }
    }

    /// The same handle, telling the tool its run ends at `deadline` (`None`: no deadline).
    pub fn with_deadline(self, deadline: Option<Instant>) -> Self {
        Progress { deadline, ..self }
    }

    /// When the run ends whether or not the tool is done, if it has a deadline. The engine
    /// enforces it (the tool's future is dropped then); a tool only reads it to tell what it
    /// calls, as a remote tool sends the time left as the call's `grpc-timeout`.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// A handle that drops every update, for running a tool outside a run.
    pub fn discard() -> Self {
        struct Discard;
        impl ProgressSink for Discard {
            fn report(&self, _: ProgressUpdate) {}
        }
        Progress::new(Arc::new(Discard))
    }

    /// Reports a fraction done (0.0–1.0) and a status line.
    pub fn report(&self, fraction: f64, status: impl Into<String>) {
        self.update(ProgressUpdate {
            fraction: Some(fraction),
            status: Some(status.into()),
            data: Map::new(),
        });
    }

    /// Reports a fraction done with no status.
    pub fn fraction(&self, fraction: f64) {
        self.update(ProgressUpdate {
            fraction: Some(fraction),
            ..ProgressUpdate::default()
        });
    }

    /// Reports a status line with no fraction (indeterminate progress).
    pub fn status(&self, status: impl Into<String>) {
        self.update(ProgressUpdate {
            status: Some(status.into()),
            ..ProgressUpdate::default()
        });
    }

    /// Reports a full update, extra data included.
    pub fn update(&self, update: ProgressUpdate) {
        self.sink.report(update);
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn from_object_splits_progress_status_and_data() {
        let Value::Object(object) = json!({"progress": 0.5, "status": "half", "items": 3}) else {
            unreachable!()
        };
        let update = ProgressUpdate::from_object(object);
        assert_eq!(update.fraction, Some(0.5));
        assert_eq!(update.status.as_deref(), Some("half"));
        assert_eq!(update.data.get("items"), Some(&json!(3)));
        assert!(!update.data.contains_key("progress"));
    }

    #[test]
    fn from_object_keeps_mistyped_keys_as_data() {
        let Value::Object(object) = json!({"progress": "lots", "status": 7}) else {
            unreachable!()
        };
        let update = ProgressUpdate::from_object(object);
        assert_eq!(update.fraction, None);
        assert_eq!(update.status, None);
        assert_eq!(update.data.get("progress"), Some(&json!("lots")));
        assert_eq!(update.data.get("status"), Some(&json!(7)));
    }
}

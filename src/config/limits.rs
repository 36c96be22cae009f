//! `[limits]`, with the run limits of `[runs]` and `[auth]`: the engine's [`Limits`], built and
//! checked here.

use std::time::Duration;

use serde::Deserialize;

use super::auth::AuthFile;
use super::runs::RunsFile;
use super::{ConfigError, Limits, Overrides};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitsFile {
    pub(super) max_concurrent_runs: Option<usize>,
    pub(super) event_buffer: Option<usize>,
    pub(super) grace_period_secs: Option<u64>,
    pub(super) max_message_bytes: Option<usize>,
    pub(super) max_concurrent_streams: Option<u32>,
}

/// The most runs the engine can count (tokio's `Semaphore::MAX_PERMITS`).
const MAX_CONCURRENT_RUNS: usize = tokio::sync::Semaphore::MAX_PERMITS;

/// The engine's limits: the flags' over the file's over [`Limits::default`]. A per-principal
/// limit of 0 is refused here; the rest by [`check`], once the run store is read (so that errors
/// come in the order the file's sections were always checked).
pub(super) fn limits(
    overrides: &Overrides,
    section: &LimitsFile,
    runs: &RunsFile,
    auth: &AuthFile,
) -> Result<Limits, ConfigError> {
    let defaults = Limits::default();
    let limits = Limits {
        max_concurrent_runs: overrides
            .max_concurrent_runs
            .or(section.max_concurrent_runs)
            .unwrap_or(defaults.max_concurrent_runs),
        event_buffer: section.event_buffer.unwrap_or(defaults.event_buffer),
        grace_period: overrides
            .grace_period_secs
            .or(section.grace_period_secs)
            .map_or(defaults.grace_period, Duration::from_secs),
        max_message_bytes: overrides
            .max_message_bytes
            .or(section.max_message_bytes)
            .unwrap_or(defaults.max_message_bytes),
        retention: runs
            .retention_secs
            .map_or(defaults.retention, Duration::from_secs),
        max_runs: runs.max_runs.unwrap_or(defaults.max_runs),
        max_events_per_run: runs
            .max_events_per_run
            .unwrap_or(defaults.max_events_per_run),
        max_live_calls_per_run: runs
            .max_live_calls_per_run
            .unwrap_or(defaults.max_live_calls_per_run),
        max_runs_per_owner: auth.max_runs_per_principal,
    };
    if limits.max_runs_per_owner == Some(0) {
        return Err(ConfigError::Invalid {
            key: "auth.max_runs_per_principal",
            message: "must be at least 1 (leave it out for no per-principal limit)".into(),
        });
    }
    Ok(limits)
}

/// `[limits] max_concurrent_streams`, a setting of the listener's HTTP/2 (`default`: when the
/// file has none).
pub(super) fn max_concurrent_streams(section: &LimitsFile, default: u32) -> u32 {
    section.max_concurrent_streams.unwrap_or(default)
}

/// Refuses limits the server cannot run under (`max_concurrent_streams` is the listener's).
pub(super) fn check(limits: &Limits, max_concurrent_streams: u32) -> Result<(), ConfigError> {
    if limits.max_events_per_run < 2 {
        return Err(ConfigError::Invalid {
            key: "runs.max_events_per_run",
            message: "must be at least 2 (the started event and the last one)".into(),
        });
    }
    if limits.max_live_calls_per_run == 0 {
        return Err(ConfigError::Invalid {
            key: "runs.max_live_calls_per_run",
            message: "must be at least 1".into(),
        });
    }
    // The engine counts runs with a tokio semaphore, which holds at most MAX_PERMITS.
    if !(1..=MAX_CONCURRENT_RUNS).contains(&limits.max_concurrent_runs) {
        return Err(ConfigError::Invalid {
            key: "limits.max_concurrent_runs",
            message: format!(
                "must be between 1 and {MAX_CONCURRENT_RUNS}, not {} (set by --max-runs, \
                 TOOLSTREAM_MAX_RUNS or [limits] max_concurrent_runs)",
                limits.max_concurrent_runs
            ),
        });
    }
    // No stream at all would mean no call is ever served: the server would seem to hang.
    if max_concurrent_streams == 0 {
        return Err(ConfigError::Invalid {
            key: "limits.max_concurrent_streams",
            message: format!("must be between 1 and {}, not 0", u32::MAX),
        });
    }
    if limits.event_buffer == 0 {
        return Err(ConfigError::Invalid {
            key: "limits.event_buffer",
            message: "must be at least 1".into(),
        });
    }
    if limits.max_message_bytes < 1024 {
        return Err(ConfigError::Invalid {
            key: "limits.max_message_bytes",
            message: "must be at least 1024".into(),
        });
    }
    Ok(())
}

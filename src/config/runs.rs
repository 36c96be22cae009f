//! `[runs]` (and `--store`): where runs are kept, as the engine's [`StoreConfig`], read and
//! checked here. (Its run limits are in [`super::limits`].)

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::paths::{read_pem, relative_to};
use crate::engine::{DEFAULT_KEY_PREFIX, DEFAULT_LEASE, RedisClientCert, StoreConfig};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunsFile {
    pub(super) retention_secs: Option<u64>,
    pub(super) max_runs: Option<usize>,
    pub(super) max_events_per_run: Option<usize>,
    pub(super) max_live_calls_per_run: Option<usize>,
    pub(super) store: Option<String>,
    pub(super) key_prefix: Option<String>,
    pub(super) lease_secs: Option<u64>,
    pub(super) replica_name: Option<String>,
    pub(super) redis_ca: Option<PathBuf>,
    pub(super) redis_cert: Option<PathBuf>,
    pub(super) redis_key: Option<PathBuf>,
    pub(super) redis_password_env: Option<String>,
    pub(super) redis_cluster: Option<bool>,
}

/// The run store: the flag's URL over the file's over memory, with the file's Redis settings
/// (paths relative to `base_dir`, the password read from the environment), checked.
pub(super) fn store(
    flag: Option<String>,
    file: RunsFile,
    base_dir: Option<&Path>,
) -> Result<StoreConfig, ConfigError> {
    let store = StoreConfig {
        url: flag
            .or(file.store)
            .unwrap_or_else(|| StoreConfig::default().url),
        cluster: file.redis_cluster.unwrap_or(false),
        key_prefix: file
            .key_prefix
            .unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_owned()),
        lease: file.lease_secs.map_or(DEFAULT_LEASE, Duration::from_secs),
        replica_name: file.replica_name,
        ca_pem: read_pem(
            "runs.redis_ca",
            file.redis_ca.map(|p| relative_to(base_dir, p)),
        )?,
        client_cert: client_cert(file.redis_cert, file.redis_key, base_dir)?,
        password: password(file.redis_password_env)?,
    };
    store.check()?;
    Ok(store)
}

/// `redis_cert` and `redis_key`, read: both or neither.
fn client_cert(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    base_dir: Option<&Path>,
) -> Result<Option<RedisClientCert>, ConfigError> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(RedisClientCert {
            cert_pem: read_pem("runs.redis_cert", Some(relative_to(base_dir, cert)))?
                .unwrap_or_default(),
            key_pem: read_pem("runs.redis_key", Some(relative_to(base_dir, key)))?
                .unwrap_or_default(),
        })),
        _ => Err(ConfigError::Invalid {
            key: "runs.redis_cert",
            message: "redis_cert and redis_key go together; give both or neither".into(),
        }),
    }
}

/// The password in the environment variable `redis_password_env` names, when it names one.
fn password(variable: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(variable) = variable else {
        return Ok(None);
    };
    match std::env::var(&variable) {
        Ok(password) if !password.is_empty() => Ok(Some(password)),
        _ => Err(ConfigError::Invalid {
            key: "runs.redis_password_env",
            message: format!("names {variable:?}, which is not set or empty in the environment"),
        }),
    }
}

// The store's settings are the engine's (`engine::StoreConfig`); checking what the file, the
// environment and the flags gave is configuration's.
impl StoreConfig {
    fn check(&self) -> Result<(), ConfigError> {
        const SCHEMES: [&str; 6] = [
            "redis://",
            "rediss://",
            "redis+unix://",
            "unix://",
            "redis+cluster://",
            "rediss+cluster://",
        ];
        if !self.is_memory() && !SCHEMES.iter().any(|scheme| self.url.starts_with(scheme)) {
            return Err(ConfigError::Invalid {
                key: "runs.store",
                message: format!(
                    "{:?} is neither \"memory\" nor a Redis URL like redis://127.0.0.1:6379/0 \
                     or rediss://host:6380/0 (set by --store, TOOLSTREAM_STORE or [runs] store)",
                    self.redacted_url()
                ),
            });
        }
        if self.is_cluster() {
            let unix = self.url.starts_with("redis+unix://") || self.url.starts_with("unix://");
            if self.is_memory() || unix || self.cluster_nodes().is_empty() {
                return Err(ConfigError::Invalid {
                    key: "runs.redis_cluster",
                    message: format!(
                        "a Redis Cluster is reached over TCP: give its nodes as \
                         redis+cluster://host:port,host:port (or rediss+cluster://), not {:?}",
                        self.redacted_url()
                    ),
                });
            }
            // A run's keys carry its id as their hash tag; braces in the prefix would be the tag
            // instead, and put every key of the fleet in one slot.
            if self.key_prefix.contains(['{', '}']) {
                return Err(ConfigError::Invalid {
                    key: "runs.key_prefix",
                    message: "must not contain { or } with Redis Cluster (keys are hash-tagged \
                              by run, replica and principal)"
                        .into(),
                });
            }
        }
        if !self.is_tls() && (self.ca_pem.is_some() || self.client_cert.is_some()) {
            return Err(ConfigError::Invalid {
                key: "runs.redis_ca",
                message: format!(
                    "redis_ca, redis_cert and redis_key are for TLS, but the store {:?} is not a \
                     rediss:// URL",
                    self.redacted_url()
                ),
            });
        }
        if self.is_memory() && self.password.is_some() {
            return Err(ConfigError::Invalid {
                key: "runs.redis_password_env",
                message: "is set, but the run store is \"memory\"".into(),
            });
        }
        if self.lease.is_zero() {
            return Err(ConfigError::Invalid {
                key: "runs.lease_secs",
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

//! Server configuration: a TOML file, overridden by `TOOLSTREAM_*` environment variables, overridden
//! by command-line flags (clap reads both of those into [`Overrides`]).
//!
//! ```toml
//! listen = "127.0.0.1:50051"
//! root = "/srv/data"
//! log_format = "json"          # or "human"
//!
//! [limits]
//! max_concurrent_runs = 16384
//! grace_period_secs = 30
//! max_message_bytes = 4194304
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Default address: loopback only, so a fresh install exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its line.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("invalid setting {key}: {message}")]
    Invalid {
        /// The setting.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// How logs are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// The config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    listen: Option<String>,
    root: Option<PathBuf>,
    log_format: Option<LogFormat>,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    model: ModelFile,
    /// `[[tools]]` entries, checked by the tool sources that read them.
    #[serde(default)]
    tools: Vec<toml::Table>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    max_concurrent_runs: Option<usize>,
    event_buffer: Option<usize>,
    grace_period_secs: Option<u64>,
    max_message_bytes: Option<usize>,
    max_concurrent_streams: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    url: Option<String>,
    name: Option<String>,
    max_steps: Option<u32>,
    max_parallel_calls: Option<usize>,
    /// The name of the environment variable holding the API key (the key itself never goes in
    /// the file).
    api_key_env: Option<String>,
}

/// The language model behind RunAgent.
#[derive(Clone, Default)]
pub struct ModelConfig {
    /// Base URL of an OpenAI-compatible API, ending in `/v1`; `None` disables RunAgent.
    pub url: Option<String>,
    /// The model used when a request names none.
    pub name: Option<String>,
    /// Sent as a bearer token; never logged.
    pub api_key: Option<String>,
    /// Step limit used when a request sets none.
    pub max_steps: Option<u32>,
    /// Tool calls of one agent run in flight at once; `None` for the default (8).
    pub max_parallel_calls: Option<usize>,
}

impl std::fmt::Debug for ModelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelConfig")
            .field("url", &self.url)
            .field("name", &self.name)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("max_steps", &self.max_steps)
            .field("max_parallel_calls", &self.max_parallel_calls)
            .finish()
    }
}

/// Settings given on the command line or in the environment; each wins over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen` / `TOOLSTREAM_LISTEN`.
    pub listen: Option<String>,
    /// `--root` / `TOOLSTREAM_ROOT`.
    pub root: Option<PathBuf>,
    /// `--log-format` / `TOOLSTREAM_LOG_FORMAT`.
    pub log_format: Option<LogFormat>,
    /// `--max-runs` / `TOOLSTREAM_MAX_RUNS`.
    pub max_concurrent_runs: Option<usize>,
    /// `--grace-period-secs` / `TOOLSTREAM_GRACE_PERIOD_SECS`.
    pub grace_period_secs: Option<u64>,
    /// `--max-message-bytes` / `TOOLSTREAM_MAX_MESSAGE_BYTES`.
    pub max_message_bytes: Option<usize>,
    /// `--model-url` / `TOOLSTREAM_MODEL_URL`.
    pub model_url: Option<String>,
    /// `--model` / `TOOLSTREAM_MODEL`.
    pub model: Option<String>,
    /// `TOOLSTREAM_API_KEY`.
    pub api_key: Option<String>,
    /// `--max-steps` / `TOOLSTREAM_MAX_STEPS`.
    pub max_steps: Option<u32>,
}

/// Limits of the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Runs in progress at once.
    pub max_concurrent_runs: usize,
    /// Events queued per run for a client that reads slower than the run produces: this many
    /// progress events before progress is coalesced, and this many other events before their
    /// producer waits.
    pub event_buffer: usize,
    /// How long running runs may finish after a shutdown signal.
    pub grace_period: Duration,
    /// Largest message accepted or sent.
    pub max_message_bytes: usize,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent_runs: 16_384,
            event_buffer: 64,
            grace_period: Duration::from_secs(30),
            max_message_bytes: 4 * 1024 * 1024,
            max_concurrent_streams: 16_384,
        }
    }
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory file tools are confined to.
    pub root: PathBuf,
    /// Log format.
    pub log_format: LogFormat,
    /// Limits.
    pub limits: Limits,
    /// The model behind RunAgent.
    pub model: ModelConfig,
    /// `[[tools]]` entries of the config file, in order.
    pub tools: Vec<toml::Table>,
    /// The config file, when one was given (relative paths in it are relative to its directory).
    pub path: Option<PathBuf>,
}

impl Config {
    /// Reads `path` (when given) and applies `overrides` on top.
    pub fn load(path: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigError> {
        let file = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::parse(path, &text)?
            }
            None => ConfigFile::default(),
        };
        let defaults = Limits::default();
        let listen_text = overrides
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen_text
            .parse::<SocketAddr>()
            .map_err(|e| ConfigError::Invalid {
                key: "listen",
                message: format!("{listen_text:?} is not an address like 127.0.0.1:50051 ({e})"),
            })?;
        let root = match overrides.root.or(file.root) {
            Some(root) => root,
            None => std::env::current_dir().map_err(|e| ConfigError::Invalid {
                key: "root",
                message: format!("no root given and the working directory is unknown: {e}"),
            })?,
        };
        let limits = Limits {
            max_concurrent_runs: overrides
                .max_concurrent_runs
                .or(file.limits.max_concurrent_runs)
                .unwrap_or(defaults.max_concurrent_runs),
            event_buffer: file.limits.event_buffer.unwrap_or(defaults.event_buffer),
            grace_period: overrides
                .grace_period_secs
                .or(file.limits.grace_period_secs)
                .map_or(defaults.grace_period, Duration::from_secs),
            max_message_bytes: overrides
                .max_message_bytes
                .or(file.limits.max_message_bytes)
                .unwrap_or(defaults.max_message_bytes),
            max_concurrent_streams: file
                .limits
                .max_concurrent_streams
                .unwrap_or(defaults.max_concurrent_streams),
        };
        if limits.max_concurrent_runs == 0 {
            return Err(ConfigError::Invalid {
                key: "limits.max_concurrent_runs",
                message: "must be at least 1".into(),
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
        let api_key = overrides.api_key.or_else(|| {
            file.model
                .api_key_env
                .as_deref()
                .and_then(|name| std::env::var(name).ok())
        });
        let model = ModelConfig {
            url: overrides.model_url.or(file.model.url),
            name: overrides.model.or(file.model.name),
            api_key: api_key.filter(|key| !key.is_empty()),
            max_steps: overrides.max_steps.or(file.model.max_steps),
            max_parallel_calls: file.model.max_parallel_calls,
        };
        if model.max_steps == Some(0) {
            return Err(ConfigError::Invalid {
                key: "model.max_steps",
                message: "must be at least 1".into(),
            });
        }
        if model.max_parallel_calls == Some(0) {
            return Err(ConfigError::Invalid {
                key: "model.max_parallel_calls",
                message: "must be at least 1".into(),
            });
        }
        Ok(Config {
            listen,
            root,
            log_format: overrides.log_format.or(file.log_format).unwrap_or_default(),
            limits,
            model,
            tools: file.tools,
            path: path.map(Path::to_owned),
        })
    }

    fn parse(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("toolstream.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:7000\"\n[limits]\nmax_concurrent_runs = 5\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), Overrides::default()).unwrap();
        assert_eq!(config.listen.port(), 7000);
        assert_eq!(config.limits.max_concurrent_runs, 5);

        let overrides = Overrides {
            listen: Some("127.0.0.1:7001".into()),
            ..Overrides::default()
        };
        let config = Config::load(Some(&path), overrides).unwrap();
        assert_eq!(config.listen.port(), 7001);
    }

    #[test]
    fn unknown_keys_are_reported_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "listn = \"x\"\n").unwrap();
        let err = Config::load(Some(&path), Overrides::default()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("bad.toml") && message.contains("listn"),
            "{message}"
        );
    }

    #[test]
    fn max_parallel_calls_is_read_and_zero_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("toolstream.toml");
        std::fs::write(&path, "[model]\nmax_parallel_calls = 3\n").unwrap();
        let config = Config::load(Some(&path), Overrides::default()).unwrap();
        assert_eq!(config.model.max_parallel_calls, Some(3));

        std::fs::write(&path, "[model]\nmax_parallel_calls = 0\n").unwrap();
        let message = Config::load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains("model.max_parallel_calls"), "{message}");
    }
}

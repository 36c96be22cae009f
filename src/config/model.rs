//! `[model]` (and the model flags): the language model behind RunAgent.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::paths::relative_to;
use super::{ConfigError, Overrides};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ModelFile {
    pub(super) url: Option<String>,
    pub(super) name: Option<String>,
    pub(super) max_steps: Option<u32>,
    pub(super) max_parallel_calls: Option<usize>,
    #[serde(default)]
    pub(super) approval_required: Vec<String>,
    /// The name of the environment variable holding the API key (the key itself never goes in
    /// the file).
    pub(super) api_key_env: Option<String>,
    /// A file holding the API key, relative to the config file's directory.
    pub(super) api_key_file: Option<PathBuf>,
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
    /// Tools whose calls in agent runs wait for a person's approval (`"*"`: every tool).
    pub approval_required: Vec<String>,
}

impl std::fmt::Debug for ModelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelConfig")
            .field("url", &self.url)
            .field("name", &self.name)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("max_steps", &self.max_steps)
            .field("max_parallel_calls", &self.max_parallel_calls)
            .field("approval_required", &self.approval_required)
            .finish()
    }
}

/// The model: the flags' over the file's. Takes the model flags out of `overrides`.
pub(super) fn model(
    overrides: &mut Overrides,
    file: ModelFile,
    base_dir: Option<&Path>,
) -> Result<ModelConfig, ConfigError> {
    let api_key = match (overrides.api_key.take(), overrides.api_key_file.take()) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Invalid {
                key: "api_key",
                message: "--api-key (TOOLSTREAM_API_KEY) and --api-key-file \
                          (TOOLSTREAM_API_KEY_FILE) are both set; give one"
                    .into(),
            });
        }
        (Some(key), None) => Some(key),
        (None, Some(path)) => Some(read_api_key("--api-key-file", &path)?),
        (None, None) => match (file.api_key_file, file.api_key_env) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid {
                    key: "model.api_key_file",
                    message: "and model.api_key_env are both set; give one".into(),
                });
            }
            (Some(path), None) => Some(read_api_key(
                "model.api_key_file",
                &relative_to(base_dir, path),
            )?),
            (None, Some(name)) => std::env::var(name).ok(),
            (None, None) => None,
        },
    };
    let model = ModelConfig {
        url: overrides.model_url.take().or(file.url),
        name: overrides.model.take().or(file.name),
        api_key: api_key.filter(|key| !key.is_empty()),
        max_steps: overrides.max_steps.or(file.max_steps),
        max_parallel_calls: file.max_parallel_calls,
        approval_required: file.approval_required,
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
    Ok(model)
}

/// Reads the API key from the file at `path` (the setting `key` named it); surrounding whitespace,
/// such as the final newline, is not part of the key.
fn read_api_key(key: &'static str, path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
        key,
        message: format!("cannot read the API key file {}: {e}", path.display()),
    })?;
    let api_key = text.trim();
    if api_key.is_empty() {
        return Err(ConfigError::Invalid {
            key,
            message: format!("the API key file {} is empty", path.display()),
        });
    }
    Ok(api_key.to_owned())
}

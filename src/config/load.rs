//! [`Config::load`]: the file read, then each section resolved with its flags over it, in the
//! order the sections are checked.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::auth::{AuthFile, auth_config};
use super::http::{HttpConfig, HttpFile, http_config};
use super::limits::LimitsFile;
use super::mcp::{McpFile, mcp_config};
use super::model::ModelFile;
use super::paths::relative_to;
use super::runs::RunsFile;
use super::tls::ServerFile;
use super::{
    Config, ConfigError, LogFormat, Overrides, WebhookDelivery, WebhookEntry, limits, listen,
    model, runs, tls,
};

/// The config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigFile {
    pub(super) listen: Option<String>,
    pub(super) root: Option<PathBuf>,
    pub(super) log_format: Option<LogFormat>,
    #[serde(default)]
    pub(super) limits: LimitsFile,
    #[serde(default)]
    pub(super) model: ModelFile,
    #[serde(default)]
    pub(super) runs: RunsFile,
    #[serde(default)]
    pub(super) http: HttpFile,
    #[serde(default)]
    pub(super) mcp: McpFile,
    #[serde(default)]
    pub(super) server: ServerFile,
    #[serde(default)]
    pub(super) auth: AuthFile,
    /// `[[tools]]` entries, checked by the tool sources that read them.
    #[serde(default)]
    pub(super) tools: Vec<toml::Table>,
    /// `[[webhooks]]` entries, checked by `crate::webhooks` as the server starts.
    #[serde(default)]
    pub(super) webhooks: Vec<WebhookEntry>,
    #[serde(default)]
    pub(super) webhook_delivery: WebhookDelivery,
}

impl Config {
    /// Reads `path` (when given) and applies `overrides` on top.
    pub fn load(path: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigError> {
        let mut overrides = overrides;
        let file = read(path)?;
        let base_dir = path.and_then(Path::parent);
        let listen = listen::address(overrides.listen.take(), file.listen)?;
        let root = listen::root(overrides.root.take(), file.root, base_dir)?;
        let limits = limits::limits(&overrides, &file.limits, &file.runs, &file.auth)?;
        let store = runs::store(overrides.store.take(), file.runs, base_dir)?;
        let max_concurrent_streams = limits::max_concurrent_streams(
            &file.limits,
            HttpConfig::default().max_concurrent_streams,
        );
        limits::check(&limits, max_concurrent_streams)?;
        let model = model::model(&mut overrides, file.model, base_dir)?;
        let mut http = http_config(file.http)?;
        http.max_concurrent_streams = max_concurrent_streams;
        http.mcp = mcp_config(file.mcp)?;
        let tls = tls::tls(&mut overrides, file.server, base_dir)?;
        let auth = auth_config(file.auth, tls.as_ref())?;
        Ok(Config {
            listen,
            root,
            log_format: overrides.log_format.or(file.log_format).unwrap_or_default(),
            limits,
            model,
            http,
            tls,
            auth,
            tools: file.tools,
            store,
            webhooks: file.webhooks,
            webhook_delivery: file.webhook_delivery,
            path: path.map(Path::to_owned),
        })
    }

    /// The directory relative paths in the config file are relative to: the file's directory,
    /// or `.` when there is no file.
    pub fn base_dir(&self) -> PathBuf {
        relative_to(
            self.path.as_deref().and_then(Path::parent),
            PathBuf::from("."),
        )
    }
}

/// The file at `path` as written; with no file, every setting absent.
fn read(path: Option<&Path>) -> Result<ConfigFile, ConfigError> {
    let Some(path) = path else {
        return Ok(ConfigFile::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

//! The top-level keys: where the server listens, the directory file tools are confined to, and
//! how logs are written.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;
use super::paths::relative_to;

/// Default address: loopback only, so a fresh install exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

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

/// The address to listen on: the flag's, else the file's, else [`DEFAULT_LISTEN`].
pub(super) fn address(
    flag: Option<String>,
    file: Option<String>,
) -> Result<SocketAddr, ConfigError> {
    let text = flag.or(file).unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    text.parse::<SocketAddr>()
        .map_err(|e| ConfigError::Invalid {
            key: "listen",
            message: format!("{text:?} is not an address like 127.0.0.1:50051 ({e})"),
        })
}

/// The directory file tools are confined to: a flag's is relative to the working directory, the
/// file's to the file; neither is the working directory.
pub(super) fn root(
    flag: Option<PathBuf>,
    file: Option<PathBuf>,
    base_dir: Option<&Path>,
) -> Result<PathBuf, ConfigError> {
    match flag.or_else(|| file.map(|root| relative_to(base_dir, root))) {
        Some(root) => Ok(root),
        None => std::env::current_dir().map_err(|e| ConfigError::Invalid {
            key: "root",
            message: format!("no root given and the working directory is unknown: {e}"),
        }),
    }
}

//! Files the configuration names: relative to the config file, read with errors naming the
//! setting.

use std::path::{Path, PathBuf};

use super::ConfigError;

/// The contents of the PEM file at `path` (setting `key`), when one is given.
pub(super) fn read_pem(
    key: &'static str,
    path: Option<PathBuf>,
) -> Result<Option<Vec<u8>>, ConfigError> {
    let Some(path) = path else {
        return Ok(None);
    };
    std::fs::read(&path)
        .map(Some)
        .map_err(|e| ConfigError::Invalid {
            key,
            message: format!("cannot read {}: {e}", path.display()),
        })
}

/// `path` as written in a config file in directory `base_dir` (`None`: no file; empty: the
/// working directory).
pub(super) fn relative_to(base_dir: Option<&Path>, path: PathBuf) -> PathBuf {
    match base_dir {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(path),
        _ => path,
    }
}

//! `[server]` (and the `--tls-*` flags): TLS on the listener.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::paths::relative_to;
use super::{ConfigError, Overrides};
use crate::tls::TlsFiles;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerFile {
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
    pub(super) tls_client_ca: Option<PathBuf>,
}

/// The TLS files: each flag over the file's setting (relative to `base_dir`). Takes the TLS
/// flags out of `overrides`.
pub(super) fn tls(
    overrides: &mut Overrides,
    file: ServerFile,
    base_dir: Option<&Path>,
) -> Result<Option<TlsFiles>, ConfigError> {
    let from_file = |path: Option<PathBuf>| path.map(|path| relative_to(base_dir, path));
    tls_files(
        overrides
            .tls_cert
            .take()
            .or_else(|| from_file(file.tls_cert)),
        overrides.tls_key.take().or_else(|| from_file(file.tls_key)),
        overrides
            .tls_client_ca
            .take()
            .or_else(|| from_file(file.tls_client_ca)),
    )
}

/// The TLS files, checked for completeness: a certificate needs its key, a client CA needs both.
fn tls_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
) -> Result<Option<TlsFiles>, ConfigError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert,
            key,
            client_ca,
        })),
        (None, None) if client_ca.is_none() => Ok(None),
        (None, None) => Err(ConfigError::Invalid {
            key: "server.tls_client_ca",
            message: "client certificates need TLS: set tls_cert and tls_key too (--tls-cert, \
                      --tls-key)"
                .into(),
        }),
        (Some(_), None) => Err(ConfigError::Invalid {
            key: "server.tls_key",
            message: "tls_cert is set but tls_key is not: give the certificate's private key \
                      (--tls-key or [server] tls_key)"
                .into(),
        }),
        (None, Some(_)) => Err(ConfigError::Invalid {
            key: "server.tls_cert",
            message: "tls_key is set but tls_cert is not: give the certificate (--tls-cert or \
                      [server] tls_cert)"
                .into(),
        }),
    }
}

//! `[auth]`: who may call (tokens, client certificates) and how many runs each may have.

use serde::Deserialize;

use super::ConfigError;
use crate::auth::{AuthConfig, Principal, TokenEntry, ToolScope, token_digest};
use crate::tls::TlsFiles;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthFile {
    #[serde(default)]
    pub(super) tokens: Vec<TokenFile>,
    pub(super) max_runs_per_principal: Option<usize>,
    #[serde(default)]
    pub(super) principal_from_client_cert: bool,
    pub(super) client_cert_tools: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenFile {
    pub(super) name: String,
    /// Hex SHA-256 of the token.
    pub(super) sha256: Option<String>,
    /// The environment variable holding the token.
    pub(super) token_env: Option<String>,
    pub(super) tools: Option<Vec<String>>,
}

/// `[auth]` checked, each token's digest read or computed (a `token_env` variable is read here,
/// once, and only its digest kept).
pub(super) fn auth_config(
    file: AuthFile,
    tls: Option<&TlsFiles>,
) -> Result<AuthConfig, ConfigError> {
    let mut tokens = Vec::with_capacity(file.tokens.len());
    for entry in file.tokens {
        if entry.name.trim().is_empty() {
            return Err(ConfigError::Invalid {
                key: "auth.tokens",
                message: "an entry has an empty `name`; the name is the principal runs belong to"
                    .into(),
            });
        }
        let name = entry.name;
        let sha256 = match (entry.sha256, entry.token_env) {
            (Some(hex), None) => parse_digest(&hex).ok_or_else(|| ConfigError::Invalid {
                key: "auth.tokens",
                message: format!(
                    "entry {name:?}: sha256 must be 64 hex digits (the output of \
                     `printf %s TOKEN | sha256sum`)"
                ),
            })?,
            (None, Some(variable)) => match std::env::var(&variable) {
                Ok(token) if !token.is_empty() => token_digest(&token),
                _ => {
                    return Err(ConfigError::Invalid {
                        key: "auth.tokens",
                        message: format!(
                            "entry {name:?}: token_env names {variable:?}, which is not set or \
                             empty"
                        ),
                    });
                }
            },
            _ => {
                return Err(ConfigError::Invalid {
                    key: "auth.tokens",
                    message: format!(
                        "entry {name:?} needs exactly one of sha256 (the token's hex SHA-256) \
                         and token_env (the environment variable holding it); a token itself \
                         never goes in the file"
                    ),
                });
            }
        };
        tokens.push(TokenEntry {
            sha256,
            principal: std::sync::Arc::new(Principal {
                name: std::sync::Arc::from(name),
                tools: ToolScope::from_list(entry.tools),
            }),
        });
    }
    if file.principal_from_client_cert && tls.is_none_or(|tls| tls.client_ca.is_none()) {
        return Err(ConfigError::Invalid {
            key: "auth.principal_from_client_cert",
            message: "needs client certificates: set [server] tls_client_ca (--tls-client-ca) \
                      with tls_cert and tls_key"
                .into(),
        });
    }
    Ok(AuthConfig {
        tokens,
        principal_from_client_cert: file.principal_from_client_cert,
        client_cert_tools: file
            .client_cert_tools
            .map(|tools| ToolScope::from_list(Some(tools))),
    })
}

/// 64 hex digits as 32 bytes.
fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(digest)
}

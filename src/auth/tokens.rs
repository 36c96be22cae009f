//! Tokens and client certificates, resolved to principals.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Principal, ToolScope};

/// One configured token: its digest and the principal it stands for.
#[derive(Clone)]
pub struct TokenEntry {
    /// SHA-256 of the token.
    pub sha256: [u8; 32],
    /// Who presents it.
    pub principal: Arc<Principal>,
}

impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the token, but not worth printing either: a digest only helps an attacker.
        f.debug_struct("TokenEntry")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

/// `[auth]`: the tokens and how client certificates are used.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// `[[auth.tokens]]`, digests already computed.
    pub tokens: Vec<TokenEntry>,
    /// `principal_from_client_cert`: a client with a certificate (mTLS) and no token is the
    /// principal its certificate's subject CN names.
    pub principal_from_client_cert: bool,
    /// `client_cert_tools`: what such a principal may run (absent: every tool).
    pub client_cert_tools: Option<ToolScope>,
}

impl AuthConfig {
    /// Whether any call needs credentials.
    pub fn is_enabled(&self) -> bool {
        !self.tokens.is_empty() || self.principal_from_client_cert
    }
}

/// SHA-256 of `token`.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Resolves credentials to principals.
#[derive(Debug)]
pub(crate) struct Authenticator {
    config: AuthConfig,
}

impl Authenticator {
    pub(crate) fn new(config: AuthConfig) -> Self {
        Authenticator { config }
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.config.is_enabled()
    }

    /// The principal `token` stands for. Every entry is compared, in constant time, whatever
    /// matches: the time taken says nothing of which digest was close.
    pub(crate) fn by_token(&self, token: &str) -> Option<Arc<Principal>> {
        let digest = token_digest(token);
        let mut found = None;
        for entry in &self.config.tokens {
            if bool::from(entry.sha256.ct_eq(&digest)) && found.is_none() {
                found = Some(Arc::clone(&entry.principal));
            }
        }
        found
    }

    /// The principal a verified client certificate with subject CN `common_name` stands for,
    /// when certificates name principals.
    pub(crate) fn by_client_cert(&self, common_name: &str) -> Option<Arc<Principal>> {
        if !self.config.principal_from_client_cert || common_name.is_empty() {
            return None;
        }
        Some(Arc::new(Principal {
            name: Arc::from(common_name),
            tools: self
                .config
                .client_cert_tools
                .clone()
                .unwrap_or(ToolScope::All),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(name: &str, tools: ToolScope) -> Arc<Principal> {
        Arc::new(Principal {
            name: Arc::from(name),
            tools,
        })
    }

    #[test]
    fn a_token_is_matched_by_its_digest_and_a_wrong_one_is_not() {
        let auth = Authenticator::new(AuthConfig {
            tokens: vec![
                TokenEntry {
                    sha256: token_digest("alpha-token"),
                    principal: principal("alpha", ToolScope::All),
                },
                TokenEntry {
                    sha256: token_digest("beta-token"),
                    principal: principal("beta", ToolScope::from_list(Some(vec!["x".into()]))),
                },
            ],
            ..AuthConfig::default()
        });
        assert!(auth.is_enabled());
        assert_eq!(&*auth.by_token("alpha-token").unwrap().name, "alpha");
        assert_eq!(&*auth.by_token("beta-token").unwrap().name, "beta");
        assert!(auth.by_token("beta-token ").is_none());
        assert!(auth.by_token("").is_none());
        assert!(auth.by_client_cert("alpha").is_none());
    }
}

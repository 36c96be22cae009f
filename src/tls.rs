//! TLS, with rustls: the server's certificates (reloaded when their files change) and the
//! client's settings for toolstream's own clients (the CLI, remote tools).
//!
//! The server side: [`ServerTls`] holds the current rustls configuration (certificate chain,
//! key, and with `--tls-client-ca` the CA a client certificate must chain to). Each new
//! connection's handshake uses the configuration current at that moment, so replacing it never
//! touches an open connection. [`ServerTls::keep_current`] reads the files again every
//! [`RELOAD_INTERVAL`] and, when their contents changed (cert-manager and most tools replace
//! them by an atomic rename), builds a new configuration; a pair that does not load (a key that
//! does not match, a half-written file) is logged and the old one kept. ALPN offers `h2` and
//! `http/1.1`: gRPC clients pick the first, browsers may pick the second (SSE, WebSocket).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

/// How often the certificate files are read again to see whether they changed.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// How long a client may take to complete the TLS handshake before its connection is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The files the server's TLS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates a client certificate must chain to (mTLS); `None`: no client
    /// certificates asked for.
    pub client_ca: Option<PathBuf>,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// Which setting.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file's contents are not what it should hold.
    #[error("{what} {path}: {message}")]
    Invalid {
        /// Which setting.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the combination (a key that does not match the certificate, say).
    #[error("TLS configuration from {cert} and {key}: {message}")]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        message: String,
    },
}

/// The crypto provider every TLS configuration here is built with: aws-lc-rs, the one reqwest
/// brings too, named explicitly so that no process-wide default has to be installed.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The files' contents, read together, so a change to any is noticed.
#[derive(PartialEq, Eq)]
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

impl Contents {
    fn read(files: &TlsFiles) -> Result<Contents, TlsError> {
        Ok(Contents {
            cert: read("certificate", &files.cert)?,
            key: read("key", &files.key)?,
            client_ca: files
                .client_ca
                .as_deref()
                .map(|path| read("client CA", path))
                .transpose()?,
        })
    }

    fn server_config(&self, files: &TlsFiles) -> Result<ServerConfig, TlsError> {
        let chain = certificates("certificate", &files.cert, &self.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| TlsError::Invalid {
            what: "key",
            path: files.key.clone(),
            message: format!("no usable PEM private key: {e}"),
        })?;
        let config_error = |message: String| TlsError::Config {
            cert: files.cert.clone(),
            key: files.key.clone(),
            message,
        };
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error(e.to_string()))?;
        let builder = match (&self.client_ca, &files.client_ca) {
            (Some(pem), Some(path)) => {
                let mut roots = RootCertStore::empty();
                for cert in certificates("client CA", path, pem)? {
                    roots.add(cert).map_err(|e| TlsError::Invalid {
                        what: "client CA",
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| TlsError::Invalid {
                            what: "client CA",
                            path: path.clone(),
                            message: e.to_string(),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| config_error(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// Every certificate of a PEM file; none is an error.
fn certificates(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            what,
            path: path.to_owned(),
            message: format!("not PEM certificates: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Invalid {
            what,
            path: path.to_owned(),
            message: "holds no PEM certificate".into(),
        });
    }
    Ok(certs)
}

/// The server's TLS: the configuration new handshakes use, replaced when the files change.
pub struct ServerTls {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    /// What the files held when last looked at (loaded or not), so a broken pair is reported
    /// once, not at every look.
    seen: std::sync::Mutex<Contents>,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads the files; fails with a message naming the file at fault.
    pub fn load(files: TlsFiles) -> Result<ServerTls, TlsError> {
        let contents = Contents::read(&files)?;
        let config = contents.server_config(&files)?;
        Ok(ServerTls {
            files,
            current: RwLock::new(Arc::new(config)),
            seen: std::sync::Mutex::new(contents),
            handshake_timeout: HANDSHAKE_TIMEOUT,
        })
    }

    /// Sets how long a client may take to complete the handshake ([`HANDSHAKE_TIMEOUT`] unless
    /// set).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The files it loads from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_cert(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// How long a handshake may take.
    pub(crate) fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// An acceptor with the configuration current now.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        let config = self.current.read().unwrap_or_else(|p| p.into_inner());
        TlsAcceptor::from(Arc::clone(&config))
    }

    /// Reads the files again; when they changed, loads them (or logs why not and keeps the
    /// configuration in use). Returns whether a new configuration is in use.
    pub fn reload_if_changed(&self) -> bool {
        let contents = match Contents::read(&self.files) {
            Ok(contents) => contents,
            // Between the two renames of a replacement a file may be missing for a moment.
            Err(error) => {
                tracing::debug!(%error, "TLS files unreadable for now; keeping the certificate in use");
                return false;
            }
        };
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if *seen == contents {
            return false;
        }
        let loaded = contents.server_config(&self.files);
        *seen = contents;
        match loaded {
            Ok(config) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
                tracing::info!(
                    cert = %self.files.cert.display(),
                    "TLS certificate reloaded; new connections use it"
                );
                true
            }
            Err(error) => {
                tracing::warn!(%error, "new TLS files do not load; keeping the certificate in use");
                false
            }
        }
    }

    /// Looks at the files every [`RELOAD_INTERVAL`] while `tls` is in use by anyone.
    pub fn keep_current(tls: &Arc<ServerTls>) {
        let weak: Weak<ServerTls> = Arc::downgrade(tls);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(RELOAD_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(tls) = weak.upgrade() else { return };
                // Reading two small files; off the runtime's threads all the same.
                let _ = tokio::task::spawn_blocking(move || tls.reload_if_changed()).await;
            }
        });
    }
}

/// The subject CN of a connection's verified client certificate, put in every request's
/// extensions (the auth layer may take it as the principal).
#[derive(Debug, Clone)]
pub(crate) struct ClientCertName(pub(crate) Arc<str>);

/// The subject CN of a DER certificate.
pub(crate) fn common_name(cert: &CertificateDer<'_>) -> Option<Arc<str>> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let name = parsed.subject().iter_common_name().next()?.as_str().ok()?;
    Some(Arc::from(name))
}

/// TLS settings of a client of toolstream (the CLI, a `[[tools]]` remote): the CA to trust
/// instead of the system's roots, and a client certificate for mTLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM CA certificates the server's certificate must chain to; `None`: the system's roots.
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain (mTLS).
    pub cert: Option<PathBuf>,
    /// Its PEM private key.
    pub key: Option<PathBuf>,
}

impl ClientTls {
    /// Whether anything is set (which asks for TLS even on an `http://` address).
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// The tonic TLS configuration; fails naming the file at fault, or when only one of the
    /// certificate and key is given.
    pub fn tonic_config(&self) -> Result<tonic::transport::ClientTlsConfig, String> {
        let read = |what: &str, path: &Path| {
            std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
        };
        let mut config = tonic::transport::ClientTlsConfig::new();
        config = match &self.ca {
            Some(path) => config.ca_certificate(tonic::transport::Certificate::from_pem(read(
                "the TLS CA",
                path,
            )?)),
            None => config.with_native_roots(),
        };
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                config = config.identity(tonic::transport::Identity::from_pem(
                    read("the TLS client certificate", cert)?,
                    read("the TLS client key", key)?,
                ));
            }
            (None, None) => {}
            _ => {
                return Err(
                    "a TLS client certificate needs its key: give both tls_cert and tls_key \
                     (--tls-cert and --tls-key), or neither"
                        .into(),
                );
            }
        }
        Ok(config)
    }

    /// Paths of a config file entry are relative to the file's directory.
    pub fn relative_to(self, base_dir: &Path) -> ClientTls {
        let join = |path: Option<PathBuf>| path.map(|p| base_dir.join(p));
        ClientTls {
            ca: join(self.ca),
            cert: join(self.cert),
            key: join(self.key),
        }
    }
}

/// `address` with its scheme: as given, or `https://` when TLS settings are given, else
/// `http://`.
pub fn with_scheme(address: &str, tls: &ClientTls) -> String {
    if address.contains("://") {
        address.to_owned()
    } else if tls.is_set() {
        format!("https://{address}")
    } else {
        format!("http://{address}")
    }
}

/// A tonic endpoint for `address`: `https://` (or any [`ClientTls`] setting) means TLS, verified
/// with `tls`; an address without a scheme is `http://`.
pub fn endpoint(address: &str, tls: &ClientTls) -> Result<tonic::transport::Endpoint, String> {
    let address = with_scheme(address, tls);
    let mut endpoint = tonic::transport::Endpoint::from_shared(address.clone())
        .map_err(|e| format!("{address:?} is not a server address like http://host:port: {e}"))?;
    if address.starts_with("https://") {
        endpoint = endpoint
            .tls_config(tls.tonic_config()?)
            .map_err(|e| format!("TLS settings for {address}: {e}"))?;
    } else if tls.is_set() {
        return Err(format!(
            "TLS settings were given but {address} is plaintext; use an https:// address"
        ));
    }
    Ok(endpoint)
}

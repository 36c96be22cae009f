//! Where runs are kept, as the engine takes it: the configuration (`[runs]`, `--store`) builds a
//! [`StoreConfig`] and checks it.

use std::time::Duration;

/// The default `[runs] key_prefix`.
pub const DEFAULT_KEY_PREFIX: &str = "toolstream:";
/// The default `[runs] lease_secs`.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// Where runs are kept: `memory` (this process only) or a Redis shared by several replicas.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// `memory`, or `redis://[:password@]host:port/db` (also `redis+unix:///path`,
    /// `rediss://…`, and for Redis Cluster `redis+cluster://host:port,host:port` or
    /// `rediss+cluster://…`).
    pub url: String,
    /// The store is a Redis Cluster (`[runs] redis_cluster`), whatever the URL's scheme: the URL
    /// names one of its nodes (a `+cluster` scheme says so too).
    pub cluster: bool,
    /// Every Redis key starts with this, so several fleets can share one Redis.
    pub key_prefix: String,
    /// A dead replica's runs end UNAVAILABLE within this long of its last lease renewal (its
    /// lease lapses after two thirds of it; see `docs/replicas.md`).
    pub lease: Duration,
    /// The start of this replica's id (a random suffix follows); default: the host name.
    pub replica_name: Option<String>,
    /// PEM of the CA certificates a `rediss://` server's certificate must chain to (`[runs]
    /// redis_ca`); `None`: the system's roots. Either way the server's name is checked.
    pub ca_pem: Option<Vec<u8>>,
    /// The client certificate shown to a `rediss://` server that asks for one (`[runs]
    /// redis_cert`, `redis_key`).
    pub client_cert: Option<RedisClientCert>,
    /// The password, when it is not in the URL (`[runs] redis_password_env` names the
    /// environment variable holding it). Never logged.
    pub password: Option<String>,
}

/// A client certificate and its key, as PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisClientCert {
    /// The certificate (chain).
    pub cert_pem: Vec<u8>,
    /// Its private key.
    pub key_pem: Vec<u8>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "memory".to_owned(),
            cluster: false,
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            lease: DEFAULT_LEASE,
            replica_name: None,
            ca_pem: None,
            client_cert: None,
            password: None,
        }
    }
}

impl StoreConfig {
    /// A Redis store at `url` with the default settings.
    pub fn redis(url: impl Into<String>) -> Self {
        StoreConfig {
            url: url.into(),
            ..StoreConfig::default()
        }
    }

    /// Whether the store is Redis over TLS (`rediss://`, `rediss+cluster://`).
    pub fn is_tls(&self) -> bool {
        self.url.starts_with("rediss://") || self.url.starts_with("rediss+cluster://")
    }

    /// Whether the store is a Redis Cluster (a `+cluster` URL, or `[runs] redis_cluster`).
    pub fn is_cluster(&self) -> bool {
        self.cluster
            || self.url.starts_with("redis+cluster://")
            || self.url.starts_with("rediss+cluster://")
    }

    /// The URLs of the cluster nodes the store starts from (`redis://` or `rediss://` each, with
    /// the URL's credentials): a `+cluster` URL's comma-separated nodes, or the URL itself.
    pub fn cluster_nodes(&self) -> Vec<String> {
        let (scheme, rest) = match self.url.split_once("+cluster://") {
            Some((scheme, rest)) => (scheme, rest),
            None => return vec![self.url.clone()],
        };
        let (authority, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, ""),
        };
        let (credentials, hosts) = match authority.rfind('@') {
            Some(at) => (&authority[..=at], &authority[at + 1..]),
            None => ("", authority),
        };
        hosts
            .split(',')
            .map(str::trim)
            .filter(|host| !host.is_empty())
            .map(|host| format!("{scheme}://{credentials}{host}{path}"))
            .collect()
    }

    /// Whether runs stay in this process's memory.
    pub fn is_memory(&self) -> bool {
        self.url == "memory"
    }

    /// The URL without its password, for logs and error messages.
    pub fn redacted_url(&self) -> String {
        let Some((scheme, rest)) = self.url.split_once("://") else {
            return self.url.clone();
        };
        let authority_end = rest.find('/').unwrap_or(rest.len());
        match rest[..authority_end].rfind('@') {
            Some(at) => {
                let user = rest[..at].split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***{}", &rest[at..])
            }
            None => self.url.clone(),
        }
    }
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &self.redacted_url())
            .field("cluster", &self.cluster)
            .field("key_prefix", &self.key_prefix)
            .field("lease", &self.lease)
            .field("replica_name", &self.replica_name)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<set>"))
            .field("client_cert", &self.client_cert.as_ref().map(|_| "<set>"))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

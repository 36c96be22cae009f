//! The store's connections to Redis: to one server (standalone, or the primary of a replicated
//! one), or to a Redis Cluster.
//!
//! Either way there is one shared connection for everything that does not block (multiplexed:
//! concurrent calls share it, and it reconnects by itself), and connections of their own for the
//! blocking reads (`XREAD BLOCK` of a followed run, `BLPOP` of the cancel listener), since a
//! blocked multiplexed connection serves nobody else meanwhile. In a cluster, each of those is a
//! cluster connection too: it sends each command to the node owning its key's slot, follows
//! `MOVED`/`ASK` and refreshes its map of slots itself after a failover (it holds a connection to
//! each primary it has sent to).

use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, IntoConnectionInfo, Pipeline, RedisFuture, Value};

use crate::engine::StoreConfig;

/// How long a Redis call may take before it counts as a failure.
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting to Redis may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Where connections come from: the server, or the cluster, `[runs]` names.
pub(super) enum Connector {
    Server(Box<redis::Client>),
    Cluster {
        /// For the shared connection: calls bounded by [`RESPONSE_TIMEOUT`].
        shared: Box<ClusterClient>,
        /// For blocking reads: calls bounded by the block time plus a margin.
        blocking: Box<ClusterClient>,
    },
}

/// A connection to the store, as the commands, pipelines and scripts of the store use it.
#[derive(Clone)]
pub(super) enum Connection {
    /// The shared connection to one server.
    Server(ConnectionManager),
    /// A connection of its own to one server.
    Dedicated(MultiplexedConnection),
    /// A cluster connection (shared, or of its own for blocking reads).
    Cluster(ClusterConnection),
}

impl Connector {
    /// The connector of the store `config` names, with TLS (`rediss://`) verified against the
    /// system's roots or the configured CA, a client certificate when one is configured, and the
    /// password from the environment when one was named. Every connection (the shared one, the
    /// followers' and the cancel listener's, each cluster node's) has the same TLS and
    /// credentials. `block` is the longest a blocking read blocks.
    pub(super) fn open(config: &StoreConfig, block: Duration) -> redis::RedisResult<Connector> {
        if config.is_tls() {
            // redis-rs builds its rustls configuration with the process's default crypto
            // provider: make it aws-lc-rs, the provider of everything else here, unless one was
            // installed already.
            if rustls::crypto::CryptoProvider::get_default().is_none() {
                let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            }
        }
        if !config.is_cluster() {
            return server_client(config).map(|client| Connector::Server(Box::new(client)));
        }
        let cluster = |response_timeout: Duration| {
            let mut nodes = Vec::new();
            for node in config.cluster_nodes() {
                nodes.push(node_info(config, &node)?);
            }
            // Each attempt is bounded by `response_timeout`, from when it is sent (a bound on the
            // whole call would count the time it queued behind others on the connection, which
            // a thousand concurrent calls exceed on a busy machine), and a call is tried thrice at
            // most (a failover's MOVED, a reconnection).
            let mut builder = ClusterClientBuilder::new(nodes)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(response_timeout)
                .overall_response_timeout(None)
                .retries(2);
            if let Some(certificates) = certificates(config) {
                builder = builder.certs(certificates);
            }
            builder.build()
        };
        Ok(Connector::Cluster {
            shared: Box::new(cluster(RESPONSE_TIMEOUT)?),
            blocking: Box::new(cluster(block + RESPONSE_TIMEOUT)?),
        })
    }

    /// The shared connection. It connects when first used (a store that cannot be reached yet
    /// opens anyway), and reconnects by itself.
    pub(super) fn shared(&self) -> redis::RedisResult<Connection> {
        match self {
            Connector::Server(client) => ConnectionManager::new_lazy_with_config(
                (**client).clone(),
                ConnectionManagerConfig::new()
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500)),
            )
            .map(Connection::Server),
            Connector::Cluster { shared, .. } => Ok(Connection::Cluster(
                shared.get_pending_async_connection_with_config(
                    ClusterConfig::new()
                        .set_connection_timeout(CONNECT_TIMEOUT)
                        .set_response_timeout(RESPONSE_TIMEOUT),
                ),
            )),
        }
    }

    /// A connection of its own, for blocking reads of at most `block`.
    pub(super) async fn dedicated(&self, block: Duration) -> redis::RedisResult<Connection> {
        let response_timeout = block + RESPONSE_TIMEOUT;
        match self {
            Connector::Server(client) => client
                .get_multiplexed_async_connection_with_config(
                    &AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(CONNECT_TIMEOUT))
                        .set_response_timeout(Some(response_timeout)),
                )
                .await
                .map(Connection::Dedicated),
            Connector::Cluster { blocking, .. } => blocking
                .get_async_connection_with_config(
                    ClusterConfig::new()
                        .set_connection_timeout(CONNECT_TIMEOUT)
                        .set_response_timeout(response_timeout),
                )
                .await
                .map(Connection::Cluster),
        }
    }

    /// Whether the store is a Redis Cluster.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Connector::Cluster { .. })
    }
}

/// The connection settings of one node (or the one server): its URL, with the password from the
/// environment when one was named.
fn node_info(config: &StoreConfig, url: &str) -> redis::RedisResult<redis::ConnectionInfo> {
    let info = url.into_connection_info()?;
    Ok(match &config.password {
        Some(password) => {
            let settings = info.redis_settings().clone().set_password(password);
            info.set_redis_settings(settings)
        }
        None => info,
    })
}

/// The CA and client certificate configured for TLS, when any is.
fn certificates(config: &StoreConfig) -> Option<redis::TlsCertificates> {
    if !config.is_tls() || (config.ca_pem.is_none() && config.client_cert.is_none()) {
        return None;
    }
    Some(redis::TlsCertificates {
        client_tls: config
            .client_cert
            .as_ref()
            .map(|identity| redis::ClientTlsConfig {
                client_cert: identity.cert_pem.clone(),
                client_key: identity.key_pem.clone(),
            }),
        // Replaces the system's roots: only this CA is trusted.
        root_cert: config.ca_pem.clone(),
    })
}

/// The client of one server.
fn server_client(config: &StoreConfig) -> redis::RedisResult<redis::Client> {
    let info = node_info(config, &config.url)?;
    match certificates(config) {
        Some(certificates) => redis::Client::build_with_tls(info, certificates),
        None => redis::Client::open(info),
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Server(conn) => conn.req_packed_command(cmd),
            Connection::Dedicated(conn) => conn.req_packed_command(cmd),
            Connection::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Server(conn) => conn.req_packed_commands(pipeline, offset, count),
            Connection::Dedicated(conn) => conn.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Server(conn) => conn.get_db(),
            Connection::Dedicated(conn) => conn.get_db(),
            Connection::Cluster(conn) => conn.get_db(),
        }
    }
}

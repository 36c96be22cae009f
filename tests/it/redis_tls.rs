//! The Redis store as managed Redis runs it: TLS only (`rediss://`, the CA from `[runs]
//! redis_ca`, a client certificate when the server asks), a password from the environment that
//! no log shows, and `[auth] max_runs_per_principal` counted across the fleet (freed when a
//! replica holding a run dies).

use crate::common;
use std::path::Path;
use std::time::Duration;

use crate::common::binary::{Served, serve};
use crate::common::certs::TestPki;
use crate::common::principal_limit::{
    AUTH, ENV, holds_across_replicas_and_a_killed_replica_frees_its_runs,
};
use crate::common::redis_server::{RedisServer, Secured, ServerTlsFiles};
use crate::common::runs::{detached, get, run_id_of, watch};
use crate::common::{TestServer, collect, registry_with, result_value};
use serde_json::json;
use tonic::transport::Channel;
use toolstream::config::{Limits, RedisClientCert, StoreConfig};
use toolstream::engine::{Store, StoreError};
use toolstream::pb::RunState;
use toolstream::pb::run_event::Event;
use toolstream::pb::run_service_client::RunServiceClient;
use toolstream::pb::tool_service_client::ToolServiceClient;

/// A TLS-only redis-server with the PKI's server certificate (CN "server-1", SANs localhost and
/// 127.0.0.1, signed by "toolstream test CA").
fn tls_redis(pki: &TestPki, client_certificates: bool) -> RedisServer {
    RedisServer::start_secured(Secured {
        tls: Some(ServerTlsFiles {
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            ca: pki.ca_file.clone(),
        }),
        client_certificates,
        password: None,
    })
}

/// The store settings of a replica named `name` on `redis`, trusting the PKI's CA.
fn tls_store(redis: &RedisServer, pki: &TestPki, name: &str) -> StoreConfig {
    StoreConfig {
        key_prefix: "tls:".into(),
        replica_name: Some(name.into()),
        lease: Duration::from_secs(5),
        ca_pem: Some(pki.ca.pem.as_bytes().to_vec()),
        ..StoreConfig::redis(redis.url())
    }
}

async fn replica(store: &StoreConfig) -> TestServer {
    let root = std::env::current_dir().unwrap();
    TestServer::start_with_store(registry_with(&root, vec![]), Limits::default(), store).await
}

/// Runs `ticks` on `a` and watches it from `b` to its result: the run crossed the store.
async fn run_on_a_watch_on_b(a: &TestServer, b: &TestServer) {
    let response = a
        .client()
        .await
        .run_tool(detached("ticks", json!({"count": 3, "interval_ms": 50})))
        .await
        .expect("RunTool on A");
    let run_id = run_id_of(&response);
    let mut through_b = RunServiceClient::new(b.channel().await);
    let (events, status) = collect(watch(&mut through_b, &run_id, 0).await).await;
    assert!(status.is_none(), "{status:?}");
    assert!(matches!(events[0].event, Some(Event::Started(_))));
    assert_eq!(
        events.last().and_then(result_value),
        Some(json!({"count": 3})),
        "{events:?}"
    );
    let run = get(&mut through_b, &run_id).await.unwrap();
    assert_eq!(run.state(), RunState::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_runs_through_a_tls_only_redis() {
    let pki = TestPki::new();
    let redis = tls_redis(&pki, false);
    let a = replica(&tls_store(&redis, &pki, "alpha")).await;
    let b = replica(&tls_store(&redis, &pki, "beta")).await;
    run_on_a_watch_on_b(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_asks_for_client_certificates_takes_the_configured_one() {
    let pki = TestPki::new();
    let redis = tls_redis(&pki, true);
    let with_certificate = |name: &str| StoreConfig {
        client_cert: Some(RedisClientCert {
            cert_pem: std::fs::read(pki.path("alice.pem")).unwrap(),
            key_pem: std::fs::read(pki.path("alice.key")).unwrap(),
        }),
        ..tls_store(&redis, &pki, name)
    };
    let a = replica(&with_certificate("alpha")).await;
    let b = replica(&with_certificate("beta")).await;
    run_on_a_watch_on_b(&a, &b).await;

    // Without one, the store refuses this server at start-up (`serve` adds the settings to
    // check: `cli::serve::tests`).
    let error = Store::open(&tls_store(&redis, &pki, "gamma"), &Limits::default())
        .await
        .err()
        .expect("a server without a client certificate is refused");
    assert!(matches!(error, StoreError::Refused { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_whose_certificate_is_of_another_ca_is_refused_at_start_up() {
    let pki = TestPki::new();
    let redis = tls_redis(&pki, false);
    let other = common::certs::Ca::new("another CA");
    let store = StoreConfig {
        ca_pem: Some(other.pem.into_bytes()),
        ..tls_store(&redis, &pki, "alpha")
    };
    let error = Store::open(&store, &Limits::default())
        .await
        .err()
        .expect("a server certificate that does not verify is refused");
    let message = error.to_string();
    assert!(
        message.contains("rediss://127.0.0.1") && message.contains("certificate"),
        "{message}"
    );
}

/// A config file in `dir` for the binary: the store at `url` under `extra` settings of `[runs]`,
/// and `[auth]` when given.
fn write_config(dir: &Path, name: &str, url: &str, runs: &str, auth: &str) -> String {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[runs]\nstore = \"{url}\"\nkey_prefix = \"bin:\"\nreplica_name = \"{name}\"\n\
             {runs}\n{auth}"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

async fn tools_of(served: &Served) -> ToolServiceClient<Channel> {
    ToolServiceClient::connect(format!("http://{}", served.addr))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_from_the_environment_opens_a_protected_redis_and_no_log_shows_it() {
    const PASSWORD: &str = "s3cret-Redis-pw-7f3a";
    let redis = RedisServer::start_secured(Secured {
        password: Some(PASSWORD.into()),
        ..Secured::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let runs = "redis_password_env = \"TEST_REDIS_PASSWORD\"";
    let config = write_config(dir.path(), "guarded", &redis.url(), runs, "");
    // Every log line the server writes, debug included.
    let env = [
        ("TEST_REDIS_PASSWORD", PASSWORD),
        ("RUST_LOG", "debug,rmcp=warn,h2=info,hyper=info,tower=info"),
    ];
    let served = serve(dir.path(), &["--config", &config], &env).serving();
    let response = tools_of(&served)
        .await
        .run_tool(detached("ticks", json!({"count": 2, "interval_ms": 10})))
        .await
        .expect("RunTool through a password-protected Redis");
    let (events, status) = collect(response.into_inner()).await;
    assert!(status.is_none(), "{status:?}");
    assert!(events.last().and_then(result_value).is_some(), "{events:?}");
    let log = served.stop_and_log();
    assert!(log.contains("toolstream serving"), "{log}");
    assert!(
        !log.contains(PASSWORD),
        "the password is in the log:\n{log}"
    );

    // A wrong password: the server does not start, says why, and shows neither password.
    let wrong = "not-the-Redis-pw-0c1d";
    let (status, stderr) = serve(
        dir.path(),
        &["--config", &config],
        &[("TEST_REDIS_PASSWORD", wrong)],
    )
    .exited();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refuses") && stderr.contains("redis_password_env"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(wrong) && !stderr.contains(PASSWORD),
        "{stderr}"
    );
    // The same password in the URL is shown as *** in the log.
    let in_url = format!("redis://default:{PASSWORD}@127.0.0.1:{}/0", redis.port);
    let config = write_config(dir.path(), "in-url", &in_url, "", "");
    let log = serve(dir.path(), &["--config", &config], &[])
        .serving()
        .stop_and_log();
    assert!(log.contains("redis://default:***@127.0.0.1"), "{log}");
    assert!(
        !log.contains(PASSWORD),
        "the password is in the log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_principal_limit_holds_across_replicas_and_a_killed_replica_frees_its_runs() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &str| {
        let config = write_config(dir.path(), name, &redis.url(), "lease_secs = 1", AUTH);
        serve(dir.path(), &["--config", &config], &ENV).serving()
    };
    holds_across_replicas_and_a_killed_replica_frees_its_runs(
        start("doomed"),
        &start("survivor"),
        "doomed",
    )
    .await;
}

//! TLS on the one listener: gRPC (tonic and grpcio), HTTP/1.1 (SSE) over TLS with ALPN, mutual
//! TLS, certificates replaced by an atomic rename while a stream is open, the handshake timeout,
//! and a client certificate's CN as the principal.

use crate::common;
use std::sync::Arc;
use std::time::Duration;

use crate::common::certs::{TestPki, served_certificate};
use crate::common::{TestServer, collect, eventually, registry_with, result_value, run_request};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;
use toolstream::auth::AuthConfig;
use toolstream::config::Limits;
use toolstream::pb;
use toolstream::pb::tool_service_client::ToolServiceClient;
use toolstream::server::Server;
use toolstream::tools::native::tool_fn;
use toolstream::tools::{Progress, Tool, ToolError};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct NoArgs {}

/// A tool `gated` that reports once, then waits until `gate` is notified, then returns "done".
fn gated_tool(gate: Arc<Notify>) -> Arc<dyn Tool> {
    Arc::new(tool_fn(
        "gated",
        "Waits for the test.",
        move |_: NoArgs, progress: Progress| {
            let gate = Arc::clone(&gate);
            async move {
                progress.status("waiting");
                gate.notified().await;
                Ok::<_, ToolError>("done")
            }
        },
    ))
}

/// `tests/python/tls_client.py PORT DIR MODE` (grpcio), off the runtime the server runs on.
async fn python_tls_client(port: String, dir: String, mode: &'static str) -> String {
    tokio::task::spawn_blocking(move || common::run_python("tls_client.py", &[&port, &dir, mode]))
        .await
        .expect("python")
}

/// Whether a connection (or, once connected, its first call) failed.
async fn refused(channel: Result<tonic::transport::Channel, tonic::transport::Error>) -> bool {
    match channel {
        Err(_) => true,
        Ok(channel) => ToolServiceClient::new(channel)
            .list_tools(pb::ListToolsRequest {})
            .await
            .is_err(),
    }
}

/// A server with the built-in tools over `tls`.
async fn serve_tls(tls: toolstream::tls::ServerTls) -> TestServer {
    let root = std::env::current_dir().unwrap();
    TestServer::serve(Server::new(registry_with(&root, vec![]), Limits::default()).with_tls(tls))
        .await
}

/// Waits until a new connection to `addr` is shown the certificate with subject CN `cn`;
/// returns its serial.
async fn wait_for_certificate(addr: std::net::SocketAddr, ca_pem: &str, cn: &str) -> String {
    eventually(
        Duration::from_secs(20),
        &format!("{cn} to be served"),
        async || {
            let (seen, serial, _) = served_certificate(addr, ca_pem, &[b"h2"]).await;
            if seen == cn {
                Ok(serial)
            } else {
                Err(format!("still {seen}"))
            }
        },
    )
    .await
}

async fn tls_server(pki: &TestPki, mtls: bool, extra: Vec<Arc<dyn Tool>>) -> TestServer {
    let root = std::env::current_dir().unwrap();
    let server =
        Server::new(registry_with(&root, extra), Limits::default()).with_tls(pki.server_tls(mtls));
    TestServer::serve(server).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_clients_reach_the_server_over_tls_and_plaintext_fails() {
    let pki = TestPki::new();
    let server = tls_server(&pki, false, vec![]).await;

    let channel = pki.channel(server.addr, None).await.expect("TLS connect");
    let tools = ToolServiceClient::new(channel)
        .list_tools(pb::ListToolsRequest {})
        .await
        .expect("ListTools over TLS")
        .into_inner()
        .tools;
    assert!(tools.iter().any(|tool| tool.name == "ticks"));

    // The same port refuses plaintext HTTP/2: the handshake fails, so the call does.
    let plain = tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .connect()
        .await;
    assert!(
        refused(plain).await,
        "plaintext gRPC against the TLS port must fail"
    );

    let port = server.addr.port().to_string();
    let dir = pki.dir.path().to_str().unwrap().to_owned();
    let out = python_tls_client(port, dir, "tls").await;
    assert!(
        out.contains("plaintext against the TLS port fails"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_takes_a_certificate_of_the_ca_and_refuses_others_at_the_handshake() {
    let pki = TestPki::new();
    let server = tls_server(&pki, true, vec![]).await;

    let alice = pki
        .channel(server.addr, Some("alice"))
        .await
        .expect("alice");
    ToolServiceClient::new(alice)
        .list_tools(pb::ListToolsRequest {})
        .await
        .expect("a client of the CA is served");

    for client in [None, Some("mallory")] {
        let channel = pki.channel(server.addr, client).await;
        assert!(refused(channel).await, "{client:?} must be refused");
    }

    let port = server.addr.port().to_string();
    let dir = pki.dir.path().to_str().unwrap().to_owned();
    let out = python_tls_client(port, dir, "mtls").await;
    assert!(
        out.contains("a certificate of another CA is refused"),
        "{out}"
    );
    assert!(out.contains("no client certificate is refused"), "{out}");
}

#[tokio::test]
async fn browsers_get_http1_over_tls_for_sse_and_grpc_clients_get_h2() {
    let pki = TestPki::new();
    let server = tls_server(&pki, false, vec![]).await;

    let (_, _, alpn) = served_certificate(server.addr, &pki.ca.pem, &[b"h2", b"http/1.1"]).await;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let (_, _, alpn) = served_certificate(server.addr, &pki.ca.pem, &[b"http/1.1"]).await;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));

    let http = pki.http1();
    let base = format!("https://localhost:{}", server.addr.port());
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.version(), reqwest::Version::HTTP_11);

    let response = http
        .post(format!("{base}/v1/tools/ticks/runs"))
        .json(&json!({"arguments": {"count": 2, "interval_ms": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let frames = common::web::SseReader::new(response).rest().await;
    let names: Vec<&str> = frames.iter().map(|frame| frame.name()).collect();
    assert_eq!(names.first(), Some(&"started"), "{names:?}");
    assert_eq!(names.last(), Some(&"result"), "{names:?}");
}

#[tokio::test]
async fn a_replaced_certificate_serves_new_connections_while_an_open_stream_completes() {
    let pki = TestPki::new();
    let gate = Arc::new(Notify::new());
    let server = tls_server(&pki, false, vec![gated_tool(Arc::clone(&gate))]).await;
    let (cn, serial, _) = served_certificate(server.addr, &pki.ca.pem, &[b"h2"]).await;
    assert_eq!((cn.as_str(), serial.as_str()), ("server-1", "01"));

    // A stream open on a connection made with the first certificate.
    let channel = pki.channel(server.addr, None).await.unwrap();
    let mut stream = ToolServiceClient::new(channel)
        .run_tool(run_request("gated", json!({})))
        .await
        .expect("RunTool")
        .into_inner();
    let started = stream.message().await.unwrap().expect("started");
    assert!(matches!(
        started.event,
        Some(pb::run_event::Event::Started(_))
    ));
    let waiting = stream.message().await.unwrap().expect("progress");
    assert!(matches!(
        waiting.event,
        Some(pb::run_event::Event::Progress(_))
    ));

    // cert-manager's way: write the new pair beside the old, then rename over it.
    let next = pki.ca.server("server-2", 2);
    let (cert, key) = next.write(pki.dir.path(), "next");
    std::fs::rename(&key, &pki.server_key).unwrap();
    std::fs::rename(&cert, &pki.server_cert).unwrap();

    assert_eq!(
        wait_for_certificate(server.addr, &pki.ca.pem, "server-2").await,
        "02"
    );

    // The old connection and its stream were left alone: the run ends and its result arrives.
    gate.notify_one();
    let (rest, status) = collect(stream).await;
    assert!(status.is_none(), "{status:?}");
    assert_eq!(
        rest.last().and_then(result_value),
        Some(json!("done")),
        "{rest:?}"
    );
}

#[tokio::test]
async fn a_broken_new_pair_is_refused_and_the_certificate_in_use_kept() {
    let pki = TestPki::new();
    let tls = pki.server_tls(false);

    // A key of another certificate: the pair does not match.
    let other = pki.ca.server("server-x", 9);
    std::fs::write(&pki.server_key, &other.key).unwrap();
    assert!(!tls.reload_if_changed(), "a mismatched pair must not load");
    // Not PEM at all.
    std::fs::write(&pki.server_cert, "not a certificate").unwrap();
    assert!(!tls.reload_if_changed());

    let server = serve_tls(tls).await;
    let (cn, _, _) = served_certificate(server.addr, &pki.ca.pem, &[b"h2"]).await;
    assert_eq!(cn, "server-1", "the certificate in use was kept");

    // A whole new pair is taken (by the server's own watcher).
    let (cert, key) = other.write(pki.dir.path(), "fixed");
    std::fs::rename(&cert, &pki.server_cert).unwrap();
    std::fs::rename(&key, &pki.server_key).unwrap();
    assert_eq!(
        wait_for_certificate(server.addr, &pki.ca.pem, "server-x").await,
        "09"
    );
}

#[tokio::test]
async fn a_stalled_handshake_is_closed_after_the_handshake_timeout() {
    let pki = TestPki::new();
    let tls = pki
        .server_tls(false)
        .with_handshake_timeout(Duration::from_millis(200));
    let server = serve_tls(tls).await;
    // Connect and say nothing: the server gives up on the handshake and closes.
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(30), socket.read(&mut buffer))
        .await
        .expect("the server never closed a silent connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // The server still serves.
    let (cn, _, _) = served_certificate(server.addr, &pki.ca.pem, &[b"h2"]).await;
    assert_eq!(cn, "server-1");
}

#[tokio::test]
async fn a_client_certificate_names_the_principal_that_owns_its_runs() {
    let pki = TestPki::new();
    let root = std::env::current_dir().unwrap();
    let server = TestServer::serve(
        Server::new(registry_with(&root, vec![]), Limits::default())
            .with_tls(pki.server_tls(true))
            .with_auth(AuthConfig {
                principal_from_client_cert: true,
                ..AuthConfig::default()
            }),
    )
    .await;
    let alice = pki.channel(server.addr, Some("alice")).await.unwrap();
    let (events, status) = collect(
        ToolServiceClient::new(alice.clone())
            .run_tool(run_request("ticks", json!({"count": 1, "interval_ms": 0})))
            .await
            .expect("alice runs")
            .into_inner(),
    )
    .await;
    assert!(status.is_none(), "{status:?}");
    let run_id = events[0].run_id.clone();
    let run = server.engine.get_run(&run_id).await.unwrap();
    assert_eq!(
        run.owner.as_ref().map(|owner| owner.as_str()),
        Some("alice")
    );

    let mut runs = pb::run_service_client::RunServiceClient::new(alice);
    runs.get_run(pb::GetRunRequest {
        run_id: run_id.clone(),
    })
    .await
    .expect("alice sees her run");

    let bob = pki.channel(server.addr, Some("bob")).await.unwrap();
    let status = pb::run_service_client::RunServiceClient::new(bob)
        .get_run(pb::GetRunRequest { run_id })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
}

#[test]
fn the_cli_and_remote_tools_reach_a_server_with_tls_and_a_token() {
    use common::binary::{serve, toolstream};
    let pki = TestPki::new();
    let dir = pki.dir.path();
    std::fs::write(
        dir.join("secured.toml"),
        "[server]\ntls_cert = \"server.pem\"\ntls_key = \"server.key\"\n\
         tls_client_ca = \"ca.pem\"\n\n[[auth.tokens]]\nname = \"cli\"\n\
         token_env = \"SECURED_TOKEN\"\n",
    )
    .unwrap();
    let secured = serve(
        dir,
        &["--config", "secured.toml"],
        &[("SECURED_TOKEN", "cli-token-31337")],
    )
    .serving();
    let https = format!("https://{}", secured.addr);
    let ca = pki.ca_file.to_str().unwrap().to_owned();
    let cert = pki.path("alice.pem").to_str().unwrap().to_owned();
    let key = pki.path("alice.key").to_str().unwrap().to_owned();

    let listed = toolstream(dir, &["tools", "--addr", &https, "--tls-ca", &ca])
        .args(["--tls-cert", &cert, "--tls-key", &key])
        .env("TOOLSTREAM_TOKEN", "cli-token-31337")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success() && stdout.contains("ticks"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&listed.stderr)
    );

    let no_token = toolstream(dir, &["tools", "--addr", &https, "--tls-ca", &ca])
        .args(["--tls-cert", &cert, "--tls-key", &key])
        .output()
        .unwrap();
    assert!(!no_token.status.success());
    let stderr = String::from_utf8_lossy(&no_token.stderr);
    assert!(
        stderr.contains("UNAUTHENTICATED") || stderr.contains("Unauthenticated"),
        "{stderr}"
    );

    // A second server federates the first: its [[tools]] entry names the CA, a client
    // certificate and the token's variable; it lists the remote's tools under a prefix.
    std::fs::write(
        dir.join("front.toml"),
        format!(
            "[[tools]]\nkind = \"grpc\"\nendpoint = \"{https}\"\nprefix = \"secured.\"\n\
             tls_ca = \"ca.pem\"\ntls_cert = \"alice.pem\"\ntls_key = \"alice.key\"\n\
             token_env = \"REMOTE_TOKEN\"\n"
        ),
    )
    .unwrap();
    let front = serve(
        dir,
        &["--config", "front.toml"],
        &[("REMOTE_TOKEN", "cli-token-31337")],
    )
    .serving();
    let listed = front.client(dir, &["tools"]);
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(stdout.contains("secured.ticks"), "{stdout}");
    let ran = front.client(
        dir,
        &[
            "run",
            "secured.ticks",
            "--arg",
            "count=2",
            "--arg",
            "interval_ms=1",
        ],
    );
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
}

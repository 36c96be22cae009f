//! Clients that connect and do nothing cannot hold the server: a silent connection is closed
//! after `[http] first_byte_timeout_ms`, a request body that stalls is answered 408 after
//! `body_timeout_ms`, and beyond `max_connections` a new connection is closed at once. None of
//! it cuts a stream that is merely idle (SSE, gRPC).

use crate::common;
use std::time::Duration;

use crate::common::certs::TestPki;
use crate::common::web::{SseReader, http};
use crate::common::{TestServer, collect, eventually, registry_with, result_value, run_request};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use toolstream::config::{HttpConfig, Limits};
use toolstream::server::Server;

/// Short enough for a test; the server must never need more than a few of these.
const SHORT: Duration = Duration::from_millis(300);

/// How long a test waits for the server to close a connection before it fails.
const PATIENCE: Duration = Duration::from_secs(30);

async fn server_with(http: HttpConfig) -> TestServer {
    let root = std::env::current_dir().unwrap();
    TestServer::serve(Server::new(registry_with(&root, vec![]), Limits::default()).with_http(http))
        .await
}

/// Reads `socket` until the server closes it; what it sent before.
async fn until_closed(socket: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(PATIENCE, socket.read(&mut buffer))
            .await
            .expect("the server never closed the connection");
        match read {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&received).into_owned(),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

async fn healthz(server: &TestServer) -> Option<u16> {
    let response = http()
        .get(format!("{}/healthz", server.url()))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    response.ok().map(|response| response.status().as_u16())
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_first_byte_timeout() {
    let server = server_with(HttpConfig {
        first_byte_timeout: SHORT,
        ..HttpConfig::default()
    })
    .await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(until_closed(&mut silent).await, "", "closed without a word");
    assert_eq!(healthz(&server).await, Some(200));
}

#[tokio::test]
async fn a_silent_connection_after_the_tls_handshake_is_closed_too() {
    let pki = TestPki::new();
    let root = std::env::current_dir().unwrap();
    let server = TestServer::serve(
        Server::new(registry_with(&root, vec![]), Limits::default())
            .with_tls(pki.server_tls(false))
            .with_http(HttpConfig {
                first_byte_timeout: SHORT,
                ..HttpConfig::default()
            }),
    )
    .await;
    let mut silent = common::certs::tls_connection(server.addr, &pki.ca.pem, &[b"h2"]).await;
    assert_eq!(until_closed(&mut silent).await, "");
}

#[tokio::test]
async fn a_stalled_request_body_is_answered_408_and_its_connection_closed() {
    let server = server_with(HttpConfig {
        body_timeout: SHORT,
        ..HttpConfig::default()
    })
    .await;
    for promised in ["1000", "100000000"] {
        let mut socket = TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "POST /v1/tools/ticks/runs HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
             content-length: {promised}\r\n\r\n{{\"argu",
            server.addr
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        let answer = until_closed(&mut socket).await;
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "{promised} promised: {answer}"
        );
        assert!(answer.contains("body_timeout_ms"), "{answer}");
    }
    assert!(
        server.engine.active_runs() == 0,
        "no run started from half a body"
    );
}

#[tokio::test]
async fn beyond_max_connections_a_new_connection_is_closed_and_healthz_answers_once_they_go() {
    const MAX: usize = 3;
    let server = server_with(HttpConfig {
        max_connections: MAX,
        // Long: the silent connections are held until the test drops them.
        first_byte_timeout: Duration::from_secs(600),
        ..HttpConfig::default()
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..MAX {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // The next one is accepted after them (the listen queue is first in, first out) and closed.
    let mut refused = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(until_closed(&mut refused).await, "");
    assert_eq!(
        healthz(&server).await,
        None,
        "full: /healthz is refused too"
    );

    drop(silent);
    eventually(PATIENCE, "/healthz answers once the slots are free", || {
        let server = &server;
        async move { healthz(server).await == Some(200) }
    })
    .await;
}

#[tokio::test]
async fn streams_idle_longer_than_the_timeouts_still_deliver() {
    let server = server_with(HttpConfig {
        first_byte_timeout: SHORT,
        body_timeout: SHORT,
        ..HttpConfig::default()
    })
    .await;
    // Each tick comes a second after the last: the streams are idle over three times the
    // timeouts between events.
    let arguments = json!({"count": 2, "interval_ms": 1000});

    let response = http()
        .post(format!("{}/v1/tools/ticks/runs", server.url()))
        .json(&json!({ "arguments": arguments }))
        .send()
        .await
        .unwrap();
    let events = SseReader::new(response).rest().await;
    assert_eq!(
        events.last().map(|event| event.name()),
        Some("result"),
        "{events:?}"
    );

    let (events, status) = collect(
        server
            .client()
            .await
            .run_tool(run_request("ticks", arguments))
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert!(status.is_none(), "{status:?}");
    assert!(events.last().and_then(result_value).is_some(), "{events:?}");
}

#[tokio::test]
async fn a_websocket_session_keeps_its_connection_slot() {
    let server = server_with(HttpConfig {
        max_connections: 1,
        // Long: a connection the server took would stay open, not be closed by this timeout.
        first_byte_timeout: Duration::from_secs(600),
        ..HttpConfig::default()
    })
    .await;
    let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/ws", server.addr))
        .await
        .expect("WebSocket handshake");
    // The upgraded connection is no longer hyper's, but it is still open: the server is full.
    let mut refused = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(until_closed(&mut refused).await, "");

    drop(socket);
    eventually(PATIENCE, "/healthz answers once the session ended", || {
        let server = &server;
        async move { healthz(server).await == Some(200) }
    })
    .await;
}

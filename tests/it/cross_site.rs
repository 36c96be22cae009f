//! Cross-site requests with client-certificate principals: a browser presents its client
//! certificate whatever page asks, so a page on another site must not be able to start runs,
//! cancel them or open the WebSocket. Requests from the server's own origin, from an origin in
//! `[http] cors_origins`, and from clients that send no `Origin` (curl, gRPC clients) go on; JSON
//! routes take `application/json` only.

use crate::common;
use std::sync::Arc;

use crate::common::TestServer;
use crate::common::certs::TestPki;
use prost::Message as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use toolstream::auth::AuthConfig;
use toolstream::config::{HttpConfig, Limits};
use toolstream::engine::RunFilter;
use toolstream::server::Server;

const EVIL: &str = "https://evil.example";
const LISTED: &str = "https://app.example";

/// A server over mTLS whose principals are the client certificates' CNs, with one CORS origin.
async fn mtls_server(pki: &TestPki) -> TestServer {
    let root = std::env::current_dir().unwrap();
    TestServer::serve(
        Server::new(common::registry_with(&root, vec![]), Limits::default())
            .with_tls(pki.server_tls(true))
            .with_auth(AuthConfig {
                principal_from_client_cert: true,
                ..AuthConfig::default()
            })
            .with_http(HttpConfig {
                cors_origins: vec![LISTED.to_owned()],
                ..HttpConfig::default()
            }),
    )
    .await
}

/// An HTTP/1.1 client presenting alice's certificate, as a browser holding it would.
fn alice_http(pki: &TestPki) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(pki.ca.pem.as_bytes()).unwrap();
    let mut pem = std::fs::read(pki.path("alice.pem")).unwrap();
    pem.extend(std::fs::read(pki.path("alice.key")).unwrap());
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .http1_only()
        .build()
        .unwrap()
}

fn base(server: &TestServer) -> String {
    format!("https://localhost:{}", server.addr.port())
}

/// `POST /v1/tools/ticks/runs` with `origin` (or none) and `content_type`; the status and the
/// body (the SSE text, or the JSON error).
async fn start_ticks(
    http: &reqwest::Client,
    server: &TestServer,
    origin: Option<&str>,
    content_type: &str,
) -> (u16, String) {
    let mut request = http
        .post(format!("{}/v1/tools/ticks/runs", base(server)))
        .header("content-type", content_type)
        .body(json!({"arguments": {"count": 1, "interval_ms": 0}}).to_string());
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The ids of every run the server knows, newest first.
async fn run_ids(server: &TestServer) -> Vec<String> {
    let page = server
        .engine
        .list_runs(&RunFilter::default())
        .await
        .unwrap();
    page.runs.iter().map(|run| run.run_id.to_string()).collect()
}

/// The JSON error's code in `body`.
fn code(body: &str) -> String {
    let body: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("JSON error: {body}"));
    body["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_cross_site_post_is_refused_and_same_site_listed_and_non_browser_posts_run() {
    let pki = TestPki::new();
    let server = mtls_server(&pki).await;
    let http = alice_http(&pki);

    // What a page on evil.example can make the browser send without a preflight, and with one.
    for content_type in ["text/plain", "application/json"] {
        let (status, body) = start_ticks(&http, &server, Some(EVIL), content_type).await;
        assert_eq!(status, 403, "{content_type}: {body}");
        assert_eq!(code(&body), "PERMISSION_DENIED", "{body}");
        assert!(body.contains("cors_origins"), "{body}");
    }
    assert!(
        run_ids(&server).await.is_empty(),
        "no refused request started a run"
    );

    // The page's own origin, a configured origin, and no Origin (curl) start runs.
    let same = base(&server);
    for origin in [Some(same.as_str()), Some(LISTED), None] {
        let (status, body) = start_ticks(&http, &server, origin, "application/json").await;
        assert_eq!(status, 200, "{origin:?}: {body}");
        assert!(body.contains("event: result"), "{origin:?}: {body}");
    }

    // Cancelling is state-changing too.
    let run_id = run_ids(&server).await[0].clone();
    let cancel = |origin: &'static str| {
        http.post(format!("{}/v1/runs/{run_id}/cancel", base(&server)))
            .header("origin", origin)
            .send()
    };
    assert_eq!(cancel(EVIL).await.unwrap().status(), 403);
    assert_eq!(cancel(LISTED).await.unwrap().status(), 200);

    // Reading stays open to any origin: the same-origin policy keeps the answer from the page.
    let listed = http
        .get(format!("{}/v1/runs", base(&server)))
        .header("origin", EVIL)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
}

#[tokio::test]
async fn json_routes_take_application_json_only() {
    let pki = TestPki::new();
    let server = mtls_server(&pki).await;
    let http = alice_http(&pki);
    let same = base(&server);
    for origin in [Some(same.as_str()), None] {
        for content_type in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            let (status, body) = start_ticks(&http, &server, origin, content_type).await;
            assert_eq!(status, 415, "{origin:?} {content_type}: {body}");
            assert!(body.contains("Content-Type: application/json"), "{body}");
        }
    }
    let (status, body) = start_ticks(&http, &server, None, "application/json; charset=utf-8").await;
    assert_eq!(status, 200, "{body}");
    // A body without a content type is refused too (a page can send a Blob that has none).
    let response = http
        .post(format!("{same}/v1/tools/ticks/runs"))
        .body(r#"{"arguments": {"count": 1}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    // No body at all means the defaults, as before (ticks then misses its required count).
    let response = http
        .post(format!("{same}/v1/tools/ticks/runs"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body = response.text().await.unwrap();
    assert!(body.contains("required property"), "{body}");
}

/// Opens `/v1/ws` over mTLS as alice with `origin` (or none); the handshake's HTTP status.
async fn websocket_status(pki: &TestPki, server: &TestServer, origin: Option<&str>) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.pem.as_bytes()).unwrap())
        .unwrap();
    let chain = vec![CertificateDer::from_pem_file(pki.path("alice.pem")).unwrap()];
    let key = PrivateKeyDer::from_pem_file(pki.path("alice.key")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with alice's certificate");

    let mut request = format!("wss://localhost:{}/v1/ws", server.addr.port())
        .into_client_request()
        .unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::client_async(request, tls).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(error) => panic!("WebSocket handshake failed: {error}"),
    }
}

#[tokio::test]
async fn a_cross_site_websocket_upgrade_is_refused() {
    let pki = TestPki::new();
    let server = mtls_server(&pki).await;
    assert_eq!(websocket_status(&pki, &server, Some(EVIL)).await, 403);
    let same = base(&server);
    for origin in [Some(same.as_str()), Some(LISTED), None] {
        assert_eq!(
            websocket_status(&pki, &server, origin).await,
            101,
            "{origin:?}"
        );
    }
}

#[tokio::test]
async fn grpc_web_from_the_page_works_and_from_another_site_is_refused_in_grpc_terms() {
    let pki = TestPki::new();
    let server = mtls_server(&pki).await;
    let http = alice_http(&pki);
    let message = toolstream::pb::ListToolsRequest {}.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(&message);
    let list_tools = |origin: String| {
        http.post(format!(
            "{}/toolstream.v1.ToolService/ListTools",
            base(&server)
        ))
        .header("origin", origin)
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(framed.clone())
        .send()
    };
    for origin in [base(&server), LISTED.to_owned()] {
        let response = list_tools(origin.clone()).await.unwrap();
        assert_eq!(response.status(), 200, "{origin}");
        assert!(
            response.headers().get("grpc-status").is_none(),
            "{origin}: the status comes in the body's trailer frame: {:?}",
            response.headers()
        );
        let body = response.bytes().await.unwrap();
        assert!(
            String::from_utf8_lossy(&body).contains("grpc-status:0"),
            "{origin}: {body:?}"
        );
    }
    let refused = list_tools(EVIL.to_owned()).await.unwrap();
    assert_eq!(refused.headers()["grpc-status"], "7", "PERMISSION_DENIED");
    assert_eq!(
        refused.headers()["content-type"],
        "application/grpc-web+proto"
    );
}

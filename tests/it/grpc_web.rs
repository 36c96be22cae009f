//! gRPC-Web on the gRPC port, framed by hand as a browser's gRPC-Web client frames it (HTTP/1.1
//! POST, `application/grpc-web+proto` and `application/grpc-web-text`, length-prefixed messages,
//! the status in a trailer frame), and CORS for configured origins only.

use crate::common;
use crate::common::web::http;
use crate::common::{TestServer, registry_with};
use prost::Message;
use serde_json::json;
use toolstream::config::{HttpConfig, Limits};
use toolstream::pb;
use toolstream::server::Server;

/// A length-prefixed gRPC message frame.
fn frame(message: &impl Message) -> Vec<u8> {
    let bytes = message.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    framed.extend_from_slice(&bytes);
    framed
}

/// A gRPC-Web response body: its message frames and its trailers.
struct Reply {
    messages: Vec<Vec<u8>>,
    trailers: Vec<(String, String)>,
}

impl Reply {
    fn parse(mut body: &[u8]) -> Reply {
        let mut reply = Reply {
            messages: Vec::new(),
            trailers: Vec::new(),
        };
        while !body.is_empty() {
            assert!(body.len() >= 5, "a truncated frame header");
            let flags = body[0];
            let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
            let payload = &body[5..5 + len];
            if flags & 0x80 != 0 {
                let text = std::str::from_utf8(payload).expect("trailers are text");
                for line in text.split("\r\n").filter(|line| !line.is_empty()) {
                    let (name, value) = line.split_once(':').expect("name:value");
                    reply
                        .trailers
                        .push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
                }
            } else {
                assert_eq!(flags, 0, "uncompressed data frame");
                reply.messages.push(payload.to_vec());
            }
            body = &body[5 + len..];
        }
        reply
    }

    fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

async fn grpc_web_call(server: &TestServer, path: &str, body: Vec<u8>) -> reqwest::Response {
    http()
        .post(format!("{}{path}", server.url()))
        .header("content-type", "application/grpc-web+proto")
        .header("accept", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn run_tool_streams_over_grpc_web_with_the_status_in_a_trailer_frame() {
    let server = TestServer::start().await;
    let request = common::run_request("ticks", json!({"count": 3, "interval_ms": 1}));
    let response = grpc_web_call(
        &server,
        "/toolstream.v1.ToolService/RunTool",
        frame(&request),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/grpc-web"),
    );
    let run_id = response.headers()["x-run-id"].to_str().unwrap().to_owned();
    let reply = Reply::parse(&response.bytes().await.unwrap());
    assert_eq!(reply.trailer("grpc-status"), Some("0"));
    let events: Vec<pb::RunEvent> = reply
        .messages
        .iter()
        .map(|bytes| pb::RunEvent::decode(bytes.as_slice()).unwrap())
        .collect();
    assert_eq!(events.len(), 5);
    assert!(events.iter().all(|e| e.run_id == run_id));
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5]);
    assert_eq!(common::result_value(&events[4]), Some(json!({"count": 3})));
}

#[tokio::test]
async fn errors_and_unary_calls_work_over_grpc_web() {
    let server = TestServer::start().await;
    let response = grpc_web_call(
        &server,
        "/toolstream.v1.ToolService/ListTools",
        frame(&pb::ListToolsRequest {}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let reply = Reply::parse(&response.bytes().await.unwrap());
    assert_eq!(reply.trailer("grpc-status"), Some("0"));
    let tools = pb::ListToolsResponse::decode(reply.messages[0].as_slice()).unwrap();
    assert!(tools.tools.iter().any(|tool| tool.name == "ticks"));

    // An unknown tool: NOT_FOUND (5), in the headers of a trailers-only reply or in a trailer.
    let request = common::run_request("nope", json!({}));
    let response = grpc_web_call(
        &server,
        "/toolstream.v1.ToolService/RunTool",
        frame(&request),
    )
    .await;
    assert_eq!(response.status(), 200);
    let header_status = response
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned());
    let reply = Reply::parse(&response.bytes().await.unwrap());
    let status = header_status.or_else(|| reply.trailer("grpc-status").map(str::to_owned));
    assert_eq!(status.as_deref(), Some("5"));

    // RunService is reachable too.
    let response = grpc_web_call(
        &server,
        "/toolstream.v1.RunService/GetRun",
        frame(&pb::GetRunRequest {
            run_id: "r-unknown".into(),
        }),
    )
    .await;
    let header_status = response
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned());
    let reply = Reply::parse(&response.bytes().await.unwrap());
    let status = header_status.or_else(|| reply.trailer("grpc-status").map(str::to_owned));
    assert_eq!(status.as_deref(), Some("5"));
}

#[tokio::test]
async fn grpc_web_text_is_base64_both_ways() {
    let server = TestServer::start().await;
    let request = common::run_request("ticks", json!({"count": 2, "interval_ms": 1}));
    let response = http()
        .post(format!(
            "{}/toolstream.v1.ToolService/RunTool",
            server.url()
        ))
        .header("content-type", "application/grpc-web-text")
        .header("accept", "application/grpc-web-text")
        .header("x-grpc-web", "1")
        .body(base64_encode(&frame(&request)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let reply = Reply::parse(&base64_decode_segments(&text));
    assert_eq!(reply.trailer("grpc-status"), Some("0"));
    assert_eq!(reply.messages.len(), 4);
}

#[tokio::test]
async fn cors_allows_configured_origins_only_and_exposes_the_grpc_status() {
    let root = std::env::current_dir().unwrap();
    let http_config = HttpConfig {
        cors_origins: vec!["http://page.example".into()],
        ..HttpConfig::default()
    };
    let server = TestServer::serve(
        Server::new(registry_with(&root, vec![]), Limits::default()).with_http(http_config),
    )
    .await;
    let preflight = |origin: &'static str, path: &'static str| {
        let url = format!("{}{path}", server.url());
        async move {
            http()
                .request(reqwest::Method::OPTIONS, url)
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "content-type,x-grpc-web")
                .send()
                .await
                .unwrap()
        }
    };
    let allowed = preflight("http://page.example", "/toolstream.v1.ToolService/RunTool").await;
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://page.example"
    );
    let allowed_headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed_headers.contains("x-grpc-web"), "{allowed_headers}");
    let json_route = preflight("http://page.example", "/v1/tools/ticks/runs").await;
    assert_eq!(
        json_route.headers()["access-control-allow-origin"],
        "http://page.example"
    );
    let refused = preflight(
        "http://elsewhere.example",
        "/toolstream.v1.ToolService/RunTool",
    )
    .await;
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let request = common::run_request("ticks", json!({"count": 1, "interval_ms": 0}));
    let response = http()
        .post(format!(
            "{}/toolstream.v1.ToolService/RunTool",
            server.url()
        ))
        .header("origin", "http://page.example")
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(frame(&request))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://page.example"
    );
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("grpc-status") && exposed.contains("grpc-message"),
        "{exposed}"
    );
}

#[tokio::test]
async fn no_cors_headers_by_default() {
    let server = TestServer::start().await;
    let response = http()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/tools", server.url()),
        )
        .header("origin", "http://page.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let response = http()
        .get(format!("{}/v1/tools", server.url()))
        .header("origin", "http://page.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.len();
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= n {
                out.push(BASE64[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes base64 that may be several padded segments one after the other (a gRPC-Web-text
/// server may encode each frame on its own).
fn base64_decode_segments(text: &str) -> Vec<u8> {
    let symbols: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let mut out = Vec::new();
    for group in symbols.chunks(4) {
        assert_eq!(group.len(), 4, "base64 comes in groups of four");
        let mut v = 0u32;
        let mut pad = 0;
        for &symbol in group {
            v <<= 6;
            if symbol == b'=' {
                pad += 1;
            } else {
                let index = BASE64.iter().position(|&s| s == symbol).expect("base64");
                v |= index as u32;
            }
        }
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    out
}

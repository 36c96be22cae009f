//! Auth: bearer tokens on gRPC, gRPC-Web and HTTP (SSE, WebSocket, the run routes); what a token
//! may run and see; runs owned by their principal on every RunService call and its HTTP
//! equivalent; the per-principal limit; what stays open; and tokens kept out of the logs.

use crate::common;
use crate::common::model;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::common::{TestServer, collect, endless_tool, registry_with, run_request, with_token};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;
use toolstream::agent::openai::OpenAiProvider;
use toolstream::agent::{AgentSettings, ModelProvider};
use toolstream::auth::{AuthConfig, Principal, TokenEntry, ToolScope, token_digest};
use toolstream::config::Limits;
use toolstream::pb;
use toolstream::pb::run_service_client::RunServiceClient;
use toolstream::pb::tool_service_client::ToolServiceClient;
use toolstream::server::Server;

const ALPHA: &str = "alpha-token-7f3a9c";
const BETA: &str = "beta-token-1d8e42";

fn token(name: &str, secret: &str, tools: Option<&[&str]>) -> TokenEntry {
    TokenEntry {
        sha256: token_digest(secret),
        principal: Arc::new(Principal {
            name: Arc::from(name),
            tools: ToolScope::from_list(tools.map(|t| t.iter().map(|s| s.to_string()).collect())),
        }),
    }
}

/// alpha may run every tool; beta only `ticks` and `endless`.
fn auth() -> AuthConfig {
    AuthConfig {
        tokens: vec![
            token("alpha", ALPHA, None),
            token("beta", BETA, Some(&["ticks", "endless"])),
        ],
        ..AuthConfig::default()
    }
}

async fn server_with(limits: Limits, agent: Option<&str>) -> TestServer {
    let root = std::env::current_dir().unwrap();
    let registry = registry_with(&root, vec![endless_tool(Arc::new(AtomicBool::new(false)))]);
    let mut server = Server::new(registry, limits).with_auth(auth());
    if let Some(url) = agent {
        let provider: Arc<dyn ModelProvider> =
            Arc::new(OpenAiProvider::new(url, Some("model-key".into())).unwrap());
        server = server.with_agent(AgentSettings {
            provider: Some(provider),
            default_model: Some("standin".into()),
            ..AgentSettings::default()
        });
    }
    TestServer::serve(server).await
}

async fn server() -> TestServer {
    server_with(Limits::default(), None).await
}

fn detached(tool: &str) -> pb::RunToolRequest {
    let mut request = run_request(tool, json!({}));
    request.options = Some(pb::RunOptions {
        on_disconnect: pb::OnDisconnect::Continue as i32,
        ..Default::default()
    });
    request
}

/// Starts `endless` as `token`, detached; returns its run id.
async fn start_endless(channel: &Channel, token: &str) -> String {
    let response = ToolServiceClient::new(channel.clone())
        .run_tool(with_token(Some(token), detached("endless")))
        .await
        .expect("RunTool endless");
    response
        .metadata()
        .get("x-run-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

async fn list_tools(channel: &Channel, token: Option<&str>) -> Result<Vec<String>, tonic::Status> {
    let response = ToolServiceClient::new(channel.clone())
        .list_tools(with_token(token, pb::ListToolsRequest {}))
        .await?;
    Ok(response
        .into_inner()
        .tools
        .into_iter()
        .map(|t| t.name)
        .collect())
}

async fn list_runs(channel: &Channel, token: &str) -> Vec<String> {
    RunServiceClient::new(channel.clone())
        .list_runs(with_token(Some(token), pb::ListRunsRequest::default()))
        .await
        .expect("ListRuns")
        .into_inner()
        .runs
        .into_iter()
        .map(|run| run.run_id)
        .collect()
}

#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let server = server().await;
    let channel = server.channel().await;
    for token in [None, Some("wrong"), Some("")] {
        let status = list_tools(&channel, token).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{token:?}: {status:?}"
        );
    }
    let mut basic = tonic::Request::new(pb::ListToolsRequest {});
    basic
        .metadata_mut()
        .insert("authorization", "Basic YWxwaGE=".parse().unwrap());
    let status = ToolServiceClient::new(channel.clone())
        .list_tools(basic)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    let status = ToolServiceClient::new(channel.clone())
        .run_tool(run_request("ticks", json!({})))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let mut runs = RunServiceClient::new(channel.clone());
    let status = runs
        .list_runs(pb::ListRunsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = runs
        .get_run(with_token(
            Some("wrong"),
            pb::GetRunRequest { run_id: "x".into() },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // HTTP: 401 with the JSON error body and a WWW-Authenticate challenge.
    let http = common::web::http();
    for url in [
        format!("{}/v1/tools", server.url()),
        format!("{}/v1/tools?access_token=wrong", server.url()),
        format!("{}/v1/runs", server.url()),
    ] {
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 401, "{url}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "UNAUTHENTICATED", "{body}");
    }
    // A token in the query is for GET only (EventSource, WebSocket): a POST must use the header.
    let response = http
        .post(format!(
            "{}/v1/tools/ticks/runs?access_token={ALPHA}",
            server.url()
        ))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // gRPC-Web: the status in gRPC-Web terms.
    let response = http
        .post(format!(
            "{}/toolstream.v1.ToolService/ListTools",
            server.url()
        ))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["grpc-status"], "16");
    assert_eq!(
        response.headers()["content-type"],
        "application/grpc-web+proto"
    );
}

#[tokio::test]
async fn health_reflection_the_page_and_healthz_stay_open() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;

    let server = server().await;
    let channel = server.channel().await;
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health without a token")
        .into_inner();
    assert_eq!(health.status, 1);

    let mut reflection = ServerReflectionClient::new(channel);
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }]))
        .await
        .expect("reflection without a token")
        .into_inner();
    assert!(responses.next().await.unwrap().is_ok());

    let http = common::web::http();
    for path in ["/healthz", "/", "/assets/app.js"] {
        let response = http
            .get(format!("{}{path}", server.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn a_token_sees_and_runs_only_its_tools() {
    let server = server().await;
    let channel = server.channel().await;
    let mut beta = list_tools(&channel, Some(BETA)).await.unwrap();
    beta.sort();
    assert_eq!(beta, ["endless", "ticks"]);
    let alpha = list_tools(&channel, Some(ALPHA)).await.unwrap();
    assert!(alpha.iter().any(|t| t == "checksum"), "{alpha:?}");

    let status = ToolServiceClient::new(channel.clone())
        .run_tool(with_token(
            Some(BETA),
            run_request("checksum", json!({"paths": ["Cargo.toml"]})),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("checksum"), "{status:?}");

    let (events, status) = collect(
        ToolServiceClient::new(channel.clone())
            .run_tool(with_token(
                Some(BETA),
                run_request("ticks", json!({"count": 1, "interval_ms": 0})),
            ))
            .await
            .expect("beta runs ticks")
            .into_inner(),
    )
    .await;
    assert!(status.is_none() && !events.is_empty(), "{status:?}");

    // The same over HTTP.
    let http = common::web::http();
    let listed: Value = http
        .get(format!("{}/v1/tools", server.url()))
        .bearer_auth(BETA)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["tools"].as_array().unwrap().len(), 2, "{listed}");
    let response = http
        .post(format!("{}/v1/tools/checksum/runs", server.url()))
        .bearer_auth(BETA)
        .json(&json!({"arguments": {"paths": ["Cargo.toml"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "PERMISSION_DENIED");
}

#[tokio::test]
async fn an_agent_is_offered_only_the_tools_of_its_token() {
    let model = model::StandIn::start(vec![model::text(&["nothing to do"])]).await;
    let server = server_with(Limits::default(), Some(&model.url)).await;
    let channel = server.channel().await;
    let request = |tools: Vec<String>| pb::RunAgentRequest {
        prompt: "hello".into(),
        tools,
        ..Default::default()
    };
    let (_, status) = collect(
        ToolServiceClient::new(channel.clone())
            .run_agent(with_token(Some(BETA), request(vec![])))
            .await
            .expect("beta's agent")
            .into_inner(),
    )
    .await;
    assert!(status.is_none(), "{status:?}");
    let offered: Vec<String> = model.requests()[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["function"]["name"].as_str().unwrap().to_owned())
        .collect();
    let mut offered = offered;
    offered.sort();
    assert_eq!(offered, ["endless", "ticks"]);

    let status = ToolServiceClient::new(channel)
        .run_agent(with_token(Some(BETA), request(vec!["checksum".into()])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
}

#[tokio::test]
async fn another_principal_gets_not_found_on_every_run_service_call() {
    let server = server().await;
    let channel = server.channel().await;
    let run_id = start_endless(&channel, ALPHA).await;
    let mut runs = RunServiceClient::new(channel.clone());

    assert_eq!(
        common::run_service_codes(&channel, BETA, &run_id).await,
        [Code::NotFound; 3],
        "GetRun, WatchRun, CancelRun of another principal's run"
    );
    let beta_run = start_endless(&channel, BETA).await;
    assert_eq!(
        list_runs(&channel, BETA).await,
        std::slice::from_ref(&beta_run)
    );

    // Its owner sees it, still running: beta's CancelRun did nothing.
    let run = runs
        .get_run(with_token(
            Some(ALPHA),
            pb::GetRunRequest {
                run_id: run_id.clone(),
            },
        ))
        .await
        .expect("alpha's GetRun")
        .into_inner();
    assert_eq!(run.state, pb::RunState::Running as i32);
    assert_eq!(
        list_runs(&channel, ALPHA).await,
        std::slice::from_ref(&run_id)
    );
    let mut watch = runs
        .watch_run(with_token(
            Some(ALPHA),
            pb::WatchRunRequest {
                run_id: run_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("alpha's WatchRun")
        .into_inner();
    assert!(watch.message().await.unwrap().is_some());
    for (token, id) in [(ALPHA, run_id), (BETA, beta_run)] {
        let run = runs
            .cancel_run(with_token(Some(token), pb::CancelRunRequest { run_id: id }))
            .await
            .expect("the owner's CancelRun")
            .into_inner();
        assert_eq!(run.state, pb::RunState::Cancelled as i32);
    }
}

#[tokio::test]
async fn another_principal_gets_not_found_on_the_http_routes_and_the_websocket() {
    let server = server().await;
    let channel = server.channel().await;
    let run_id = start_endless(&channel, ALPHA).await;
    let http = common::web::http();
    let base = server.url();

    for (method, path) in [
        ("GET", format!("/v1/runs/{run_id}")),
        ("GET", format!("/v1/runs/{run_id}/events")),
        ("POST", format!("/v1/runs/{run_id}/cancel")),
    ] {
        let request = match method {
            "GET" => http.get(format!("{base}{path}")),
            _ => http.post(format!("{base}{path}")),
        };
        let response = request.bearer_auth(BETA).send().await.unwrap();
        assert_eq!(response.status(), 404, "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "NOT_FOUND");
    }
    let list_as = |token: &'static str| {
        let request = http.get(format!("{base}/v1/runs")).bearer_auth(token);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let listed = list_as(BETA).await;
    assert!(listed.get("runs").is_none(), "{listed}");
    let listed = list_as(ALPHA).await;
    assert_eq!(listed["runs"][0]["runId"], run_id.as_str(), "{listed}");

    // EventSource cannot set headers: the owner's token in the query opens the stream, and the
    // other parameters still count.
    let response = http
        .get(format!(
            "{base}/v1/runs/{run_id}/events?access_token={ALPHA}&from=latest"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        common::web::SseReader::new(response)
            .next_event()
            .await
            .is_some()
    );

    // The WebSocket: without a token the upgrade is refused; beta's socket cannot watch alpha's
    // run; alpha's can.
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/v1/ws", server.addr)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("expected 401, got {other:?}"),
    }
    for (token, expected) in [(BETA, "NOT_FOUND"), (ALPHA, "")] {
        let (mut socket, _) = tokio_tungstenite::connect_async(format!(
            "ws://{}/v1/ws?access_token={token}",
            server.addr
        ))
        .await
        .expect("WebSocket with a token");
        let watch = json!({"type": "watch", "id": "w", "runId": run_id, "fromLatest": true});
        socket
            .send(tokio_tungstenite::tungstenite::Message::Text(
                watch.to_string().into(),
            ))
            .await
            .unwrap();
        let frame = loop {
            match socket.next().await.unwrap().unwrap() {
                tokio_tungstenite::tungstenite::Message::Text(text) => {
                    break serde_json::from_str::<Value>(&text).unwrap();
                }
                _ => continue,
            }
        };
        if expected.is_empty() {
            assert!(frame.get("event").is_some(), "{frame}");
        } else {
            assert_eq!(frame["error"]["code"], expected, "{frame}");
        }
    }

    // Alpha cancels over HTTP.
    let response = http
        .post(format!("{base}/v1/runs/{run_id}/cancel"))
        .bearer_auth(ALPHA)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_principal_at_its_run_limit_gets_resource_exhausted_naming_it() {
    let limits = Limits {
        max_runs_per_owner: Some(1),
        ..Limits::default()
    };
    let server = server_with(limits, None).await;
    let channel = server.channel().await;
    let first = start_endless(&channel, ALPHA).await;

    let status = ToolServiceClient::new(channel.clone())
        .run_tool(with_token(Some(ALPHA), detached("endless")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("max_runs_per_principal") && status.message().contains("alpha"),
        "{status:?}"
    );
    // Another principal is not held back by alpha's runs.
    let beta = start_endless(&channel, BETA).await;

    // Once alpha's run ends, alpha may start another.
    let mut runs = RunServiceClient::new(channel.clone());
    for (token, run_id) in [(ALPHA, first), (BETA, beta)] {
        runs.cancel_run(with_token(Some(token), pb::CancelRunRequest { run_id }))
            .await
            .expect("cancel");
    }
    let again = start_endless(&channel, ALPHA).await;
    runs.cancel_run(with_token(
        Some(ALPHA),
        pb::CancelRunRequest { run_id: again },
    ))
    .await
    .expect("cancel");
}

#[test]
fn tokens_never_appear_in_the_server_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("toolstream.toml");
    let other = "other-token-55aa";
    std::fs::write(
        &config,
        format!(
            "[[auth.tokens]]\nname = \"env\"\ntoken_env = \"TS_TEST_TOKEN\"\n\n\
             [[auth.tokens]]\nname = \"digest\"\nsha256 = \"{}\"\ntools = [\"ticks\"]\n",
            hex(&token_digest(other))
        ),
    )
    .unwrap();
    let secret = "env-token-c0ffee-42";
    let served = common::binary::serve(
        dir.path(),
        &["--config", config.to_str().unwrap()],
        &[
            ("TS_TEST_TOKEN", secret),
            ("RUST_LOG", "debug,h2=info,hyper=info,rustls=info"),
        ],
    )
    .serving();
    let addr = served.addr.clone();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        for token in [secret, other, "wrong-token-9999"] {
            let _ = collect_or_status(&channel, token).await;
        }
        let http = common::web::http();
        for token in [secret, "wrong-token-9999"] {
            for path in [
                "/v1/tools".to_owned(),
                "/v1/runs/nope/events?after=x".to_owned(),
            ] {
                let sep = if path.contains('?') { '&' } else { '?' };
                let _ = http
                    .get(format!("http://{addr}{path}{sep}access_token={token}"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await;
                let _ = http
                    .get(format!("http://{addr}{path}"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await;
            }
        }
    });

    // Stop the server and read everything it logged (at debug level for toolstream).
    let log = served.stop_and_log();
    assert!(log.contains("toolstream serving"), "{log}");
    for token in [secret, other, "wrong-token-9999"] {
        assert!(!log.contains(token), "the log holds a token:\n{log}");
    }
}

async fn collect_or_status(channel: &Channel, token: &str) -> Result<(), tonic::Status> {
    let stream = ToolServiceClient::new(channel.clone())
        .run_tool(with_token(
            Some(token),
            run_request("ticks", json!({"count": 1, "interval_ms": 0})),
        ))
        .await?
        .into_inner();
    let (_, status) = collect(stream).await;
    status.map_or(Ok(()), Err)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

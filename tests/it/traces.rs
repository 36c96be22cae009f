//! OpenTelemetry traces: `toolstream serve` configured by `OTEL_*` variables exports its spans over
//! OTLP/gRPC to a collector (here a `TraceService` served by the test), a caller's `traceparent`
//! makes the run's span part of the caller's trace (gRPC or gRPC-Web metadata, HTTP headers, or a
//! WebSocket's upgrade request), a remote tool
//! call carries the trace to the remote toolstream, spans are flushed at shutdown, and shutdown
//! ends even when the collector is gone.

// The agent tests' model stand-in; this file uses only its plain text replies.

use crate::common;
use crate::common::model;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::binary::{Served, serve};
use crate::common::web::http;
use futures::{SinkExt, StreamExt};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use serde_json::json;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tonic::{Request, Response, Status};

/// One span the collector received: its service, name, trace id (hex) and string attributes.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace_id: String,
    attributes: HashMap<String, String>,
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

fn strings(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some((kv.key.clone(), s.clone())),
            AnyValue::IntValue(i) => Some((kv.key.clone(), i.to_string())),
            AnyValue::BoolValue(b) => Some((kv.key.clone(), b.to_string())),
            _ => None,
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| strings(&r.attributes))
                .unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(Received {
                        service: service.clone(),
                        name: span.name.clone(),
                        trace_id: hex(&span.trace_id),
                        attributes: strings(&span.attributes),
                    });
                }
            }
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Serves the collector on an ephemeral port; returns its `http://` endpoint.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        endpoint
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }
}

/// Sends SIGTERM and waits for the process to exit, failing the test if it never does.
async fn terminate(mut served: Served) {
    let pid = served.child.id() as libc::pid_t;
    // SAFETY: signalling a child process this test started and has not reaped.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    common::eventually(
        Duration::from_secs(60),
        "toolstream to exit after SIGTERM",
        async || served.child.try_wait().unwrap().is_some(),
    )
    .await;
}

fn otel_env<'a>(endpoint: &'a str, service: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_SERVICE_NAME", service),
    ]
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const HTTP_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const WS_TRACE_ID: &str = "5b8efff798038103d269b633813fc60c";
const GRPC_WEB_TRACE_ID: &str = "7d1c0a4ee1b2c3d4e5f60718293a4b5c";
const AGENT_TRACE_ID: &str = "9e3f2a1b0c4d5e6f708192a3b4c5d6e7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_trace_reaches_the_run_and_the_remote_toolstream_and_is_flushed_at_shutdown() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let dir = tempfile::tempdir().unwrap();

    let remote = serve(dir.path(), &[], &otel_env(&endpoint, "toolstream-remote")).serving();
    let config = dir.path().join("front.toml");
    std::fs::write(
        &config,
        format!(
            "[[tools]]\nkind = \"grpc\"\nendpoint = \"http://{}\"\nprefix = \"remote.\"\n",
            remote.addr
        ),
    )
    .unwrap();
    let front = serve(
        dir.path(),
        &["--config", config.to_str().unwrap()],
        &otel_env(&endpoint, "toolstream-front"),
    )
    .serving();

    // gRPC, with the caller's traceparent in the metadata.
    let mut client = toolstream::pb::tool_service_client::ToolServiceClient::connect(format!(
        "http://{}",
        front.addr
    ))
    .await
    .unwrap();
    let mut request = Request::new(common::run_request("remote.ticks", json!({"count": 3})));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    let response = client.run_tool(request).await.unwrap();
    let run_id = common::x_run_id(response.metadata());
    let (events, status) = common::collect(response.into_inner()).await;
    assert!(status.is_none(), "{status:?}");
    assert!(common::result_value(events.last().unwrap()).is_some());

    // HTTP (the SSE route), with the traceparent as a header.
    let sse = http()
        .post(format!("http://{}/v1/tools/ticks/runs", front.addr))
        .header(
            "traceparent",
            format!("00-{HTTP_TRACE_ID}-b7ad6b7169203331-01"),
        )
        .json(&json!({"arguments": {"count": 2}}))
        .send()
        .await
        .unwrap();
    assert!(sse.status().is_success(), "{}", sse.status());
    let body = sse.text().await.unwrap();
    assert!(body.contains("event: result"), "{body}");

    // gRPC-Web, with the traceparent as a header of the POST.
    let message = prost::Message::encode_to_vec(&common::run_request("ticks", json!({"count": 2})));
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(&message);
    let grpc_web = http()
        .post(format!(
            "http://{}/toolstream.v1.ToolService/RunTool",
            front.addr
        ))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header(
            "traceparent",
            format!("00-{GRPC_WEB_TRACE_ID}-e457b5a2e4d86bd1-01"),
        )
        .body(framed)
        .send()
        .await
        .unwrap();
    assert!(grpc_web.status().is_success(), "{}", grpc_web.status());
    let body = grpc_web.bytes().await.unwrap();
    assert!(
        String::from_utf8_lossy(&body).contains("grpc-status:0"),
        "the gRPC-Web call did not end OK: {body:?}"
    );

    // The WebSocket, with the traceparent on the upgrade request: the session's runs join it.
    let mut upgrade = format!("ws://{}/v1/ws", front.addr)
        .into_client_request()
        .unwrap();
    upgrade.headers_mut().insert(
        "traceparent",
        format!("00-{WS_TRACE_ID}-53995c3f42cd8ad8-01")
            .parse()
            .unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(upgrade).await.unwrap();
    let start = json!({"type": "run_tool", "id": "w1", "tool": "ticks", "arguments": {"count": 2}});
    socket
        .send(Message::Text(start.to_string().into()))
        .await
        .unwrap();
    loop {
        let message = socket.next().await.expect("the socket is open").unwrap();
        let Message::Text(text) = message else {
            continue;
        };
        let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(frame.get("error").is_none(), "{frame}");
        if frame["event"].get("result").is_some() {
            break;
        }
    }
    socket.close(None).await.unwrap();

    // The default export delay is 5 s: the spans arrive because shutdown flushes them.
    terminate(front).await;
    terminate(remote).await;

    let spans = collector.spans();
    let runs: Vec<&Received> = spans.iter().filter(|s| s.name == "run").collect();
    let front_run = runs
        .iter()
        .find(|s| s.service == "toolstream-front" && s.trace_id == TRACE_ID)
        .unwrap_or_else(|| panic!("no run span in the caller's trace: {spans:#?}"));
    assert_eq!(front_run.attributes.get("run.id"), Some(&run_id));
    assert_eq!(
        front_run.attributes.get("tool").map(String::as_str),
        Some("remote.ticks")
    );
    assert_eq!(
        front_run.attributes.get("grpc.code").map(String::as_str),
        Some("OK")
    );
    let remote_run = runs
        .iter()
        .find(|s| s.service == "toolstream-remote" && s.trace_id == TRACE_ID)
        .unwrap_or_else(|| panic!("the remote run is not in the caller's trace: {spans:#?}"));
    assert_eq!(
        remote_run.attributes.get("tool").map(String::as_str),
        Some("ticks")
    );
    // The front's own `ticks` runs, one in each caller's trace.
    for (trace_id, caller) in [
        (HTTP_TRACE_ID, "HTTP"),
        (GRPC_WEB_TRACE_ID, "gRPC-Web"),
        (WS_TRACE_ID, "WebSocket"),
    ] {
        let run = runs
            .iter()
            .find(|s| s.trace_id == trace_id)
            .unwrap_or_else(|| panic!("no run span in the {caller} caller's trace: {spans:#?}"));
        assert_eq!(run.service, "toolstream-front", "{caller}");
        assert_eq!(
            run.attributes.get("tool").map(String::as_str),
            Some("ticks"),
            "{caller}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_run_carries_the_callers_trace_to_the_model() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let model = model::StandIn::start(vec![model::text(&["All ", "done."])]).await;
    let dir = tempfile::tempdir().unwrap();
    let served = serve(
        dir.path(),
        &["--model-url", &model.url, "--model", "standin"],
        &otel_env(&endpoint, "toolstream-agent"),
    )
    .serving();

    let mut client = toolstream::pb::tool_service_client::ToolServiceClient::connect(format!(
        "http://{}",
        served.addr
    ))
    .await
    .unwrap();
    let mut request = Request::new(toolstream::pb::RunAgentRequest {
        prompt: "Say you are done.".into(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{AGENT_TRACE_ID}-a2fb4a1d1a96d312-01")
            .parse()
            .unwrap(),
    );
    let response = client.run_agent(request).await.unwrap();
    let run_id = common::x_run_id(response.metadata());
    let (events, status) = common::collect(response.into_inner()).await;
    assert!(status.is_none(), "{status:?}");
    assert!(common::result_value(events.last().unwrap()).is_some());
    terminate(served).await;

    // The model call went out inside the run's trace.
    let sent = model.traceparents();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let traceparent = sent[0]
        .as_deref()
        .expect("the model call carries a traceparent");
    assert!(
        traceparent.starts_with(&format!("00-{AGENT_TRACE_ID}-")),
        "{traceparent}"
    );
    let spans = collector.spans();
    let run = spans
        .iter()
        .find(|s| s.name == "run" && s.trace_id == AGENT_TRACE_ID)
        .unwrap_or_else(|| panic!("no agent run span in the caller's trace: {spans:#?}"));
    assert_eq!(run.attributes.get("run.id"), Some(&run_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_when_the_collector_is_gone() {
    // A port nothing listens on any more.
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path(), &[], &otel_env(&gone, "toolstream-alone")).serving();
    let (events, status) = {
        let mut client = toolstream::pb::tool_service_client::ToolServiceClient::connect(format!(
            "http://{}",
            served.addr
        ))
        .await
        .unwrap();
        let response = client
            .run_tool(common::run_request("ticks", json!({"count": 2})))
            .await
            .unwrap();
        common::collect(response.into_inner()).await
    };
    assert!(status.is_none(), "{status:?}");
    assert!(!events.is_empty());
    terminate(served).await;
}

#[test]
fn without_an_endpoint_no_exporter_is_made() {
    // The library's own check, from this process's environment (the test runner sets no OTEL_*).
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
        && std::env::var_os("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
    {
        let traces = toolstream::traces::Traces::from_env().unwrap();
        assert!(traces.is_none());
        assert!(!toolstream::traces::enabled());
    }
}

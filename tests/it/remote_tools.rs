//! Remote tools: a second toolstream server's tools appear in the registry with a prefix, runs
//! are forwarded and relayed, errors keep their meaning, cancellation propagates, and a remote that
//! goes away gives UNAVAILABLE while the local server keeps serving.

use crate::common;
use std::time::Duration;

use crate::common::alone::in_own_process;
use crate::common::{
    TestServer, collect, eventually, list_tools, registry_with, result_value, run_request, run_tool,
};
use serde_json::json;
use tonic::Code;
use toolstream::config::Limits;
use toolstream::pb::run_event::Event;

fn entry(endpoint: &str) -> toml::Table {
    toml::from_str(&format!(
        "kind = \"grpc\"\nendpoint = \"{endpoint}\"\nprefix = \"remote.\"\n"
    ))
    .unwrap()
}

/// Server B, whose `remote.*` tools are server A's.
async fn federated(remote: &TestServer) -> TestServer {
    federated_at(&remote.url(), Limits::default()).await
}

/// Server B with `limits`, whose `remote.*` tools are those of the server at `endpoint`.
async fn federated_at(endpoint: &str, limits: Limits) -> TestServer {
    let root = std::env::current_dir().unwrap();
    let mut registry = registry_with(&root, vec![]);
    toolstream::configured_tools::load_entries(&[entry(endpoint)], &root, &limits, &mut registry)
        .await
        .unwrap();
    TestServer::start_with(registry, limits).await
}

#[tokio::test]
async fn remote_tools_are_listed_with_prefix_and_kind() {
    let a = TestServer::start().await;
    let b = federated(&a).await;
    let tools = list_tools(&b).await;
    let remote_ticks = tools.iter().find(|t| t.name == "remote.ticks").unwrap();
    assert_eq!(remote_ticks.kind, "grpc");
    assert!(remote_ticks.input_schema.is_some());
    assert!(tools.iter().any(|t| t.name == "remote.checksum"));
    assert!(
        tools
            .iter()
            .any(|t| t.name == "ticks" && t.kind == "native")
    );
}

#[tokio::test]
async fn runs_are_forwarded_and_progress_relayed() {
    let a = TestServer::start().await;
    let b = federated(&a).await;
    let (events, status) = collect(
        b.client()
            .await
            .run_tool(run_request(
                "remote.ticks",
                json!({"count": 4, "interval_ms": 1}),
            ))
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert!(status.is_none(), "{status:?}");
    let statuses: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Progress(p)) => p.status.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(statuses.last().map(String::as_str), Some("tick 4/4"));
    assert_eq!(
        result_value(events.last().unwrap()),
        Some(json!({"count": 4}))
    );
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Order {
    #[allow(dead_code)]
    item: String,
}

/// Server A with one more tool, `refuse`, that always fails with a message of its own.
async fn remote_with_refuse() -> TestServer {
    use toolstream::tools::native::tool_fn;
    use toolstream::tools::{Progress, ToolError};
    let refuse = tool_fn(
        "refuse",
        "Always fails.",
        |order: Order, _: Progress| async move {
            Err::<(), _>(ToolError::Failed(format!("out of {}", order.item)))
        },
    );
    let root = std::env::current_dir().unwrap();
    TestServer::start_with(
        registry_with(&root, vec![std::sync::Arc::new(refuse)]),
        Limits::default(),
    )
    .await
}

#[tokio::test]
async fn remote_errors_keep_their_code_and_message() {
    let a = remote_with_refuse().await;
    let b = federated(&a).await;
    // B validates against the remote's schema before forwarding.
    let status = b
        .client()
        .await
        .run_tool(run_request("remote.ticks", json!({"count": "x"})))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // Errors only the remote can see come back with its code, its message and the endpoint.
    let cases = [
        (
            "remote.checksum",
            json!({"paths": [""]}),
            Code::InvalidArgument,
            "empty",
        ),
        (
            "remote.checksum",
            json!({"paths": ["no-such-file.bin"]}),
            Code::NotFound,
            "no such file",
        ),
        (
            "remote.checksum",
            json!({"paths": ["../../etc/passwd"]}),
            Code::PermissionDenied,
            "outside the root",
        ),
        (
            "remote.refuse",
            json!({"item": "coffee"}),
            Code::Aborted,
            "out of coffee",
        ),
    ];
    for (tool, arguments, code, message) in cases {
        let (_, status) = run_tool(&b, tool, arguments.clone()).await;
        let status = status.unwrap_or_else(|| panic!("{tool} {arguments} failed"));
        assert_eq!(status.code(), code, "{tool} {arguments}: {status:?}");
        assert!(status.message().contains(message), "{}", status.message());
        assert!(status.message().contains(&a.url()), "{}", status.message());
    }
}

#[tokio::test]
async fn cancelling_on_the_local_server_cancels_the_remote_run() {
    let a = TestServer::start().await;
    let b = federated(&a).await;
    let mut stream = b
        .client()
        .await
        .run_tool(run_request(
            "remote.ticks",
            json!({"count": 1000, "interval_ms": 20}),
        ))
        .await
        .unwrap()
        .into_inner();
    loop {
        let event = stream.message().await.unwrap().unwrap();
        if matches!(event.event, Some(Event::Progress(_))) {
            break;
        }
    }
    assert_eq!(a.engine.active_runs(), 1);
    drop(stream);
    eventually(
        Duration::from_secs(10),
        "the remote run to end",
        async || a.engine.active_runs() == 0,
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the local run to end",
        async || b.engine.active_runs() == 0,
    )
    .await;
}

#[tokio::test]
async fn a_local_deadline_ends_the_remote_run_too() {
    let a = TestServer::start().await;
    let b = federated(&a).await;
    let mut request = tonic::Request::new(run_request(
        "remote.ticks",
        json!({"count": 1000, "interval_ms": 20}),
    ));
    request.set_timeout(Duration::from_millis(300));
    let (_, status) = collect(
        b.client()
            .await
            .run_tool(request)
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert_eq!(status.unwrap().code(), Code::DeadlineExceeded);
    eventually(
        Duration::from_secs(10),
        "the remote run to end",
        async || a.engine.active_runs() == 0,
    )
    .await;
}

#[tokio::test]
async fn a_remote_that_went_away_is_unavailable_and_local_tools_still_work() {
    // It shuts its server down, which stops every tool process of the process.
    if !in_own_process(
        "remote_tools::a_remote_that_went_away_is_unavailable_and_local_tools_still_work",
    ) {
        return;
    }
    let mut a = TestServer::start().await;
    let endpoint = a.url();
    let b = federated(&a).await;
    a.begin_shutdown().await.unwrap().unwrap();
    drop(a);

    let (_, status) = run_tool(&b, "remote.ticks", json!({"count": 1})).await;
    let status = status.unwrap();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains(&endpoint), "{}", status.message());

    let (events, status) = run_tool(&b, "ticks", json!({"count": 1, "interval_ms": 0})).await;
    assert!(status.is_none());
    assert_eq!(
        result_value(events.last().unwrap()),
        Some(json!({"count": 1}))
    );
}

#[tokio::test]
async fn an_unreachable_remote_at_start_up_is_a_source_without_tools_but_a_bad_entry_is_an_error() {
    // A socket bound but not listening: the port stays ours (no other test can take it) and
    // every connection to it is refused.
    let reserved = tokio::net::TcpSocket::new_v4().unwrap();
    reserved.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed = reserved.local_addr().unwrap();
    let root = std::env::current_dir().unwrap();
    let mut registry = registry_with(&root, vec![]);
    let before = registry.specs().len();
    // Not an error: the server starts without the remote's tools and lists them when it answers.
    toolstream::configured_tools::load_entries(
        &[entry(&format!("http://{closed}"))],
        &root,
        &Limits::default(),
        &mut registry,
    )
    .await
    .expect("an unreachable remote does not stop start-up");
    assert_eq!(registry.specs().len(), before);
    let sources = registry.sources();
    assert_eq!(sources.len(), 1, "{sources:?}");
    assert!(
        !sources[0].reachable && sources[0].tools == 0,
        "{sources:?}"
    );
    assert!(
        sources[0].source.contains(&closed.to_string())
            && sources[0]
                .error
                .as_deref()
                .is_some_and(|e| e.contains(&closed.to_string())),
        "{sources:?}"
    );

    let bad: toml::Table =
        toml::from_str("kind = \"grpc\"\nendpoint = \"x\"\nprefx = \"r.\"\n").unwrap();
    let error = toolstream::configured_tools::load_entries(
        &[bad],
        &root,
        &Limits::default(),
        &mut registry,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("prefx"), "{error}");
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Size {
    bytes: usize,
}

/// Server A with one more tool, `big`, whose result is a string of `bytes` bytes, and `limits`.
async fn remote_with_big(limits: Limits) -> TestServer {
    use toolstream::tools::native::tool_fn;
    use toolstream::tools::{Progress, ToolError};
    let big = tool_fn(
        "big",
        "Answers with a long string.",
        |size: Size, _: Progress| async move { Ok::<_, ToolError>("x".repeat(size.bytes)) },
    );
    let root = std::env::current_dir().unwrap();
    TestServer::start_with(registry_with(&root, vec![std::sync::Arc::new(big)]), limits).await
}

#[tokio::test]
async fn a_remote_result_above_4_mib_passes_when_max_message_bytes_allows_it() {
    const LIMIT: usize = 8 * 1024 * 1024;
    const RESULT: usize = 5 * 1024 * 1024;
    let raised = Limits {
        max_message_bytes: LIMIT,
        ..Limits::default()
    };
    let a = remote_with_big(raised).await;
    let b = federated_at(&a.url(), raised).await;

    let (events, status) = collect(
        b.client()
            .await
            .max_decoding_message_size(LIMIT)
            .run_tool(run_request("remote.big", json!({"bytes": RESULT})))
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert!(status.is_none(), "{status:?}");
    let value = result_value(events.last().unwrap()).unwrap();
    assert_eq!(value.as_str().map(str::len), Some(RESULT));
}

#[tokio::test]
async fn a_remote_out_of_range_stays_out_of_range() {
    // A's limit is small enough that a long argument is refused, large enough for its tool list.
    let a = TestServer::start_with(
        registry_with(&std::env::current_dir().unwrap(), vec![]),
        Limits {
            max_message_bytes: 64 * 1024,
            ..Limits::default()
        },
    )
    .await;
    let b = federated(&a).await;
    let long_path = "x".repeat(128 * 1024);
    let (_, status) = run_tool(&b, "remote.checksum", json!({"paths": [long_path]})).await;
    let status = status.unwrap();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains(&a.url()), "{}", status.message());
    assert!(
        status.message().contains("too large"),
        "{}",
        status.message()
    );
}

/// A TCP relay to a server that can be frozen: it then passes no more bytes either way but keeps
/// both connections open, which is what a network partition looks like to the two ends.
struct Relay {
    addr: std::net::SocketAddr,
    frozen: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(target: std::net::SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = tokio_util::sync::CancellationToken::new();
        let freeze = frozen.clone();
        let task = tokio::spawn(async move {
            // Dropped (so every connection closes) when the relay's task is aborted.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                let (from_client, to_client) = inbound.into_split();
                let (from_server, to_server) = outbound.into_split();
                connections.spawn(pass(from_client, to_server, freeze.clone()));
                connections.spawn(pass(from_server, to_client, freeze.clone()));
            }
        });
        Relay { addr, frozen, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn freeze(&self) {
        self.frozen.cancel();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to` until either closes, or until `frozen`: then holds both open forever.
async fn pass(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: tokio_util::sync::CancellationToken,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::select! {
            biased;
            _ = frozen.cancelled() => break,
            read = from.read(&mut buffer) => read,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.is_cancelled() {
            break;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
    let _held = (from, to);
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn the_remote_ends_the_run_at_the_local_deadline_even_when_cancellation_cannot_reach_it() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stopped = Arc::new(AtomicBool::new(false));
    let root = std::env::current_dir().unwrap();
    let a = TestServer::start_with(
        registry_with(&root, vec![common::endless_tool(Arc::clone(&stopped))]),
        Limits::default(),
    )
    .await;
    // B reaches A through a relay, so the test can cut B off from A.
    let relay = Relay::start(a.addr).await;
    let b = federated_at(&relay.url(), Limits::default()).await;

    let mut request = tonic::Request::new(run_request("remote.endless", json!({})));
    request.set_timeout(Duration::from_secs(2));
    let stream = b
        .client()
        .await
        .run_tool(request)
        .await
        .unwrap()
        .into_inner();
    eventually(
        Duration::from_secs(10),
        "the remote run to start",
        async || a.engine.active_runs() == 1,
    )
    .await;
    // From now on B's cancellation cannot reach A: only a deadline A knows of can end A's run
    // (the HTTP/2 keepalive would notice the partition only after 40 s).
    relay.freeze();

    let (_, status) = collect(stream).await;
    assert_eq!(status.unwrap().code(), Code::DeadlineExceeded);
    eventually(
        Duration::from_secs(10),
        "the remote run to end at its own deadline",
        async || a.engine.active_runs() == 0,
    )
    .await;
    assert!(
        stopped.load(Ordering::SeqCst),
        "the remote tool was dropped"
    );
}

#[tokio::test]
async fn a_relayed_remote_runs_tree_arrives_nested_and_unique() {
    let root = std::env::current_dir().unwrap();
    let a = TestServer::start_with(
        registry_with(&root, vec![common::nested_tool()]),
        Limits::default(),
    )
    .await;
    let b = federated(&a).await;
    let arguments = json!({"items": 2, "deep": true});
    let (direct, _) = run_tool(&a, "nested", arguments.clone()).await;
    let (relayed, status) = run_tool(&b, "remote.nested", arguments).await;
    assert!(status.is_none(), "{status:?}");
    // Through RunTool the relaying call is the run's top level: the remote's tree arrives as it
    // is, node for node, with its ids and parents (the estimates are B's own).
    let direct = common::progress_nodes(&direct);
    let relayed = common::progress_nodes(&relayed);
    assert_eq!(relayed, direct);
    assert!(relayed.iter().any(|node| node.0 == "2/3" && node.1 == "2"));
}

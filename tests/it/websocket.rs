//! `/v1/ws`: many runs over one socket, each id ending exactly once, cancel by id, watch, errors
//! for malformed messages with the socket kept open, the bound on calls in flight, closing the
//! socket as a disconnect for its runs, and a close frame when the server shuts down.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::alone::in_own_process;
use crate::common::model::{StandIn, text, tool_calls};
use crate::common::web::event_key;
use crate::common::{TestServer, endless_tool, eventually, registry_with, run_is};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use toolstream::agent::AgentSettings;
use toolstream::agent::openai::OpenAiProvider;
use toolstream::config::{HttpConfig, Limits};
use toolstream::engine::RunState;
use toolstream::server::Server;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn server_with(stopped: Arc<AtomicBool>, http: HttpConfig) -> TestServer {
    let root = std::env::current_dir().unwrap();
    TestServer::serve(
        Server::new(
            registry_with(&root, vec![endless_tool(stopped)]),
            Limits::default(),
        )
        .with_http(http),
    )
    .await
}

async fn connect(server: &TestServer) -> Socket {
    let (socket, response) =
        tokio_tungstenite::connect_async(format!("ws://{}/v1/ws", server.addr))
            .await
            .expect("WebSocket handshake");
    assert_eq!(response.status(), 101);
    socket
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

/// The next JSON text frame (pings and pongs skipped).
async fn next(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(60), socket.next())
            .await
            .expect("a frame within 60 s")
            .expect("the socket is open")
            .expect("a valid frame");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Reads frames until every id in `ids` ended; returns each id's frames in order.
async fn until_ended(socket: &mut Socket, ids: &[&str]) -> HashMap<String, Vec<Value>> {
    let mut frames: HashMap<String, Vec<Value>> = HashMap::new();
    let mut open: Vec<&str> = ids.to_vec();
    while !open.is_empty() {
        let frame = next(socket).await;
        let id = frame["id"]
            .as_str()
            .expect("frames name their id")
            .to_owned();
        assert!(
            open.contains(&id.as_str()),
            "a frame for {id}, which already ended or was never asked for: {frame}"
        );
        let ended = frame.get("error").is_some() || frame["event"].get("result").is_some();
        frames.entry(id.clone()).or_default().push(frame);
        if ended {
            open.retain(|open| *open != id);
        }
    }
    frames
}

#[tokio::test]
async fn many_runs_share_one_socket_and_each_id_ends_exactly_once() {
    let server = server_with(Arc::default(), HttpConfig::default()).await;
    let mut socket = connect(&server).await;
    send(
        &mut socket,
        json!({"type": "run_tool", "id": "c1", "tool": "ticks", "arguments": {"count": 3, "interval_ms": 5}}),
    )
    .await;
    send(
        &mut socket,
        json!({"type": "run_tool", "id": "c2", "tool": "ticks", "arguments": {"count": 5, "interval_ms": 2}}),
    )
    .await;
    send(
        &mut socket,
        json!({"type": "run_tool", "id": "c3", "tool": "nope"}),
    )
    .await;
    let frames = until_ended(&mut socket, &["c1", "c2", "c3"]).await;

    for (id, count) in [("c1", 3), ("c2", 5)] {
        let events: Vec<&Value> = frames[id].iter().map(|f| &f["event"]).collect();
        let kinds: Vec<String> = events.iter().map(|e| event_key(e)).collect();
        assert_eq!(
            kinds.first().map(String::as_str),
            Some("started"),
            "{kinds:?}"
        );
        assert_eq!(
            kinds.last().map(String::as_str),
            Some("result"),
            "{kinds:?}"
        );
        assert_eq!(kinds.len(), count + 2, "{kinds:?}");
        let run_id = &events[0]["runId"];
        assert!(events.iter().all(|e| &e["runId"] == run_id));
        assert_eq!(
            events.last().unwrap()["result"]["value"],
            json!({"count": count})
        );
    }
    assert_ne!(
        frames["c1"][0]["event"]["runId"],
        frames["c2"][0]["event"]["runId"]
    );
    assert_eq!(frames["c3"].len(), 1);
    assert_eq!(frames["c3"][0]["error"]["code"], "NOT_FOUND");

    // The socket goes on serving after all that.
    send(
        &mut socket,
        json!({"type": "run_tool", "id": "c1", "tool": "ticks", "arguments": {"count": 1, "interval_ms": 0}}),
    )
    .await;
    let again = until_ended(&mut socket, &["c1"]).await;
    assert!(again["c1"].last().unwrap()["event"].get("result").is_some());
}

#[tokio::test]
async fn cancel_by_id_stops_that_run_only() {
    let stopped = Arc::new(AtomicBool::new(false));
    let server = server_with(Arc::clone(&stopped), HttpConfig::default()).await;
    let mut socket = connect(&server).await;
    send(
        &mut socket,
        json!({"type": "run_tool", "id": "forever", "tool": "endless"}),
    )
    .await;
    send(
        &mut socket,
        json!({"type": "run_tool", "id": "short", "tool": "ticks", "arguments": {"count": 20, "interval_ms": 20}}),
    )
    .await;
    // Wait until the endless run has started, then cancel it.
    loop {
        let frame = next(&mut socket).await;
        if frame["id"] == "forever" {
            break;
        }
    }
    send(&mut socket, json!({"type": "cancel", "id": "forever"})).await;
    // Cancelling an id not in flight does nothing.
    send(
        &mut socket,
        json!({"type": "cancel", "id": "never-started"}),
    )
    .await;
    let frames = until_ended(&mut socket, &["forever", "short"]).await;
    let end = frames["forever"].last().unwrap();
    assert_eq!(end["error"]["code"], "CANCELLED", "{end}");
    assert!(
        frames["short"].last().unwrap()["event"]
            .get("result")
            .is_some()
    );
    eventually(
        Duration::from_secs(10),
        "the endless tool to stop",
        async || stopped.load(Ordering::SeqCst),
    )
    .await;
}

#[tokio::test]
async fn watch_replays_a_run_and_cancel_stops_only_the_watch() {
    let stopped = Arc::new(AtomicBool::new(false));
    let server = server_with(Arc::clone(&stopped), HttpConfig::default()).await;
    let mut socket = connect(&server).await;
    send(
        &mut socket,
        json!({"type": "run_tool", "id": "r", "tool": "ticks", "arguments": {"count": 4, "interval_ms": 1}}),
    )
    .await;
    let run = until_ended(&mut socket, &["r"]).await;
    let run_id = run["r"][0]["event"]["runId"].as_str().unwrap().to_owned();

    send(
        &mut socket,
        json!({"type": "watch", "id": "w1", "runId": run_id, "after": "2"}),
    )
    .await;
    send(
        &mut socket,
        json!({"type": "watch", "id": "w2", "runId": run_id, "fromLatest": true}),
    )
    .await;
    let watched = until_ended(&mut socket, &["w1", "w2"]).await;
    let sequences: Vec<&str> = watched["w1"]
        .iter()
        .map(|f| f["event"]["sequence"].as_str().unwrap())
        .collect();
    assert_eq!(sequences, ["3", "4", "5", "6"]);
    assert_eq!(event_key(&watched["w2"][0]["event"]), "started");
    assert_eq!(event_key(&watched["w2"].last().unwrap()["event"]), "result");

    // A watch of a running run, stopped: the watch ends, the run goes on.
    send(
        &mut socket,
        json!({"type": "run_tool", "id": "e", "tool": "endless", "options": {"onDisconnect": "ON_DISCONNECT_CONTINUE"}}),
    )
    .await;
    let started = next(&mut socket).await;
    assert_eq!(started["id"], "e");
    let endless_id = started["event"]["runId"].as_str().unwrap().to_owned();
    send(
        &mut socket,
        json!({"type": "watch", "id": "w3", "runId": endless_id}),
    )
    .await;
    loop {
        let frame = next(&mut socket).await;
        if frame["id"] == "w3" {
            break;
        }
    }
    send(&mut socket, json!({"type": "cancel", "id": "w3"})).await;
    loop {
        let frame = next(&mut socket).await;
        if frame["id"] == "w3" && frame.get("error").is_some() {
            assert_eq!(frame["error"]["code"], "CANCELLED");
            break;
        }
    }
    assert_eq!(
        server.engine.get_run(&endless_id).await.unwrap().state,
        RunState::Running
    );
    assert!(!stopped.load(Ordering::SeqCst));

    send(
        &mut socket,
        json!({"type": "watch", "id": "w4", "runId": "no-such-run"}),
    )
    .await;
    let unknown = until_ended_ignoring(&mut socket, "w4").await;
    assert_eq!(unknown["error"]["code"], "NOT_FOUND");
}

/// The frame that ends `id`, skipping frames of other ids.
async fn until_ended_ignoring(socket: &mut Socket, id: &str) -> Value {
    loop {
        let frame = next(socket).await;
        if frame["id"] == id
            && (frame.get("error").is_some() || frame["event"].get("result").is_some())
        {
            return frame;
        }
    }
}

#[tokio::test]
async fn malformed_messages_get_errors_and_the_socket_stays_open() {
    let server = server_with(
        Arc::default(),
        HttpConfig {
            ws_max_runs: 2,
            ..HttpConfig::default()
        },
    )
    .await;
    let mut socket = connect(&server).await;

    socket
        .send(Message::Text("this is not JSON".into()))
        .await
        .unwrap();
    let error = next(&mut socket).await;
    assert!(error.get("id").is_none(), "{error}");
    assert_eq!(error["error"]["code"], "INVALID_ARGUMENT");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not JSON")
    );

    socket
        .send(Message::Binary(vec![1u8, 2, 3].into()))
        .await
        .unwrap();
    let error = next(&mut socket).await;
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("binary")
    );

    send(&mut socket, json!({"type": "dance", "id": "d1"})).await;
    let error = next(&mut socket).await;
    assert_eq!(error["id"], "d1");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("dance")
    );

    send(&mut socket, json!({"type": "run_tool", "tool": "ticks"})).await;
    let error = next(&mut socket).await;
    assert!(error.get("id").is_none(), "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("id"));

    send(
        &mut socket,
        json!({"type": "run_tool", "id": "t1", "tool": "ticks", "argumnts": {"count": 1}}),
    )
    .await;
    let error = next(&mut socket).await;
    assert_eq!(error["id"], "t1");
    assert_eq!(error["error"]["code"], "INVALID_ARGUMENT");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("argumnts")
    );

    send(
        &mut socket,
        json!({"type": "run_tool", "id": "t2", "tool": "ticks", "arguments": {"count": "many"}}),
    )
    .await;
    let error = next(&mut socket).await;
    assert_eq!(error["id"], "t2");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("count")
    );

    // Two calls in flight (the socket's limit): a third is refused, a reused id too.
    for id in ["e1", "e2"] {
        send(
            &mut socket,
            json!({"type": "run_tool", "id": id, "tool": "endless"}),
        )
        .await;
    }
    send(
        &mut socket,
        json!({"type": "run_tool", "id": "e1", "tool": "endless"}),
    )
    .await;
    send(
        &mut socket,
        json!({"type": "run_tool", "id": "e3", "tool": "endless"}),
    )
    .await;
    let mut refusals = HashMap::new();
    while refusals.len() < 2 {
        let frame = next(&mut socket).await;
        if let Some(error) = frame.get("error") {
            refusals.insert(frame["id"].as_str().unwrap().to_owned(), error.clone());
        }
    }
    assert_eq!(refusals["e1"]["code"], "INVALID_ARGUMENT");
    assert!(
        refusals["e1"]["message"]
            .as_str()
            .unwrap()
            .contains("in use")
    );
    assert_eq!(refusals["e3"]["code"], "RESOURCE_EXHAUSTED");

    // Still open: a run goes through (once the cancelled call ended: until its end is sent, it
    // holds its place among the calls in flight).
    send(&mut socket, json!({"type": "cancel", "id": "e1"})).await;
    until_ended_ignoring(&mut socket, "e1").await;
    send(
        &mut socket,
        json!({"type": "run_tool", "id": "ok", "tool": "ticks", "arguments": {"count": 1, "interval_ms": 0}}),
    )
    .await;
    let end = until_ended_ignoring(&mut socket, "ok").await;
    assert!(end["event"].get("result").is_some(), "{end}");
}

#[tokio::test]
async fn closing_the_socket_cancels_its_runs() {
    let stopped = Arc::new(AtomicBool::new(false));
    let server = server_with(Arc::clone(&stopped), HttpConfig::default()).await;
    let mut socket = connect(&server).await;
    send(
        &mut socket,
        json!({"type": "run_tool", "id": "x", "tool": "endless"}),
    )
    .await;
    let started = next(&mut socket).await;
    let run_id = started["event"]["runId"].as_str().unwrap().to_owned();
    socket.close(None).await.unwrap();
    drop(socket);
    eventually(
        Duration::from_secs(10),
        "the endless tool to stop",
        async || stopped.load(Ordering::SeqCst),
    )
    .await;
    let engine = Arc::clone(&server.engine);
    eventually(Duration::from_secs(10), "the run to be cancelled", || {
        run_is(&engine, &run_id, RunState::Cancelled)
    })
    .await;
}

#[tokio::test]
async fn a_socket_is_closed_with_going_away_when_the_server_shuts_down() {
    // It shuts its server down, which stops every tool process of the process.
    if !in_own_process("websocket::a_socket_is_closed_with_going_away_when_the_server_shuts_down") {
        return;
    }
    let root = std::env::current_dir().unwrap();
    let limits = Limits {
        grace_period: Duration::from_millis(200),
        ..Limits::default()
    };
    let stopped = Arc::new(AtomicBool::new(false));
    let mut server = TestServer::serve(Server::new(
        registry_with(&root, vec![endless_tool(Arc::clone(&stopped))]),
        limits,
    ))
    .await;
    let mut socket = connect(&server).await;
    send(
        &mut socket,
        json!({"type": "run_tool", "id": "x", "tool": "endless"}),
    )
    .await;
    assert_eq!(next(&mut socket).await["id"], "x");
    let serve_task = server.begin_shutdown();

    // The run ends with the drain (its error frame), then the server says goodbye.
    let end = until_ended_ignoring(&mut socket, "x").await;
    assert_eq!(end["error"]["code"], "UNAVAILABLE");
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("a close frame")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let close = close.expect("a close code");
    assert_eq!(u16::from(close.code), 1001);
    serve_task.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_agent_run_and_a_tool_run_share_a_socket() {
    let model = StandIn::start(vec![
        tool_calls(&[("call_1", "ticks", r#"{"count": 2, "interval_ms": 1}"#)]),
        text(&["Done ", "ticking."]),
    ])
    .await;
    let root = std::env::current_dir().unwrap();
    let settings = AgentSettings {
        provider: Some(Arc::new(OpenAiProvider::new(&model.url, None).unwrap())),
        default_model: Some("standin-model".into()),
        ..AgentSettings::default()
    };
    let server = TestServer::serve(
        Server::new(registry_with(&root, vec![]), Limits::default()).with_agent(settings),
    )
    .await;
    let mut socket = connect(&server).await;
    send(
        &mut socket,
        json!({"type": "run_agent", "id": "a", "prompt": "tick", "tools": ["ticks"]}),
    )
    .await;
    send(
        &mut socket,
        json!({"type": "run_tool", "id": "t", "tool": "ticks", "arguments": {"count": 3, "interval_ms": 1}}),
    )
    .await;
    let frames = until_ended(&mut socket, &["a", "t"]).await;
    let kinds: Vec<String> = frames["a"].iter().map(|f| event_key(&f["event"])).collect();
    for kind in [
        "started",
        "toolCallStarted",
        "toolCallFinished",
        "message",
        "result",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing from {kinds:?}"
        );
    }
    assert_eq!(
        frames["a"].last().unwrap()["event"]["result"]["value"],
        "Done ticking."
    );
    assert!(frames["t"].last().unwrap()["event"].get("result").is_some());
}

#[tokio::test]
async fn a_message_larger_than_the_limit_closes_the_socket_and_cancels_its_runs() {
    let root = std::env::current_dir().unwrap();
    let stopped = Arc::new(AtomicBool::new(false));
    let limits = Limits {
        max_message_bytes: 4096,
        ..Limits::default()
    };
    let server = TestServer::serve(Server::new(
        registry_with(&root, vec![endless_tool(Arc::clone(&stopped))]),
        limits,
    ))
    .await;
    let mut socket = connect(&server).await;
    send(
        &mut socket,
        json!({"type": "run_tool", "id": "x", "tool": "endless"}),
    )
    .await;
    assert_eq!(next(&mut socket).await["id"], "x");
    let huge = json!({"type": "run_tool", "id": "y", "tool": "ticks", "arguments": {"pad": "z".repeat(10_000)}});
    // The send may already fail if the server closed first.
    let _ = socket.send(Message::Text(huge.to_string().into())).await;
    // The socket ends (a close frame, or the connection dropped): no more calls on it.
    loop {
        match tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("the socket to end")
        {
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => continue,
        }
    }
    eventually(
        Duration::from_secs(10),
        "the socket's run to stop",
        async || stopped.load(Ordering::SeqCst),
    )
    .await;
}

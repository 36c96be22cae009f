//! RunTool and ListTools on the happy path: the order, numbering and content of events.

use crate::common;
use crate::common::{TestServer, collect, registry_with, result_value, run_request};
use serde_json::json;
use sha2::Digest;
use toolstream::config::Limits;
use toolstream::json_proto::struct_to_json;
use toolstream::pb;
use toolstream::pb::run_event::Event;

#[tokio::test]
async fn list_tools_shows_builtins_with_kinds_and_schemas() {
    let server = TestServer::start().await;
    let tools = common::list_tools(&server).await;
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["checksum", "ticks"]);
    for tool in &tools {
        assert_eq!(tool.kind, "native");
        assert!(!tool.description.is_empty());
    }
    let ticks = struct_to_json(tools[1].input_schema.clone().unwrap());
    assert_eq!(ticks["type"], "object");
    assert_eq!(ticks["required"], json!(["count"]));
    let checksum = struct_to_json(tools[0].input_schema.clone().unwrap());
    assert_eq!(checksum["required"], json!(["paths"]));
    assert!(tools[1].output_schema.is_some());
}

#[tokio::test]
async fn run_tool_streams_started_then_progress_then_result_in_sequence() {
    let server = TestServer::start().await;
    let response = server
        .client()
        .await
        .run_tool(run_request("ticks", json!({"count": 20, "interval_ms": 1})))
        .await
        .unwrap();
    let run_id = response
        .metadata()
        .get("x-run-id")
        .expect("x-run-id metadata")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!run_id.is_empty());
    let (events, status) = collect(response.into_inner()).await;
    assert!(status.is_none(), "{status:?}");

    let Some(Event::Started(started)) = &events[0].event else {
        panic!("first event must be started: {:?}", events[0]);
    };
    assert_eq!(started.tool, "ticks");
    assert_eq!(started.run_id, run_id);

    let fractions: Vec<f64> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Progress(p)) => p.progress,
            _ => None,
        })
        .collect();
    assert!(!fractions.is_empty());
    assert!(fractions.windows(2).all(|w| w[0] < w[1]), "{fractions:?}");
    assert_eq!(*fractions.last().unwrap(), 1.0);

    let last = events.last().unwrap();
    assert_eq!(result_value(last), Some(json!({"count": 20})));
    assert_eq!(last.sequence, 22, "started + 20 progress + result");

    // A fast reader sees no gaps. Timestamps never go back.
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.run_id, run_id);
        assert!(event.timestamp.is_some());
        assert_eq!(event.sequence, i as u64 + 1, "a gap at event {i}");
        if i > 0 {
            let (a, b) = (events[i - 1].timestamp.unwrap(), event.timestamp.unwrap());
            assert!((a.seconds, a.nanos) <= (b.seconds, b.nanos));
        }
    }
}

#[tokio::test]
async fn progress_carries_status_and_extra_data() {
    let dir = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("data.bin"), &bytes).unwrap();
    std::fs::write(dir.path().join("empty.txt"), b"").unwrap();
    let server = TestServer::start_with(registry_with(dir.path(), vec![]), Limits::default()).await;

    let (events, status) = collect(
        server
            .client()
            .await
            .run_tool(run_request(
                "checksum",
                json!({"paths": ["data.bin", "empty.txt"]}),
            ))
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert!(status.is_none(), "{status:?}");
    let expected = hex(&sha2::Sha256::digest(&bytes));
    let empty = hex(&sha2::Sha256::digest(b""));
    assert_eq!(
        result_value(events.last().unwrap()),
        Some(json!({
            "files": [
                {"path": "data.bin", "sha256": expected, "bytes": 3_000_000},
                {"path": "empty.txt", "sha256": empty, "bytes": 0},
            ],
            "total_bytes": 3_000_000,
        }))
    );
    let progress: Vec<&pb::Progress> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Progress(p)) => Some(p),
            _ => None,
        })
        .collect();
    let last = progress.last().unwrap();
    assert_eq!(last.progress, Some(1.0));
    let data = struct_to_json(last.data.clone().unwrap());
    assert_eq!(data["bytes_done"], json!(3_000_000));
    assert_eq!(data["bytes_total"], json!(3_000_000));
    assert_eq!(last.status.as_deref(), Some("hashed 2 files"));
}

#[tokio::test]
async fn sha512_is_offered_too() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"abc").unwrap();
    let server = TestServer::start_with(registry_with(dir.path(), vec![]), Limits::default()).await;
    let (events, _) = collect(
        server
            .client()
            .await
            .run_tool(run_request(
                "checksum",
                json!({"paths": ["a.txt"], "algorithm": "sha512"}),
            ))
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    let value = result_value(events.last().unwrap()).unwrap();
    assert_eq!(
        value["files"][0]["sha512"],
        json!(hex(&sha2::Sha512::digest(b"abc")))
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

//! The example tools of examples/toolstream.toml, served by the real binary with that config as
//! README's tour starts it: `word_counts` asks before it counts (answered here over HTTP, as
//! `curl` would), then hands each file's count over as a partial result before its totals.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::binary::serve;
use crate::common::eventually;

const FILES: [&str; 2] = ["Cargo.toml", "README.md"];

fn words(file: &str) -> u64 {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    text.split_whitespace().count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn word_counts_asks_then_streams_each_files_count_as_a_partial_result() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let served = serve(manifest, &["--config", "examples/toolstream.toml"], &[]).serving();
    let url = format!("http://{}", served.addr);
    let http = crate::common::web::http();

    let started: Value = http
        .post(format!("{url}/v1/tools/word_counts/runs"))
        .header("accept", "application/json")
        .json(&json!({"arguments": {"files": FILES}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run_id = started["runId"]
        .as_str()
        .unwrap_or_else(|| panic!("{started}"));

    let asked = eventually(Duration::from_secs(60), "the run asks", async || {
        let run: Value = http
            .get(format!("{url}/v1/runs/{run_id}"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (run["state"] == "RUN_STATE_INPUT_REQUIRED").then(|| run["pendingInputs"][0].clone())
    })
    .await;
    assert_eq!(asked["prompt"], "Count the words of 2 files?", "{asked}");
    assert_eq!(asked["schema"], json!({"type": "boolean"}), "{asked}");
    // README's tour answers it by this id.
    let request_id = asked["requestId"].as_str().unwrap();
    assert_eq!(request_id, "input-1");

    let answered = http
        .post(format!("{url}/v1/runs/{run_id}/inputs/{request_id}"))
        .json(&json!({"value": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 200, "{}", answered.text().await.unwrap());

    // The run's events as server-sent events, from the first; the stream ends with the result.
    let events = http
        .get(format!("{url}/v1/runs/{run_id}/events"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<Value> = events
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}")))
        .collect();
    let partials: Vec<&Value> = events
        .iter()
        .filter_map(|event| event.get("partialResult"))
        .collect();
    let expected: Vec<Value> = FILES
        .iter()
        .map(|file| json!({"file": file, "words": words(file)}))
        .collect();
    assert_eq!(
        partials
            .iter()
            .map(|p| p["value"].clone())
            .collect::<Vec<_>>(),
        expected,
        "{events:?}"
    );
    assert!(
        partials
            .iter()
            .all(|p| p["key"] == "counts" && p["append"] == true)
    );
    let result = events
        .iter()
        .find_map(|event| event.get("result"))
        .unwrap_or_else(|| panic!("no result: {events:?}"));
    let total: u64 = FILES.iter().map(|file| words(file)).sum();
    assert_eq!(result["value"], json!({"files": 2, "words": total}));
}

//! Webhooks when runs end: signed per Standard Webhooks (checked by the reference Python library
//! in a real receiver process), retried with the same id until the receiver takes them, never in
//! a run's way while a receiver hangs, and filtered by event and tool.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::runs::detached;
use crate::common::{TestServer, collect, eventually, registry_with, result_value, run_request};
use serde_json::{Value, json};
use toolstream::config::{Limits, WebhookDelivery, WebhookEntry};
use toolstream::server::Server;
use toolstream::webhooks::Webhooks;

const WAIT: Duration = Duration::from_secs(60);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A receiver process and the lines it printed so far.
struct Receiver {
    child: Child,
    port: u16,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start(args: &[&str]) -> Receiver {
        let manifest = env!("CARGO_MANIFEST_DIR");
        let mut child = Command::new("python3")
            .arg(format!("{manifest}/tests/python/webhook_receiver.py"))
            .arg(SECRET)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with standardwebhooks (scripts/test installs it)");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        stdout.read_line(&mut first).expect("the receiver's port");
        let port = first.trim().parse().expect("a port");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str(&line) {
                    sink.lock().unwrap().push(value);
                }
            }
        });
        Receiver { child, port, lines }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server sending `events` of `tools` to `receiver`, retrying quickly.
async fn server(receiver: &Receiver, events: &[&str], tools: Option<Vec<String>>) -> TestServer {
    server_with(receiver, events, tools, vec![]).await
}

/// [`server`] with `extra` tools besides the built-in ones.
async fn server_with(
    receiver: &Receiver,
    events: &[&str],
    tools: Option<Vec<String>>,
    extra: Vec<Arc<dyn toolstream::tools::Tool>>,
) -> TestServer {
    // SAFETY of the environment: each test names its own variable.
    let variable = format!("WEBHOOK_SECRET_{}", receiver.port);
    unsafe { std::env::set_var(&variable, SECRET) };
    let webhooks = Webhooks::from_config(
        &[WebhookEntry {
            url: receiver.url(),
            secret_env: variable,
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            tools,
        }],
        &WebhookDelivery {
            first_retry_ms: Some(20),
            max_retry_ms: Some(200),
            attempt_timeout_ms: Some(60_000),
            ..WebhookDelivery::default()
        },
    )
    .expect("webhooks");
    let root = std::env::current_dir().unwrap();
    let server =
        Server::new(registry_with(&root, extra), Limits::default()).with_webhooks(webhooks);
    TestServer::serve(server).await
}

async fn run_ticks(server: &TestServer, labels: &[(&str, &str)]) -> String {
    let mut request = run_request("ticks", json!({"count": 2}));
    let options = request.options.get_or_insert_with(Default::default);
    options.labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let response = server
        .client()
        .await
        .run_tool(request)
        .await
        .expect("RunTool");
    let run_id = crate::common::x_run_id(response.metadata());
    let (events, error) = collect(response.into_inner()).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        events.last().and_then(result_value),
        Some(json!({"count": 2}))
    );
    run_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_s_end_is_posted_signed_and_the_reference_library_verifies_it() {
    let receiver = Receiver::start(&[]);
    let server = server(&receiver, &["run.succeeded", "run.cancelled"], None).await;
    let run_id = run_ticks(&server, &[("order", "17")]).await;
    eventually(WAIT, "the webhook", async || !receiver.lines().is_empty()).await;
    let line = &receiver.lines()[0];
    assert_eq!(line["valid"], true, "{line}");
    assert_eq!(line["type"], "run.succeeded");
    assert_eq!(line["runId"], run_id.as_str());
    assert_eq!(line["state"], "RUN_STATE_SUCCEEDED");
    assert_eq!(line["labels"], json!({"order": "17"}));
    assert!(line["id"].as_str().is_some_and(|id| id.starts_with("msg_")));

    // A cancelled run is sent too; a failed one is not asked for.
    let response = server
        .client()
        .await
        .run_tool(detached("ticks", json!({"count": 1000, "interval_ms": 50})))
        .await
        .expect("RunTool");
    let cancelled = crate::common::x_run_id(response.metadata());
    let mut runs =
        toolstream::pb::run_service_client::RunServiceClient::new(server.channel().await);
    crate::common::runs::cancel(&mut runs, &cancelled)
        .await
        .expect("CancelRun");
    eventually(WAIT, "the cancelled run's webhook", async || {
        receiver
            .lines()
            .iter()
            .any(|line| line["runId"] == cancelled.as_str() && line["type"] == "run.cancelled")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_retries_with_the_same_id_until_it_takes_one() {
    let receiver = Receiver::start(&["--fail-first", "3"]);
    let server = server(&receiver, &["run.succeeded"], None).await;
    let run_id = run_ticks(&server, &[]).await;
    eventually(WAIT, "an attempt the receiver takes", async || {
        receiver.lines().iter().any(|line| line["answered"] == 200)
    })
    .await;
    let lines = receiver.lines();
    assert_eq!(
        lines.len(),
        4,
        "three failures, then the delivery: {lines:?}"
    );
    assert!(lines.iter().all(|line| line["valid"] == true), "{lines:?}");
    assert!(lines.iter().all(|line| line["runId"] == run_id.as_str()));
    assert!(
        lines.iter().all(|line| line["id"] == lines[0]["id"]),
        "every attempt carries the same webhook-id: {lines:?}"
    );
    let metrics = crate::input_requests::metrics(&server).await;
    assert!(
        metrics.contains(r#"toolstream_webhook_deliveries_total{outcome="retried"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"toolstream_webhook_deliveries_total{outcome="delivered"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("toolstream_webhook_delivery_seconds_count 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_does_not_hold_up_runs() {
    let receiver = Receiver::start(&["--hang"]);
    let server = server(&receiver, &["run.succeeded"], None).await;
    let first = run_ticks(&server, &[]).await;
    eventually(
        WAIT,
        "the receiver to hang on the first webhook",
        async || receiver.lines().iter().any(|line| line["hanging"] == true),
    )
    .await;
    // The receiver holds the first delivery open; runs go on starting and ending meanwhile.
    for _ in 0..5 {
        assert_ne!(run_ticks(&server, &[]).await, first);
    }
    assert!(
        receiver
            .lines()
            .iter()
            .all(|line| line["runId"] == first.as_str() || line["hanging"] == true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_tools_an_entry_names_are_sent() {
    let receiver = Receiver::start(&[]);
    let server = server(&receiver, &["run.succeeded"], Some(vec!["checksum".into()])).await;
    run_ticks(&server, &[]).await;
    let response = server
        .client()
        .await
        .run_tool(run_request("checksum", json!({"paths": ["Cargo.toml"]})))
        .await
        .expect("RunTool");
    let checksum = crate::common::x_run_id(response.metadata());
    let (_, error) = collect(response.into_inner()).await;
    assert!(error.is_none(), "{error:?}");
    eventually(WAIT, "the checksum run's webhook", async || {
        !receiver.lines().is_empty()
    })
    .await;
    // Deliveries go out in the order runs end: the ticks run, which ended first, was not sent.
    let lines = receiver.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["runId"], checksum.as_str());
}

#[test]
fn entries_are_checked_as_the_server_starts() {
    unsafe { std::env::set_var("WEBHOOK_SECRET_CHECKED", SECRET) };
    unsafe { std::env::set_var("WEBHOOK_SECRET_BAD", "not-a-secret") };
    let entry = |url: &str, secret_env: &str, events: &[&str]| WebhookEntry {
        url: url.into(),
        secret_env: secret_env.into(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        tools: None,
    };
    let check = |entry: WebhookEntry| {
        Webhooks::from_config(&[entry], &WebhookDelivery::default()).map(|_| ())
    };
    assert!(
        check(entry(
            "https://example.com/h",
            "WEBHOOK_SECRET_CHECKED",
            &["run.failed"]
        ))
        .is_ok()
    );
    for (bad, says) in [
        (
            entry(
                "file:///etc/passwd",
                "WEBHOOK_SECRET_CHECKED",
                &["run.failed"],
            ),
            "http",
        ),
        (
            entry(
                "https://example.com/h",
                "WEBHOOK_SECRET_UNSET",
                &["run.failed"],
            ),
            "not set",
        ),
        (
            entry(
                "https://example.com/h",
                "WEBHOOK_SECRET_BAD",
                &["run.failed"],
            ),
            "whsec_",
        ),
        (
            entry(
                "https://example.com/h",
                "WEBHOOK_SECRET_CHECKED",
                &["run.done"],
            ),
            "run.done",
        ),
    ] {
        let error = check(bad).expect_err("a bad entry").to_string();
        assert!(error.contains(says), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_pending_on_a_killed_replica_is_sent_by_another() {
    let redis = crate::common::redis_server::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    // The receiver refuses while this file exists.
    let refuse = dir.path().join("refuse");
    std::fs::write(&refuse, "").unwrap();
    let receiver = Receiver::start(&["--fail-while", refuse.to_str().unwrap()]);
    let config = dir.path().join("toolstream.toml");
    std::fs::write(
        &config,
        format!(
            "[runs]\nstore = \"{}\"\nkey_prefix = \"test:\"\nlease_secs = 1\nreplica_name = \"doomed\"\n\n\
             [[webhooks]]\nurl = \"{}\"\nsecret_env = \"HOOK_SECRET\"\nevents = [\"run.succeeded\"]\n\n\
             [webhook_delivery]\nfirst_retry_ms = 50\nmax_retry_ms = 200\nclaim_after_secs = 1\n",
            redis.url(),
            receiver.url()
        ),
    )
    .unwrap();
    let mut doomed = crate::common::binary::serve(
        dir.path(),
        &["--config", config.to_str().unwrap()],
        &[("HOOK_SECRET", SECRET)],
    )
    .serving();
    let mut tools = toolstream::pb::tool_service_client::ToolServiceClient::connect(format!(
        "http://{}",
        doomed.addr
    ))
    .await
    .unwrap();
    let response = tools
        .run_tool(run_request("ticks", json!({"count": 2})))
        .await
        .expect("RunTool");
    let run_id = crate::common::x_run_id(response.metadata());
    let (_, error) = collect(response.into_inner()).await;
    assert!(error.is_none(), "{error:?}");
    // The doomed replica took the delivery and is retrying it: then it dies.
    eventually(WAIT, "the doomed replica's attempts", async || {
        receiver
            .lines()
            .iter()
            .filter(|line| line["answered"] == 500)
            .count()
            >= 2
    })
    .await;
    doomed.child.kill().expect("kill -9 the replica");
    doomed.child.wait().unwrap();
    let pending_id = receiver.lines()[0]["id"].clone();

    // Another replica joins; the receiver recovers.
    unsafe { std::env::set_var("HOOK_SECRET_SURVIVOR", SECRET) };
    let webhooks = Webhooks::from_config(
        &[WebhookEntry {
            url: receiver.url(),
            secret_env: "HOOK_SECRET_SURVIVOR".into(),
            events: vec!["run.succeeded".into()],
            tools: None,
        }],
        &WebhookDelivery {
            first_retry_ms: Some(50),
            max_retry_ms: Some(200),
            claim_after_secs: Some(1),
            ..WebhookDelivery::default()
        },
    )
    .expect("webhooks");
    let limits = Limits::default();
    let store =
        toolstream::engine::Store::open(&crate::common::redis_store(&redis, "survivor"), &limits)
            .await
            .expect("the store");
    let root = std::env::current_dir().unwrap();
    let _survivor = TestServer::serve(
        Server::new(registry_with(&root, vec![]), limits)
            .with_store(store)
            .with_webhooks(webhooks),
    )
    .await;
    std::fs::remove_file(&refuse).unwrap();
    eventually(
        WAIT,
        "the survivor to deliver the pending webhook",
        async || receiver.lines().iter().any(|line| line["answered"] == 200),
    )
    .await;
    let delivered: Vec<Value> = receiver
        .lines()
        .into_iter()
        .filter(|line| line["answered"] == 200)
        .collect();
    assert_eq!(
        delivered[0]["id"], pending_id,
        "the same delivery: {delivered:?}"
    );
    assert_eq!(delivered[0]["runId"], run_id.as_str());
    assert_eq!(delivered[0]["valid"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_begins_waiting_for_input_is_posted_with_its_open_request() {
    let receiver = Receiver::start(&["--fail-first", "1"]);
    let events = ["run.input_required", "run.succeeded"];
    let confirm = crate::input_requests::confirm_tool();
    let server = server_with(&receiver, &events, None, vec![confirm]).await;
    let response = server
        .client()
        .await
        .run_tool(detached("confirm", json!({})))
        .await
        .expect("RunTool");
    let run_id = crate::common::x_run_id(response.metadata());
    let delivered = |kind: &'static str| {
        let lines = receiver.lines();
        lines
            .iter()
            .find(|line| line["type"] == kind && line["answered"] == 200)
            .cloned()
    };
    eventually(WAIT, "the run.input_required webhook", async || {
        delivered("run.input_required").is_some()
    })
    .await;
    let line = delivered("run.input_required").expect("delivered");
    assert_eq!(line["valid"], true, "{line}");
    assert_eq!(line["runId"], run_id.as_str());
    assert_eq!(line["state"], "RUN_STATE_INPUT_REQUIRED");
    let pending = line["pendingInputs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(pending.len(), 1, "{line}");
    assert_eq!(pending[0]["prompt"], "Overwrite report.pdf?");
    let request_id = pending[0]["requestId"]
        .as_str()
        .expect("requestId")
        .to_owned();

    // Waiting is counted too: the observer passes it on to the metrics.
    let metrics = crate::input_requests::metrics(&server).await;
    assert!(
        metrics.contains("toolstream_runs_waiting_for_input 1"),
        "{metrics}"
    );

    let mut runs =
        toolstream::pb::run_service_client::RunServiceClient::new(server.channel().await);
    runs.respond_to_run(toolstream::pb::RespondToRunRequest {
        run_id: run_id.clone(),
        request_id,
        value: Some(toolstream::json_proto::json_to_value(json!(true))),
        decline: false,
    })
    .await
    .expect("RespondToRun");
    eventually(WAIT, "the run.succeeded webhook", async || {
        delivered("run.succeeded").is_some()
    })
    .await;
    let waits: Vec<Value> = receiver
        .lines()
        .into_iter()
        .filter(|line| line["type"] == "run.input_required")
        .collect();
    assert_eq!(
        waits.len(),
        2,
        "one refused attempt, then the retry, with the same id: {waits:?}"
    );
    assert_eq!(waits[0]["id"], waits[1]["id"], "{waits:?}");
}

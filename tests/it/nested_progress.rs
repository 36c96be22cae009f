//! Nested progress: a tool's sub-tasks reach the client as nodes of their own (tagged with a call
//! id unique in the run and their parent's), roll up into their parent's fraction, keep the
//! latest state of every node for a slow reader, and the built-in `checksum` uses them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{
    TestServer, collect, fractions_of, nested_tool, progress_nodes, registry_with, result_value,
    run_request, same_fractions, seed_fractions,
};
use serde_json::json;
use tokio::sync::Notify;
use toolstream::config::Limits;
use toolstream::json_proto::struct_to_json;
use toolstream::pb;
use toolstream::pb::run_event::Event;
use toolstream::tools::native::tool_fn;
use toolstream::tools::{Progress, Tool, ToolError};

async fn server_with(extra: Vec<Arc<dyn Tool>>, limits: Limits) -> TestServer {
    let root = std::env::current_dir().unwrap();
    TestServer::start_with(registry_with(&root, extra), limits).await
}

async fn run(server: &TestServer, tool: &str, arguments: serde_json::Value) -> Vec<pb::RunEvent> {
    let (events, status) = collect(
        server
            .client()
            .await
            .run_tool(run_request(tool, arguments))
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert!(status.is_none(), "{status:?}");
    events
}

#[tokio::test]
async fn sub_tasks_arrive_as_nodes_of_their_own_and_roll_up_into_the_seeds_numbers() {
    let server = server_with(vec![nested_tool()], Limits::default()).await;
    let events = run(&server, "nested", json!({"items": 3})).await;
    let nodes = progress_nodes(&events);

    // One node per item, under the top level, named by its label, announced before it reports.
    for (index, id) in ["1", "2", "3"].iter().enumerate() {
        let mine: Vec<_> = nodes.iter().filter(|n| n.0 == *id).collect();
        assert!(
            mine.iter()
                .all(|n| n.1.is_empty() && n.2 == format!("item {}", index + 1)),
            "{mine:?}"
        );
        assert_eq!(mine[0].3, None, "announced with no fraction");
        assert_eq!(
            fractions_of(&nodes, id),
            [1.0 / 3.0, 2.0 / 3.0, 1.0],
            "{mine:?}"
        );
        assert_eq!(
            mine.iter().filter_map(|n| n.4.clone()).collect::<Vec<_>>(),
            (1..=3)
                .map(|step| format!("Item {}, step {step}", index + 1))
                .collect::<Vec<_>>()
        );
    }
    // The run's own progress is the seed's arithmetic, done by the server.
    assert!(
        same_fractions(&fractions_of(&nodes, ""), &seed_fractions(3)),
        "{:?}",
        fractions_of(&nodes, "")
    );
    assert!(
        nodes
            .iter()
            .filter(|n| n.0.is_empty())
            .all(|n| n.1.is_empty() && n.2.is_empty())
    );
    assert_eq!(
        result_value(events.last().unwrap()),
        Some(json!("All done"))
    );
}

#[tokio::test]
async fn three_levels_nest_with_ids_unique_in_the_run() {
    let server = server_with(vec![nested_tool()], Limits::default()).await;
    let events = run(&server, "nested", json!({"items": 2, "deep": true})).await;
    let nodes = progress_nodes(&events);
    let mut parents: HashMap<String, String> = HashMap::new();
    for node in &nodes {
        if let Some(parent) = parents.insert(node.0.clone(), node.1.clone()) {
            assert_eq!(parent, node.1, "a node keeps its parent: {node:?}");
        }
    }
    let expected: HashMap<String, String> = [
        ("", ""),
        ("1", ""),
        ("2", ""),
        ("1/1", "1"),
        ("1/2", "1"),
        ("1/3", "1"),
        ("2/1", "2"),
        ("2/2", "2"),
        ("2/3", "2"),
    ]
    .into_iter()
    .map(|(id, parent)| (id.to_owned(), parent.to_owned()))
    .collect();
    assert_eq!(parents, expected);
    // A step reports 0.5, then finishes; its item and the run follow.
    assert_eq!(fractions_of(&nodes, "2/3"), [0.5, 1.0]);
    let item = fractions_of(&nodes, "1");
    assert!(
        same_fractions(
            &item,
            &[1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0, 4.0 / 6.0, 5.0 / 6.0, 1.0]
        ),
        "{item:?}"
    );
    let top = fractions_of(&nodes, "");
    assert!(top.windows(2).all(|w| w[0] < w[1]), "{top:?}");
    assert_eq!(top.last(), Some(&1.0));
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct WideArgs {
    nodes: u32,
    reports: u32,
}

/// A tool named `wide`: `nodes` sub-tasks, each reporting `reports` times in turn (node k ends at
/// fraction k/(nodes+1), status "node k: report N"), then it says so through `reported` and waits
/// for `release` before it returns.
fn wide_tool(reported: Arc<Notify>, release: Arc<Notify>) -> Arc<dyn Tool> {
    Arc::new(tool_fn(
        "wide",
        "Many nodes reporting many times.",
        move |args: WideArgs, progress: Progress| {
            let (reported, release) = (Arc::clone(&reported), Arc::clone(&release));
            async move {
                let children: Vec<Progress> = (1..=args.nodes)
                    .map(|k| progress.child(format!("node {k}"), 1.0 / f64::from(args.nodes)))
                    .collect();
                for report in 1..=args.reports {
                    for (k, child) in (1..).zip(&children) {
                        let end = f64::from(k) / f64::from(args.nodes + 1);
                        child.report(
                            end * f64::from(report) / f64::from(args.reports),
                            format!("node {k}: report {report}"),
                        );
                    }
                }
                reported.notify_one();
                release.notified().await;
                Ok::<_, ToolError>(json!({"nodes": args.nodes}))
            }
        },
    ))
}

#[tokio::test]
async fn a_slow_reader_gets_the_latest_state_of_every_node() {
    let (reported, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let limits = Limits {
        event_buffer: 8,
        ..Limits::default()
    };
    let server = server_with(
        vec![wide_tool(Arc::clone(&reported), Arc::clone(&release))],
        limits,
    )
    .await;
    let (nodes, reports) = (5u32, 400u32);
    let mut stream = server
        .client()
        .await
        .run_tool(run_request(
            "wide",
            json!({"nodes": nodes, "reports": reports}),
        ))
        .await
        .unwrap()
        .into_inner();
    // The reader reads nothing while the tool reports everything.
    tokio::time::timeout(Duration::from_secs(60), reported.notified())
        .await
        .expect("the tool reported");

    // Reading now, it gets, for every node, its latest report, long before the run ends.
    let mut latest: HashMap<String, (Option<f64>, Option<String>)> = HashMap::new();
    let mut progress_events = 0;
    // The top level is the nodes' roll-up: the mean of their final fractions.
    let mean = (1..=nodes)
        .map(|k| f64::from(k) / f64::from(nodes + 1))
        .sum::<f64>()
        / f64::from(nodes);
    let caught_up = |latest: &HashMap<String, (Option<f64>, Option<String>)>| {
        let top = latest.get("").and_then(|(fraction, _)| *fraction);
        top.is_some_and(|top| (top - mean).abs() < 1e-9)
            && (1..=nodes).all(|k| {
                latest
                    .get(&k.to_string())
                    .is_some_and(|(fraction, status)| {
                        fraction
                            .is_some_and(|f| (f - f64::from(k) / f64::from(nodes + 1)).abs() < 1e-9)
                            && *status == Some(format!("node {k}: report {reports}"))
                    })
            })
    };
    while !caught_up(&latest) {
        let event = tokio::time::timeout(Duration::from_secs(60), stream.message())
            .await
            .expect("the latest state of every node arrives while the run goes on")
            .unwrap()
            .expect("the run is still going");
        if let Some(Event::Progress(p)) = event.event {
            progress_events += 1;
            latest.insert(p.call_id, (p.progress, p.status));
        }
    }
    let produced = nodes * reports * 2;
    assert!(
        progress_events < produced as usize / 4,
        "coalesced: {progress_events} of {produced} progress events"
    );

    release.notify_one();
    let (rest, status) = collect(stream).await;
    assert!(status.is_none(), "{status:?}");
    assert_eq!(
        result_value(rest.last().unwrap()),
        Some(json!({"nodes": nodes}))
    );
    // Finished as the tool returned: every node ends at 1.0, and so does the run.
    let rest = progress_nodes(&rest);
    for k in 1..=nodes {
        assert_eq!(
            rest.iter().rev().find(|n| n.0 == k.to_string()).unwrap().3,
            Some(1.0)
        );
    }
    assert_eq!(
        rest.iter().rev().find(|n| n.0.is_empty()).unwrap().3,
        Some(1.0)
    );
}

#[tokio::test]
async fn checksum_reports_each_file_as_a_sub_task_and_a_monotone_total() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [
        ("a.bin", 700_000usize),
        ("empty.txt", 0),
        ("b.bin", 1_300_000),
    ];
    for (name, size) in sizes {
        let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let server = TestServer::start_with(registry_with(dir.path(), vec![]), Limits::default()).await;
    let paths: Vec<&str> = sizes.iter().map(|(name, _)| *name).collect();
    let events = run(&server, "checksum", json!({"paths": paths})).await;
    let nodes = progress_nodes(&events);

    let ids: HashSet<&str> = nodes.iter().map(|n| n.0.as_str()).collect();
    assert_eq!(ids, HashSet::from(["", "1", "2", "3"]));
    for (index, (name, size)) in sizes.iter().enumerate() {
        let id = (index + 1).to_string();
        assert!(
            nodes
                .iter()
                .filter(|n| n.0 == id)
                .all(|n| n.1.is_empty() && n.2 == *name),
            "file {name} is node {id} under the run"
        );
        let fractions = fractions_of(&nodes, &id);
        assert!(fractions.windows(2).all(|w| w[0] < w[1]), "{fractions:?}");
        assert_eq!(fractions.last(), Some(&1.0), "{name}");
        // Its last byte count is its size.
        let last_data = events.iter().rev().find_map(|e| match &e.event {
            Some(Event::Progress(p)) if p.call_id == id && p.data.is_some() => {
                Some(struct_to_json(p.data.clone().unwrap()))
            }
            _ => None,
        });
        if *size > 0 {
            assert_eq!(last_data.unwrap()["bytes_done"], json!(size));
        }
    }
    // The total rises smoothly (more than once per file) and never goes back.
    let total = fractions_of(&nodes, "");
    assert!(total.windows(2).all(|w| w[0] <= w[1]), "{total:?}");
    assert!(total.len() > 4, "{total:?}");
    assert_eq!(total.last(), Some(&1.0));
    // Each move of a file moves the total by its share of the bytes: while b.bin is read, the
    // total is all of a.bin plus the part of b.bin read.
    for pair in nodes.windows(2) {
        if let (("3", Some(f)), ("", Some(total))) = (
            (pair[0].0.as_str(), pair[0].3),
            (pair[1].0.as_str(), pair[1].3),
        ) {
            let expected = (700_000.0 + f * 1_300_000.0) / 2_000_000.0;
            assert!((total - expected).abs() < 1e-9, "{total} vs {expected}");
        }
    }
    let last = nodes.last().unwrap();
    assert_eq!(
        (last.0.as_str(), last.4.as_deref()),
        ("", Some("hashed 3 files"))
    );
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct NoArgs {}

/// A tool named `stuck`: one sub-task at 0.3, then it waits forever (after saying so).
fn stuck_tool(reported: Arc<Notify>) -> Arc<dyn Tool> {
    Arc::new(tool_fn(
        "stuck",
        "Stops at 30% of its only sub-task.",
        move |_: NoArgs, progress: Progress| {
            let reported = Arc::clone(&reported);
            async move {
                let child = progress.child("the only part", 1.0);
                child.fraction(0.3);
                reported.notify_one();
                std::future::pending::<()>().await;
                drop(child);
                Ok::<_, ToolError>(json!(null))
            }
        },
    ))
}

#[tokio::test]
async fn a_cancelled_runs_sub_tasks_do_not_count_as_finished() {
    let reported = Arc::new(Notify::new());
    let server = server_with(vec![stuck_tool(Arc::clone(&reported))], Limits::default()).await;
    let handle = server
        .engine
        .run_tool(toolstream::engine::ToolRunRequest {
            tool: "stuck".into(),
            arguments: None,
            options: Default::default(),
            deadline: None,
            owner: None,
            labels: Default::default(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), reported.notified())
        .await
        .expect("the tool reported");
    let run = server.engine.cancel_run(&handle.run_id).await.unwrap();
    // Dropping the stopped tool dropped its sub-task's handle, after the run's end: the sub-task
    // stays where it was, and so does the run.
    let latest: HashMap<String, Option<f64>> = run
        .progress
        .iter()
        .filter_map(|event| match &event.kind {
            toolstream::engine::EventKind::Progress { call, update, .. } => {
                Some((call.call_id.to_string(), update.fraction))
            }
            _ => None,
        })
        .collect();
    assert_eq!(latest["1"], Some(0.3));
    assert_eq!(latest[""], Some(0.3));
}

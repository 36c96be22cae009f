//! A remote's tools are kept current: when the remote restarts with other tools, the federating
//! server offers the new ones and drops the old ones, and while the remote is down its tools
//! fail with UNAVAILABLE naming it. A remote that is not up yet when `serve` starts does not stop
//! it: its tools appear when it answers.

use std::path::Path;
use std::time::Duration;

use crate::common::binary::{Served, serve, serve_on};
use crate::common::web::http;
use crate::common::{
    TestServer, eventually, list_tools, registry_with, result_value, run_request, run_tool,
};
use serde_json::json;
use tonic::Code;
use toolstream::config::Limits;

/// `toolstream serve` on `listen` with one extra command tool named `tool`.
fn remote_with_tool(dir: &Path, listen: &str, tool: &str) -> Served {
    let config = dir.join(format!("{tool}.toml"));
    std::fs::write(
        &config,
        format!("[[tools]]\nkind = \"command\"\nname = \"{tool}\"\ncommand = [\"true\"]\n"),
    )
    .unwrap();
    serve_on(listen, dir, &["--config", config.to_str().unwrap()], &[]).serving()
}

async fn remote_names(server: &TestServer) -> Vec<String> {
    list_tools(server)
        .await
        .into_iter()
        .map(|tool| tool.name)
        .filter(|name| name.starts_with("remote."))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_that_restarts_with_other_tools_is_listed_again() {
    let dir = tempfile::tempdir().unwrap();
    let first = remote_with_tool(dir.path(), "127.0.0.1:0", "alpha");
    let addr = first.addr.clone();

    let entry: toml::Table = toml::from_str(&format!(
        "kind = \"grpc\"\nendpoint = \"http://{addr}\"\nprefix = \"remote.\"\nrelist_secs = 1\n"
    ))
    .unwrap();
    let root = std::env::current_dir().unwrap();
    let limits = Limits::default();
    let mut registry = registry_with(&root, vec![]);
    toolstream::configured_tools::load_entries(&[entry], &root, &limits, &mut registry)
        .await
        .unwrap();
    let server = TestServer::start_with(registry, limits).await;
    assert!(remote_names(&server).await.contains(&"remote.alpha".into()));

    // The remote goes away: its tools stay listed and fail with UNAVAILABLE naming it.
    drop(first);
    let (_, status) = run_tool(&server, "remote.ticks", json!({"count": 1})).await;
    let status = status.expect("the run must fail");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains(&addr), "{status:?}");
    assert!(remote_names(&server).await.contains(&"remote.alpha".into()));

    // It comes back at the same address with another tool.
    let _second = remote_with_tool(dir.path(), &addr, "beta");
    let names = eventually(
        Duration::from_secs(30),
        "the remote to be listed again",
        async || {
            let names = remote_names(&server).await;
            if names.contains(&"remote.beta".into()) {
                Ok(names)
            } else {
                Err(format!("{names:?}"))
            }
        },
    )
    .await;
    assert!(!names.contains(&"remote.alpha".into()), "{names:?}");
    let (events, status) = run_tool(&server, "remote.ticks", json!({"count": 1})).await;
    assert!(status.is_none(), "{status:?}");
    assert_eq!(
        events.last().and_then(result_value),
        Some(json!({"count": 1}))
    );
}

#[tokio::test]
async fn relist_secs_must_be_positive() {
    let entry: toml::Table =
        toml::from_str("kind = \"grpc\"\nendpoint = \"http://127.0.0.1:1\"\nrelist_secs = 0\n")
            .unwrap();
    let root = std::env::current_dir().unwrap();
    let mut registry = registry_with(&root, vec![]);
    let error = toolstream::configured_tools::load_entries(
        &[entry],
        &root,
        &Limits::default(),
        &mut registry,
    )
    .await
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("`relist_secs` must be at least 1"),
        "{error}"
    );
}

/// The names of the tools `toolstream serve` at `addr` lists.
async fn names_at(addr: &str) -> Vec<String> {
    let mut client =
        toolstream::pb::tool_service_client::ToolServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
    let listed = client
        .list_tools(toolstream::pb::ListToolsRequest {})
        .await
        .unwrap()
        .into_inner();
    listed.tools.into_iter().map(|tool| tool.name).collect()
}

/// `GET /healthz` of the server at `addr`: status code and body.
async fn healthz(addr: &str) -> (u16, serde_json::Value) {
    let response = http()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_down_at_start_up_does_not_stop_serve_and_its_tools_appear_when_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    // A free port that nothing listens on until the remote starts there.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = reserved.local_addr().unwrap().to_string();
    drop(reserved);
    let config = dir.path().join("federating.toml");
    std::fs::write(
        &config,
        format!(
            "[[tools]]\nkind = \"grpc\"\nendpoint = \"http://{addr}\"\nprefix = \"remote.\"\nrelist_secs = 1\n"
        ),
    )
    .unwrap();
    let server = serve(dir.path(), &["--config", config.to_str().unwrap()], &[]).serving();

    // It serves, without the remote's tools, and its health says which source is down and why.
    let (code, health) = healthz(&server.addr).await;
    assert_eq!(code, 200, "{health}");
    assert_eq!(health["status"], "SERVING", "{health}");
    let source = &health["sources"][0];
    assert_eq!(
        source["source"],
        format!("remote http://{addr}"),
        "{health}"
    );
    assert_eq!(source["reachable"], false, "{health}");
    assert!(
        source["error"].as_str().is_some_and(|e| e.contains(&addr)),
        "{health}"
    );
    let names = names_at(&server.addr).await;
    assert!(names.contains(&"ticks".to_owned()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("remote.")), "{names:?}");

    // The remote comes up: its tools appear, and run.
    let _remote = remote_with_tool(dir.path(), &addr, "alpha");
    eventually(
        Duration::from_secs(30),
        "the remote's tools to appear",
        || async {
            names_at(&server.addr)
                .await
                .contains(&"remote.alpha".to_owned())
        },
    )
    .await;
    let mut client = toolstream::pb::tool_service_client::ToolServiceClient::connect(format!(
        "http://{}",
        server.addr
    ))
    .await
    .unwrap();
    let mut events = client
        .run_tool(run_request("remote.ticks", json!({"count": 1})))
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(event) = events.message().await.unwrap() {
        last = Some(event);
    }
    assert_eq!(
        last.as_ref().and_then(result_value),
        Some(json!({"count": 1}))
    );
    let (_, health) = healthz(&server.addr).await;
    assert_eq!(health["sources"][0]["reachable"], true, "{health}");
    assert!(health["sources"][0].get("error").is_none(), "{health}");

    let log = server.stop_and_log();
    let warning = log
        .lines()
        .find(|line| line.contains("remote unreachable at start-up"))
        .unwrap_or_else(|| panic!("no start-up warning in:\n{log}"));
    assert!(warning.contains(&addr), "{warning}");
}

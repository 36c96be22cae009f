//! A remote's tools are kept current: when the remote restarts with other tools, the federating
//! server offers the new ones and drops the old ones, and while the remote is down its tools
//! fail with UNAVAILABLE naming it.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::binary::{Served, serve_on};
use common::{TestServer, list_tools, registry_with, result_value, run_tool};
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
    toolstream::tools::from_config::load_entries(&[entry], &root, &limits, &mut registry)
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
    let limit = Instant::now() + Duration::from_secs(30);
    loop {
        let names = remote_names(&server).await;
        if names.contains(&"remote.beta".into()) {
            assert!(!names.contains(&"remote.alpha".into()), "{names:?}");
            break;
        }
        assert!(Instant::now() < limit, "never listed again: {names:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    let error = toolstream::tools::from_config::load_entries(
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

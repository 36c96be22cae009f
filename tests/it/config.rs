//! Configuration as `toolstream serve` reads it: limits that cannot work are refused at start-up
//! with the setting named, relative paths in a config file are relative to the file, and the model
//! API key can come from a file.

use crate::common;
use crate::common::model;
use std::path::Path;

use crate::common::binary::{Served, serve, toolstream};
use serde_json::Value;
use sha2::Digest;

#[test]
fn zero_concurrent_streams_is_refused_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("toolstream.toml"),
        "[limits]\nmax_concurrent_streams = 0\n",
    )
    .unwrap();
    let (status, stderr) = serve(dir.path(), &["--config", "toolstream.toml"], &[]).exited();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("limits.max_concurrent_streams")
            && stderr.contains("between 1 and 4294967295"),
        "{stderr}"
    );
}

#[test]
fn max_runs_above_what_the_engine_can_count_is_refused_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    // One more than tokio's Semaphore::MAX_PERMITS.
    let too_many = ((usize::MAX >> 3) + 1).to_string();
    let (status, stderr) = serve(dir.path(), &["--max-runs", &too_many], &[]).exited();
    assert_eq!(
        status.code(),
        Some(1),
        "a clean error, not a panic: {stderr}"
    );
    assert!(
        stderr.contains("limits.max_concurrent_runs") && stderr.contains("--max-runs"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("between 1 and {}", usize::MAX >> 3)),
        "{stderr}"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The sha256 `checksum` reports for `hello.txt` on `served`.
fn checksum_of_hello(served: &Served, cwd: &Path) -> String {
    let run = served.client(
        cwd,
        &["run", "checksum", "--json", r#"{"paths":["hello.txt"]}"#],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    result["result"]["value"]["files"][0]["sha256"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_relative_root_in_the_config_file_is_relative_to_the_file_and_a_flag_to_the_working_directory()
{
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(conf.join("data")).unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(conf.join("data/hello.txt"), b"beside the config\n").unwrap();
    std::fs::write(dir.path().join("data/hello.txt"), b"in the working dir\n").unwrap();
    std::fs::write(conf.join("toolstream.toml"), "root = \"data\"\n").unwrap();

    // Started from `dir`, which has a `data` directory of its own.
    let served = serve(dir.path(), &["--config", "conf/toolstream.toml"], &[]).serving();
    assert_eq!(
        checksum_of_hello(&served, dir.path()),
        sha256_hex(b"beside the config\n")
    );
    drop(served);

    let served = serve(
        dir.path(),
        &["--config", "conf/toolstream.toml", "--root", "data"],
        &[],
    )
    .serving();
    assert_eq!(
        checksum_of_hello(&served, dir.path()),
        sha256_hex(b"in the working dir\n")
    );
}

/// Runs an agent on `served` to its end; the stand-in model answers.
async fn ask(served: &Served) {
    let mut client = toolstream::pb::tool_service_client::ToolServiceClient::connect(format!(
        "http://{}",
        served.addr
    ))
    .await
    .unwrap();
    let stream = client
        .run_agent(toolstream::pb::RunAgentRequest {
            prompt: "hello?".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (_, status) = common::collect(stream).await;
    assert!(status.is_none(), "{status:?}");
}

#[tokio::test]
async fn the_model_api_key_can_come_from_a_file() {
    let model = model::StandIn::start(vec![
        model::text(&["one"]),
        model::text(&["two"]),
        model::text(&["three"]),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("toolstream.toml"),
        format!(
            "[model]\nurl = \"{}\"\nname = \"standin\"\napi_key_file = \"model.key\"\n",
            model.url
        ),
    )
    .unwrap();
    std::fs::write(conf.join("model.key"), "key-from-the-config-file\n").unwrap();
    std::fs::write(dir.path().join("flag.key"), "key-from-the-flag\n").unwrap();
    std::fs::write(dir.path().join("env.key"), "key-from-the-env\n").unwrap();
    let config = ["--config", "conf/toolstream.toml"];

    // `[model] api_key_file` is relative to the config file.
    ask(&serve(dir.path(), &config, &[]).serving()).await;
    // `--api-key-file` and TOOLSTREAM_API_KEY_FILE win over the file and are relative to the
    // working directory.
    let flag = [&config[..], &["--api-key-file", "flag.key"]].concat();
    ask(&serve(dir.path(), &flag, &[]).serving()).await;
    let env = [("TOOLSTREAM_API_KEY_FILE", "env.key")];
    ask(&serve(dir.path(), &config, &env).serving()).await;

    assert_eq!(
        model.authorizations(),
        [
            Some("Bearer key-from-the-config-file".to_owned()),
            Some("Bearer key-from-the-flag".to_owned()),
            Some("Bearer key-from-the-env".to_owned()),
        ]
    );
}

#[test]
fn the_api_key_flag_warns_that_a_key_in_argv_is_visible() {
    let dir = tempfile::tempdir().unwrap();
    let output = toolstream(dir.path(), &["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--api-key-file <FILE>"), "{help}");
    let api_key = help
        .split("--api-key <")
        .nth(1)
        .and_then(|rest| rest.split("\n  -").next())
        .unwrap_or_else(|| panic!("no --api-key in:\n{help}"));
    assert!(api_key.contains("`ps`"), "{api_key}");
}

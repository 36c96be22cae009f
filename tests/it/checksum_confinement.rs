//! The built-in `checksum` reads only regular files beneath its root: a symlink is never followed,
//! not even one swapped in while the run is under way, and a file with more than one hard link is
//! refused.

use std::path::Path;

use crate::common::{TestServer, collect, registry_with, result_value, run_request, run_tool};
use serde_json::json;
use sha2::Digest;
use tonic::Code;
use toolstream::config::Limits;
use toolstream::json_proto::struct_to_json;
use toolstream::pb::run_event::Event;

const SECRET: &[u8] = b"the secret outside the root";

/// A temporary directory holding `secret.txt` and the root `root/`.
fn layout() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.txt"), SECRET).unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("race")).unwrap();
    (dir, root)
}

fn secret_digest() -> String {
    sha2::Sha256::digest(SECRET)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Replaces `path` with a symlink to `target` in one step (a new link renamed over it).
fn swap_for_symlink(path: &Path, target: &Path) {
    let link = path.with_extension("link");
    std::os::unix::fs::symlink(target, &link).unwrap();
    std::fs::rename(&link, path).unwrap();
}

/// The first file is a sparse file far too large to finish hashing, so the run is held inside it
/// for as long as the test needs: the test waits until bytes of it were read (the paths were all
/// checked before that), swaps `race/x.txt` for a symlink to the secret outside the root, then
/// truncates the first file, which ends it at its next read and lets the run go on to x.txt.
/// The run fails on x.txt with PERMISSION_DENIED; the secret's digest is nowhere.
#[tokio::test]
async fn a_file_swapped_for_a_symlink_during_the_run_is_not_followed() {
    let (dir, root) = layout();
    let first = root.join("race/first.bin");
    std::fs::File::create(&first)
        .unwrap()
        .set_len(64 << 30)
        .unwrap();
    std::fs::write(root.join("race/x.txt"), b"inside").unwrap();
    let server = TestServer::start_with(registry_with(&root, vec![]), Limits::default()).await;

    let mut stream = server
        .client()
        .await
        .run_tool(run_request(
            "checksum",
            json!({"paths": ["race/first.bin", "race/x.txt"]}),
        ))
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    loop {
        let event = stream
            .message()
            .await
            .unwrap()
            .expect("the run must not end while the first file is read");
        let reading_first = matches!(&event.event, Some(Event::Progress(p))
            if p.call_id == "1"
                && p.data.clone().map(struct_to_json)
                    .is_some_and(|data| data.get("bytes_done").and_then(|n| n.as_u64()) > Some(0)));
        seen.push(event);
        if reading_first {
            break;
        }
    }
    swap_for_symlink(&root.join("race/x.txt"), &dir.path().join("secret.txt"));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(0)
        .unwrap();

    let (events, status) = collect(stream).await;
    seen.extend(events);
    let digest = secret_digest();
    assert!(
        !format!("{seen:?}").contains(&digest),
        "the secret's digest was sent: {:?}",
        seen.iter().find_map(result_value)
    );
    let status = status.expect("the run fails on the swapped file");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("race/x.txt") && status.message().contains("symbolic link"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn symlinks_present_from_the_start_are_refused_inside_the_root_too() {
    let (dir, root) = layout();
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/a.txt"), b"a").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("out.txt")).unwrap();
    std::os::unix::fs::symlink("sub/a.txt", root.join("in.txt")).unwrap();
    std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
    std::os::unix::fs::symlink("sub", root.join("sublink")).unwrap();
    let server = TestServer::start_with(registry_with(&root, vec![]), Limits::default()).await;

    for path in ["out.txt", "in.txt", "up/secret.txt", "sublink/a.txt"] {
        assert_denied(&server, path, "symbolic link").await;
    }
    // The file itself, by its own path, is read.
    let (events, status) = run_tool(&server, "checksum", json!({"paths": ["sub/a.txt"]})).await;
    assert!(status.is_none(), "{status:?}");
    let result = events.iter().find_map(result_value).unwrap();
    assert_eq!(result["files"][0]["bytes"], json!(1));
}

#[tokio::test]
async fn a_file_with_a_second_hard_link_is_refused() {
    let (dir, root) = layout();
    std::fs::hard_link(dir.path().join("secret.txt"), root.join("linked.txt")).unwrap();
    let server = TestServer::start_with(registry_with(&root, vec![]), Limits::default()).await;

    assert_denied(&server, "linked.txt", "2 hard links").await;
}

/// `checksum` of `path` fails with PERMISSION_DENIED, saying `why`, and gives no result.
async fn assert_denied(server: &TestServer, path: &str, why: &str) {
    let (events, status) = run_tool(server, "checksum", json!({"paths": [path]})).await;
    assert!(events.iter().all(|e| result_value(e).is_none()), "{path}");
    let status = status.unwrap_or_else(|| panic!("{path} must be refused"));
    assert_eq!(status.code(), Code::PermissionDenied, "{path}: {status:?}");
    assert!(
        status.message().contains(why),
        "{path}: {}",
        status.message()
    );
}

#[tokio::test]
async fn the_status_after_one_file_says_file() {
    let (_dir, root) = layout();
    std::fs::write(root.join("one.txt"), b"1").unwrap();
    let server = TestServer::start_with(registry_with(&root, vec![]), Limits::default()).await;

    let (events, status) = run_tool(&server, "checksum", json!({"paths": ["one.txt"]})).await;
    assert!(status.is_none(), "{status:?}");
    let said = |text: &str| {
        events.iter().any(|e| {
            matches!(&e.event, Some(Event::Progress(p))
                if p.call_id.is_empty() && p.status.as_deref() == Some(text))
        })
    };
    assert!(said("hashed 1 file"), "{events:?}");
}

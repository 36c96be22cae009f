//! Every JSON payload (the HTTP routes, SSE data, the CLI's JSON lines) is the canonical proto3
//! JSON mapping of the contract: protobuf's own parser (`json_format.Parse` in Python, strict)
//! reads each into its message, and the server reads what protobuf's printer writes.

use crate::common;
use crate::common::{TestServer, run_python};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobufs_own_json_parser_reads_every_payload_and_cli_line() {
    let server = TestServer::start().await;
    let url = server.url();
    let output = tokio::task::spawn_blocking(move || {
        run_python("json_mapping.py", &[&url, common::binary::BIN])
    })
    .await
    .unwrap();
    assert!(
        output.contains("json mapping: all checks passed"),
        "{output}"
    );
}

//! A Python client generated from `proto/` with grpcio-tools talks to the real server: the
//! contract works from another language, not only from Rust: ToolService and health
//! (`client_basic.py`), RunService (`run_service.py`).

use crate::common::{TestServer, run_python};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_python_client_runs_tools_sees_errors_and_checks_health() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let output = tokio::task::spawn_blocking(move || run_python("client_basic.py", &[&addr]))
        .await
        .unwrap();
    assert!(
        output.contains("python client: all checks passed"),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_python_client_resumes_lists_and_cancels_runs_through_run_service() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let output = tokio::task::spawn_blocking(move || run_python("run_service.py", &[&addr]))
        .await
        .unwrap();
    assert!(
        output.contains("python run service: all checks passed"),
        "{output}"
    );
}

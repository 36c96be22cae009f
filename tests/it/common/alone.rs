//! Tests that need the whole process to themselves run in a child process of the test binary.
//!
//! All integration tests share one process. A server that shuts down stops every tool process
//! group of its process (`toolstream::tools::processes::stop_all`: the registry is process-wide,
//! as a real server owns its process), so a test that calls [`super::TestServer::begin_shutdown`]
//! would kill the command tools and MCP servers of the tests running beside it, and wait for
//! them. Such a test starts with
//!
//! ```text
//! if !in_own_process("shutdown::the_test_name") {
//!     return; // it ran, alone, in a child process, and passed
//! }
//! ```
//!
//! A hand-written re-run rather than a fork crate: the child is this same binary asked to run
//! exactly that one test, and the parent checks that it ran (a misspelt name would otherwise run
//! nothing and pass).

use std::process::Command;

/// Set in the child process to the name of the test it runs.
const CHILD: &str = "TOOLSTREAM_TEST_IN_OWN_PROCESS";

/// Whether the calling test `test` (its name as the test harness lists it, `module::function`)
/// goes on in this process. In the test run it starts this test binary again to run only `test`,
/// waits for it, fails when it failed or did not run exactly that test, and returns `false`: the
/// test is over. In that child process it returns `true`.
pub fn in_own_process(test: &str) -> bool {
    if std::env::var_os(CHILD).is_some_and(|name| name == test) {
        return true;
    }
    let binary = std::env::current_exe().expect("the test binary's path");
    let output = Command::new(binary)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .output()
        .expect("start the test binary again");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{test} in its own process ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    false
}

//! `deploy/`: the Kubernetes manifests (and the `managed-redis/` overlay) parse and agree with the
//! server: the port it listens on by default, its grace period, its config file, a Redis store the
//! manifests' own Service names (the overlay's: a TLS URL from its Secret).

use crate::common;

#[test]
fn the_kubernetes_manifests_parse_and_agree_with_the_server() {
    let port = toolstream::config::DEFAULT_LISTEN
        .rsplit_once(':')
        .expect("host:port")
        .1;
    let grace = toolstream::config::Limits::default()
        .grace_period
        .as_secs()
        .to_string();
    // Connections still open this long after the runs ended are dropped (src/server.rs).
    let close_secs = "5";
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
    let out = common::run_python("deploy_manifests.py", &[deploy, port, &grace, close_secs]);
    assert!(out.contains("consistent"), "{out}");
}

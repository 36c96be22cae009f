//! The configuration as `Config::load` reads it: files, flags, environment, and what is refused.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::auth::{ToolScope, token_digest};

#[test]
fn flags_win_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("toolstream.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:7000\"\n[limits]\nmax_concurrent_runs = 5\n",
    )
    .unwrap();
    let config = Config::load(Some(&path), Overrides::default()).unwrap();
    assert_eq!(config.listen.port(), 7000);
    assert_eq!(config.limits.max_concurrent_runs, 5);

    let overrides = Overrides {
        listen: Some("127.0.0.1:7001".into()),
        ..Overrides::default()
    };
    let config = Config::load(Some(&path), overrides).unwrap();
    assert_eq!(config.listen.port(), 7001);
}

#[test]
fn a_relative_root_is_relative_to_the_file_unless_it_is_a_flag() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("toolstream.toml");
    std::fs::write(&path, "root = \"data\"\n").unwrap();
    let config = Config::load(Some(&path), Overrides::default()).unwrap();
    assert_eq!(config.root, dir.path().join("data"));

    let overrides = Overrides {
        root: Some("flagged".into()),
        ..Overrides::default()
    };
    let config = Config::load(Some(&path), overrides).unwrap();
    assert_eq!(config.root, Path::new("flagged"));
}

#[test]
fn an_api_key_file_is_read_and_trimmed_and_its_errors_name_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), "  secret\n").unwrap();
    let path = dir.path().join("toolstream.toml");
    std::fs::write(&path, "[model]\napi_key_file = \"key\"\n").unwrap();
    let config = Config::load(Some(&path), Overrides::default()).unwrap();
    assert_eq!(config.model.api_key.as_deref(), Some("secret"));

    std::fs::write(dir.path().join("key"), "\n").unwrap();
    let message = Config::load(Some(&path), Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(message.contains("model.api_key_file") && message.contains("empty"));

    let overrides = Overrides {
        api_key: Some("k".into()),
        api_key_file: Some(dir.path().join("key")),
        ..Overrides::default()
    };
    let message = Config::load(None, overrides).unwrap_err().to_string();
    assert!(message.contains("--api-key-file"), "{message}");
}

#[test]
fn the_run_store_comes_from_the_flag_or_the_file_and_hides_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("toolstream.toml");
    std::fs::write(
        &path,
        "[runs]\nstore = \"redis://:secret@10.0.0.1:6379/2\"\nkey_prefix = \"ts:\"\n\
         lease_secs = 3\nreplica_name = \"web\"\n",
    )
    .unwrap();
    let config = Config::load(Some(&path), Overrides::default()).unwrap();
    assert_eq!(config.store.key_prefix, "ts:");
    assert_eq!(config.store.lease, Duration::from_secs(3));
    assert_eq!(config.store.replica_name.as_deref(), Some("web"));
    assert_eq!(config.store.redacted_url(), "redis://:***@10.0.0.1:6379/2");
    assert!(!format!("{:?}", config.store).contains("secret"));

    let overrides = Overrides {
        store: Some("memory".into()),
        ..Overrides::default()
    };
    let config = Config::load(Some(&path), overrides).unwrap();
    assert!(config.store.is_memory());
    assert_eq!(
        Config::load(None, Overrides::default()).unwrap().store.url,
        "memory"
    );

    let overrides = Overrides {
        store: Some("postgres://db".into()),
        ..Overrides::default()
    };
    let message = Config::load(None, overrides).unwrap_err().to_string();
    assert!(message.contains("runs.store"), "{message}");
}

#[test]
fn a_redis_cluster_is_a_cluster_url_or_a_node_s_url_with_redis_cluster_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("toolstream.toml");
    let load = |runs: &str| {
        std::fs::write(&path, format!("[runs]\n{runs}")).unwrap();
        Config::load(Some(&path), Overrides::default())
    };
    let config = load("store = \"rediss+cluster://u:pw@n1:6379,n2:6380\"\n").unwrap();
    assert!(config.store.is_cluster() && config.store.is_tls());
    assert_eq!(
        config.store.cluster_nodes(),
        ["rediss://u:pw@n1:6379", "rediss://u:pw@n2:6380"]
    );
    assert_eq!(
        config.store.redacted_url(),
        "rediss+cluster://u:***@n1:6379,n2:6380"
    );
    let config = load("store = \"redis://n1:6379\"\nredis_cluster = true\n").unwrap();
    assert!(config.store.is_cluster() && !config.store.is_tls());
    assert_eq!(config.store.cluster_nodes(), ["redis://n1:6379"]);
    assert!(
        !load("store = \"redis://n1:6379\"\n")
            .unwrap()
            .store
            .is_cluster()
    );

    for (runs, key) in [
        // A cluster is reached over TCP.
        (
            "store = \"redis+unix:///run/redis.sock\"\nredis_cluster = true\n",
            "runs.redis_cluster",
        ),
        ("store = \"redis+cluster://\"\n", "runs.redis_cluster"),
        // Braces in the prefix would be every key's hash tag.
        (
            "store = \"redis+cluster://n1:6379\"\nkey_prefix = \"{ts}:\"\n",
            "runs.key_prefix",
        ),
    ] {
        let message = load(runs).unwrap_err().to_string();
        assert!(message.contains(key), "{runs}: {message}");
    }
}

#[test]
fn redis_tls_files_are_read_beside_the_file_and_the_password_comes_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "CA PEM").unwrap();
    std::fs::write(dir.path().join("c.pem"), "CERT PEM").unwrap();
    std::fs::write(dir.path().join("c.key"), "KEY PEM").unwrap();
    let path = dir.path().join("toolstream.toml");
    let load = |runs: &str| {
        std::fs::write(&path, format!("[runs]\n{runs}")).unwrap();
        Config::load(Some(&path), Overrides::default())
    };
    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var("TOOLSTREAM_CONFIG_TEST_REDIS_PW", "pw-in-env") };
    let config = load(
        "store = \"rediss://default@cache.example:6380/0\"\nredis_ca = \"ca.pem\"\n\
         redis_cert = \"c.pem\"\nredis_key = \"c.key\"\n\
         redis_password_env = \"TOOLSTREAM_CONFIG_TEST_REDIS_PW\"\n",
    )
    .unwrap();
    assert!(config.store.is_tls());
    assert_eq!(config.store.ca_pem.as_deref(), Some(&b"CA PEM"[..]));
    let client = config.store.client_cert.as_ref().unwrap();
    assert_eq!(
        (&client.cert_pem[..], &client.key_pem[..]),
        (&b"CERT PEM"[..], &b"KEY PEM"[..])
    );
    assert_eq!(config.store.password.as_deref(), Some("pw-in-env"));
    assert!(!format!("{:?}", config.store).contains("pw-in-env"));

    for (runs, key) in [
        // TLS files with a plaintext URL.
        (
            "store = \"redis://h:6379/0\"\nredis_ca = \"ca.pem\"\n",
            "runs.redis_ca",
        ),
        // A certificate without its key.
        (
            "store = \"rediss://h:6380/0\"\nredis_cert = \"c.pem\"\n",
            "runs.redis_cert",
        ),
        // A file that is not there.
        (
            "store = \"rediss://h:6380/0\"\nredis_ca = \"missing.pem\"\n",
            "runs.redis_ca",
        ),
        // A variable that is not set.
        (
            "store = \"rediss://h:6380/0\"\nredis_password_env = \"TOOLSTREAM_UNSET_FOR_TEST\"\n",
            "runs.redis_password_env",
        ),
    ] {
        let message = load(runs).unwrap_err().to_string();
        assert!(message.contains(key), "{runs}: {message}");
    }
}

#[test]
fn unknown_keys_are_reported_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "listn = \"x\"\n").unwrap();
    let err = Config::load(Some(&path), Overrides::default()).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("bad.toml") && message.contains("listn"),
        "{message}"
    );
}

#[test]
fn mcp_settings_are_read_and_bad_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("toolstream.toml");
    let config = Config::load(None, Overrides::default()).unwrap();
    assert!(config.http.mcp.enabled && config.http.mcp.sessions);
    std::fs::write(
        &path,
        "[mcp]\nenabled = false\nprogress_interval_ms = 250\n\
         allowed_hosts = [\"tools.example.com\"]\nsessions = false\n",
    )
    .unwrap();
    let mcp = Config::load(Some(&path), Overrides::default())
        .unwrap()
        .http
        .mcp;
    assert_eq!(
        mcp,
        McpConfig {
            enabled: false,
            progress_interval: Duration::from_millis(250),
            allowed_hosts: vec!["tools.example.com".into()],
            sessions: false,
        }
    );
    for (bad, key) in [
        ("progress_interval_ms = 0", "mcp.progress_interval_ms"),
        ("allowed_hosts = [\"\"]", "mcp.allowed_hosts"),
        ("allowed_hosts = [\"https://x/\"]", "mcp.allowed_hosts"),
    ] {
        std::fs::write(&path, format!("[mcp]\n{bad}\n")).unwrap();
        let message = Config::load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains(key), "{message}");
    }
}

#[test]
fn http_settings_are_read_and_bad_origins_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("toolstream.toml");
    let config = Config::load(None, Overrides::default()).unwrap();
    assert_eq!(config.http, HttpConfig::default());
    assert!(config.http.cors_origins.is_empty());

    std::fs::write(
        &path,
        "[http]\ncors_origins = [\"https://app.example.com\", \"http://localhost:8080\"]\n\
         keep_alive_secs = 5\nws_max_runs = 3\n",
    )
    .unwrap();
    let config = Config::load(Some(&path), Overrides::default()).unwrap();
    assert_eq!(
        config.http.cors_origins,
        ["https://app.example.com", "http://localhost:8080"]
    );
    assert_eq!(config.http.keep_alive, Duration::from_secs(5));
    assert_eq!(config.http.ws_max_runs, 3);

    for bad in [
        "app.example.com",
        "https://app.example.com/path",
        "https://a b",
    ] {
        std::fs::write(&path, format!("[http]\ncors_origins = [{bad:?}]\n")).unwrap();
        let message = Config::load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains("http.cors_origins"), "{message}");
    }
}

#[test]
fn connection_bounds_are_read_and_zero_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("toolstream.toml");
    std::fs::write(
        &path,
        "[http]\nfirst_byte_timeout_ms = 300\nbody_timeout_ms = 400\nmax_connections = 5\n",
    )
    .unwrap();
    let http = Config::load(Some(&path), Overrides::default())
        .unwrap()
        .http;
    assert_eq!(http.first_byte_timeout, Duration::from_millis(300));
    assert_eq!(http.body_timeout, Duration::from_millis(400));
    assert_eq!(http.max_connections, 5);
    for key in [
        "first_byte_timeout_ms",
        "body_timeout_ms",
        "max_connections",
    ] {
        std::fs::write(&path, format!("[http]\n{key} = 0\n")).unwrap();
        let message = Config::load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains(&format!("http.{key}")), "{message}");
    }
}

#[test]
fn max_parallel_calls_is_read_and_zero_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("toolstream.toml");
    std::fs::write(&path, "[model]\nmax_parallel_calls = 3\n").unwrap();
    let config = Config::load(Some(&path), Overrides::default()).unwrap();
    assert_eq!(config.model.max_parallel_calls, Some(3));

    std::fs::write(&path, "[model]\nmax_parallel_calls = 0\n").unwrap();
    let message = Config::load(Some(&path), Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(message.contains("model.max_parallel_calls"), "{message}");
}

#[test]
fn tls_paths_in_the_file_are_relative_to_it_and_must_come_in_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("toolstream.toml");
    std::fs::write(
        &path,
        "[server]\ntls_cert = \"tls/s.pem\"\ntls_key = \"tls/s.key\"\n\
         tls_client_ca = \"/etc/ca.pem\"\n",
    )
    .unwrap();
    let tls = Config::load(Some(&path), Overrides::default())
        .unwrap()
        .tls
        .unwrap();
    assert_eq!(tls.cert, dir.path().join("tls/s.pem"));
    assert_eq!(tls.key, dir.path().join("tls/s.key"));
    assert_eq!(tls.client_ca.as_deref(), Some(Path::new("/etc/ca.pem")));

    let overrides = Overrides {
        tls_cert: Some("flag.pem".into()),
        ..Overrides::default()
    };
    let tls = Config::load(Some(&path), overrides).unwrap().tls.unwrap();
    assert_eq!(tls.cert, Path::new("flag.pem"));

    for (text, key) in [
        ("[server]\ntls_cert = \"a\"\n", "server.tls_key"),
        ("[server]\ntls_key = \"a\"\n", "server.tls_cert"),
        ("[server]\ntls_client_ca = \"a\"\n", "server.tls_client_ca"),
    ] {
        std::fs::write(&path, text).unwrap();
        let message = Config::load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains(key), "{message}");
    }
}

#[test]
fn tokens_are_read_as_digests_and_bad_entries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("toolstream.toml");
    // SAFETY (edition 2024): no other test of this binary reads this variable.
    unsafe { std::env::set_var("TOOLSTREAM_CONFIG_TEST_TOKEN", "from-env") };
    std::fs::write(
        &path,
        format!(
            "[auth]\nmax_runs_per_principal = 3\n\n[[auth.tokens]]\nname = \"a\"\n\
             sha256 = \"{}\"\ntools = [\"ticks\"]\n\n[[auth.tokens]]\nname = \"b\"\n\
             token_env = \"TOOLSTREAM_CONFIG_TEST_TOKEN\"\n",
            "AB".repeat(32)
        ),
    )
    .unwrap();
    let config = Config::load(Some(&path), Overrides::default()).unwrap();
    assert!(config.auth.is_enabled());
    assert_eq!(config.limits.max_runs_per_owner, Some(3));
    let tokens = &config.auth.tokens;
    assert_eq!(tokens[0].sha256, [0xab; 32]);
    assert!(tokens[0].principal.tools.allows("ticks"));
    assert!(!tokens[0].principal.tools.allows("checksum"));
    assert_eq!(tokens[1].sha256, token_digest("from-env"));
    assert_eq!(tokens[1].principal.tools, ToolScope::All);
    assert!(!format!("{config:?}").contains("from-env"));

    for (entry, expected) in [
        ("name = \"x\"\nsha256 = \"abc\"", "64 hex digits"),
        (
            "name = \"x\"\ntoken_env = \"TOOLSTREAM_UNSET_FOR_TEST\"",
            "not set",
        ),
        ("name = \"x\"", "exactly one of sha256"),
        (
            "name = \"\"\ntoken_env = \"TOOLSTREAM_CONFIG_TEST_TOKEN\"",
            "empty `name`",
        ),
        ("name = \"x\"\ntoken = \"plain\"", "token"),
    ] {
        std::fs::write(&path, format!("[[auth.tokens]]\n{entry}\n")).unwrap();
        let message = Config::load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains(expected), "{entry}: {message}");
    }
    std::fs::write(&path, "[auth]\nmax_runs_per_principal = 0\n").unwrap();
    let message = Config::load(Some(&path), Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(message.contains("max_runs_per_principal"), "{message}");
    std::fs::write(&path, "[auth]\nprincipal_from_client_cert = true\n").unwrap();
    let message = Config::load(Some(&path), Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(message.contains("tls_client_ca"), "{message}");
    let config = Config::load(None, Overrides::default()).unwrap();
    assert!(!config.auth.is_enabled() && config.tls.is_none());
}

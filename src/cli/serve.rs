//! `toolstream serve`.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use futures::FutureExt;
use toolstream::config::{Config, LogFormat};
use toolstream::configured_tools::build_registry;
use toolstream::engine::{Store, StoreError};
use toolstream::server::{Server, shutdown_signal};
use toolstream::tls::ServerTls;
use toolstream::traces::Traces;
use toolstream::webhooks::Webhooks;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use super::ServeArgs;

pub(super) async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref(), args.overrides)?;
    // Traces are on when an OTEL_EXPORTER_OTLP_* endpoint is set (docs/operations.md).
    let traces = Traces::from_env()?;
    init_logs(config.log_format, traces.as_ref());

    // Listen for SIGTERM and SIGINT before any tool process starts: a signal while MCP servers
    // start must end in a shutdown that stops them, not kill toolstream and orphan them.
    // (Polling it once installs the handlers.)
    let mut signal = Box::pin(shutdown_signal());
    let signalled = (&mut signal).now_or_never().is_some();
    let shutdown = async move {
        if !signalled {
            signal.await;
        }
    };
    let grace = config.limits.grace_period;
    let served = serve_until(config, shutdown).await;
    // The server stops its tool processes as it shuts down; this catches those started before
    // a failure (an MCP server of an earlier entry when a later entry is wrong).
    toolstream::tools::processes::stop_all(grace).await;
    if let Some(traces) = traces {
        // Bounded: a collector that is gone cannot hold the exit up.
        traces.shutdown(TRACES_FLUSH_LIMIT).await;
    }
    served?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn serve_until(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let registry = build_registry(&config).await?;
    let tools: Vec<String> = registry.specs().into_iter().map(|spec| spec.name).collect();
    let store = Store::open(&config.store, &config.limits)
        .await
        .map_err(with_settings)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let tls = match &config.tls {
        Some(files) => Some(ServerTls::load(files.clone())?),
        None => None,
    };
    let principals: Vec<&str> = config
        .auth
        .tokens
        .iter()
        .map(|token| &*token.principal.name)
        .collect();
    tracing::info!(
        listen = %listener.local_addr()?,
        root = %config.root.display(),
        tools = ?tools,
        tls = tls.is_some(),
        mtls = tls.as_ref().is_some_and(ServerTls::requires_client_cert),
        auth = config.auth.is_enabled(),
        principals = ?principals,
        store = store.name(),
        replica = store.replica().unwrap_or("-"),
        "toolstream serving"
    );
    let mut server = Server::new(registry, config.limits).with_auth(config.auth.clone());
    if let Some(tls) = tls {
        server = server.with_tls(tls);
    }
    server
        .with_http(config.http)
        .with_store(store)
        .with_webhooks(Webhooks::from_config(
            &config.webhooks,
            &config.webhook_delivery,
        )?)
        .with_model(&config.model)?
        .serve(listener, shutdown)
        .await?;
    Ok(())
}

/// Without RUST_LOG: `info`, but rmcp only from `warn` (it logs every message at `info`).
const DEFAULT_LOG_FILTER: &str = "info,rmcp=warn";

/// How long the spans still buffered at exit may take to reach the collector.
const TRACES_FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Logs to stderr as `RUST_LOG` says; spans to the trace exporter too when `traces` is on (its
/// layer filters on its own, so `RUST_LOG` changes the logs, not the traces).
fn init_logs(format: LogFormat, traces: Option<&Traces>) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    // Colour only for a person reading a terminal: a log file or a collector gets plain text.
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let logs = match format {
        LogFormat::Human => logs.boxed(),
        LogFormat::Json => logs.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces.map(Traces::layer))
        .init();
}

/// A store's refusal with the settings that decide it, which the engine does not name.
fn with_settings(error: StoreError) -> anyhow::Error {
    match error {
        StoreError::Refused { .. } => anyhow::anyhow!(
            "{error} (check the password in the URL or [runs] redis_password_env, and [runs] \
             redis_ca, redis_cert, redis_key)"
        ),
        StoreError::Invalid { .. } => error.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusing_store_is_reported_with_the_settings_to_check() {
        let refused = StoreError::Refused {
            store: "rediss://redis:6380".into(),
            reason: "certificate required".into(),
        };
        let engine_words = refused.to_string();
        assert!(!engine_words.contains("[runs]"), "{engine_words}");
        let message = with_settings(refused).to_string();
        assert!(
            message.starts_with(&engine_words)
                && message.contains("[runs] redis_password_env")
                && message.contains("redis_cert"),
            "{message}"
        );
    }
}

//! `toolstream serve`.

use std::process::ExitCode;

use anyhow::Context;
use toolstream::config::{Config, LogFormat, Overrides};
use toolstream::server::{Server, build_registry, shutdown_signal};
use tracing_subscriber::EnvFilter;

use super::ServeArgs;

pub(super) async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(
        args.config.as_deref(),
        Overrides {
            listen: args.listen,
            root: args.root,
            log_format: args.log_format,
            max_concurrent_runs: args.max_runs,
            grace_period_secs: args.grace_period_secs,
            max_message_bytes: args.max_message_bytes,
            model_url: args.model_url,
            model: args.model,
            api_key: args.api_key,
            api_key_file: args.api_key_file,
            max_steps: args.max_steps,
        },
    )?;
    init_logs(config.log_format);

    let registry = build_registry(&config).await?;
    let tools: Vec<String> = registry.specs().map(|spec| spec.name.clone()).collect();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        root = %config.root.display(),
        tools = ?tools,
        "toolstream serving"
    );
    Server::new(registry, config.limits)
        .with_model(&config.model)?
        .serve(listener, shutdown_signal())
        .await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

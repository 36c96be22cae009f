//! The flags of `toolstream serve` (each also a `TOOLSTREAM_*` variable), which win over the file.
//!
//! A flag is an `Option`, so that the file can come between it and the default; `--help` shows
//! each default all the same, taken from where the section states it ([`show_default`]).

use std::path::PathBuf;

use clap::ValueEnum;

use super::{DEFAULT_LISTEN, Limits, LogFormat, StoreConfig};
use crate::agent::DEFAULT_MAX_STEPS;

/// What the command line and the environment set over the config file: `toolstream serve`'s
/// flags, each also a `TOOLSTREAM_*` variable (clap reads both; a flag wins over its variable).
#[derive(Debug, Clone, Default, clap::Args)]
#[command(mut_args(show_default))]
pub struct Overrides {
    /// Address to listen on.
    #[arg(long, env = "TOOLSTREAM_LISTEN")]
    pub listen: Option<String>,
    /// Directory file tools are confined to [default: the working directory].
    #[arg(long, env = "TOOLSTREAM_ROOT")]
    pub root: Option<PathBuf>,
    /// Most runs in progress at once; more get RESOURCE_EXHAUSTED.
    #[arg(
        long = "max-runs",
        env = "TOOLSTREAM_MAX_RUNS",
        value_name = "MAX_RUNS"
    )]
    pub max_concurrent_runs: Option<usize>,
    /// Seconds runs in progress may take to finish after SIGTERM.
    #[arg(long, env = "TOOLSTREAM_GRACE_PERIOD_SECS")]
    pub grace_period_secs: Option<u64>,
    /// Largest gRPC message accepted or sent, in bytes.
    #[arg(long, env = "TOOLSTREAM_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Base URL of an OpenAI-compatible model API for RunAgent, ending in /v1
    /// (OpenAI, vLLM, Ollama, llama.cpp's server, LM Studio).
    #[arg(long, env = "TOOLSTREAM_MODEL_URL")]
    pub model_url: Option<String>,
    /// Model used when a RunAgent request names none.
    #[arg(long, env = "TOOLSTREAM_MODEL")]
    pub model: Option<String>,
    /// API key sent to the model endpoint as a bearer token. Given as this flag, the key is
    /// visible to every user of the machine in `ps`: prefer --api-key-file or the
    /// TOOLSTREAM_API_KEY environment variable.
    #[arg(long, env = "TOOLSTREAM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// File holding the model API key (surrounding whitespace is ignored).
    #[arg(long, env = "TOOLSTREAM_API_KEY_FILE", value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Most model turns of an agent run when the request sets none.
    #[arg(long, env = "TOOLSTREAM_MAX_STEPS")]
    pub max_steps: Option<u32>,
    /// Log format.
    #[arg(long, env = "TOOLSTREAM_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Serve TLS with this PEM certificate chain (with --tls-key); reloaded when the file
    /// changes.
    #[arg(long, env = "TOOLSTREAM_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "TOOLSTREAM_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: clients need a certificate signed by a CA of this PEM file.
    #[arg(long, env = "TOOLSTREAM_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Where runs are kept: "memory", or a Redis shared by several replicas
    /// (redis://host:port/db).
    #[arg(
        long,
        env = "TOOLSTREAM_STORE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub store: Option<String>,
}

/// The default of the flag `id` as `--help` shows it: what the setting comes to when neither the
/// flag, its variable nor the file sets it, from where that is stated (`None`: no default to
/// show, or one said in words).
fn default_of(id: &str) -> Option<String> {
    let limits = Limits::default();
    Some(match id {
        "listen" => DEFAULT_LISTEN.to_owned(),
        "max_concurrent_runs" => limits.max_concurrent_runs.to_string(),
        "grace_period_secs" => limits.grace_period.as_secs().to_string(),
        "max_message_bytes" => limits.max_message_bytes.to_string(),
        "max_steps" => DEFAULT_MAX_STEPS.to_string(),
        "log_format" => LogFormat::default()
            .to_possible_value()?
            .get_name()
            .to_owned(),
        "store" => StoreConfig::default().url,
        _ => return None,
    })
}

/// `arg` with its default at the end of its help, as clap shows the defaults it applies itself.
fn show_default(arg: clap::Arg) -> clap::Arg {
    let Some(default) = default_of(arg.get_id().as_str()) else {
        return arg;
    };
    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
    arg.help(format!("{help} [default: {default}]"))
}

//! The flags of `toolstream serve` (each also a `TOOLSTREAM_*` variable), which win over the file.

use std::path::PathBuf;

use super::LogFormat;

/// What the command line and the environment set over the config file: `toolstream serve`'s
/// flags, each also a `TOOLSTREAM_*` variable (clap reads both; a flag wins over its variable).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Address to listen on [default: 127.0.0.1:50051].
    #[arg(long, env = "TOOLSTREAM_LISTEN")]
    pub listen: Option<String>,
    /// Directory file tools are confined to [default: the working directory].
    #[arg(long, env = "TOOLSTREAM_ROOT")]
    pub root: Option<PathBuf>,
    /// Most runs in progress at once; more get RESOURCE_EXHAUSTED [default: 16384].
    #[arg(
        long = "max-runs",
        env = "TOOLSTREAM_MAX_RUNS",
        value_name = "MAX_RUNS"
    )]
    pub max_concurrent_runs: Option<usize>,
    /// Seconds runs in progress may take to finish after SIGTERM [default: 30].
    #[arg(long, env = "TOOLSTREAM_GRACE_PERIOD_SECS")]
    pub grace_period_secs: Option<u64>,
    /// Largest gRPC message accepted or sent, in bytes [default: 4194304].
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
    /// Most model turns of an agent run when the request sets none [default: 8].
    #[arg(long, env = "TOOLSTREAM_MAX_STEPS")]
    pub max_steps: Option<u32>,
    /// Log format [default: human].
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
    /// (redis://host:port/db) [default: memory].
    #[arg(
        long,
        env = "TOOLSTREAM_STORE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub store: Option<String>,
}

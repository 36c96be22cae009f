//! The `toolstream` command line: `serve`, the client subcommands of ToolService (`tools`, `run`,
//! `agent`), those of RunService (`runs`, `watch`, `get`, `cancel`), `health`, and `mcp-stdio`.

mod agent;
mod ask;
mod client;
mod mcp_stdio;
mod output;
mod runs;
mod serve;
mod tree;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Run long-running tools and tool-using agents as a gRPC service, and stream their progress.
#[derive(Debug, Parser)]
#[command(name = "toolstream", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the tool service (with health and reflection) until SIGTERM or Ctrl-C.
    Serve(ServeArgs),
    /// List the tools a server offers.
    Tools(ToolsArgs),
    /// Run one tool and show its progress; prints the result as JSON.
    Run(RunArgs),
    /// Run an agent: a language model calls the server's tools until it answers the prompt.
    Agent(AgentArgs),
    /// List the runs a server holds, newest first.
    Runs(RunsArgs),
    /// Follow a run by its id to its end, as `run` shows it: from its first event, after a
    /// sequence number, or from where it stands now.
    Watch(WatchArgs),
    /// Show a run by its id as JSON: its state, latest progress, and result or error.
    Get(RunIdArgs),
    /// Cancel a run for everyone (its caller and every watcher); prints the state it ends in.
    Cancel(RunIdArgs),
    /// Answer a run's open input request (RespondToRun); prints the state it is in then.
    Respond(RespondArgs),
    /// Check a server's health through grpc.health.v1.
    Health(HealthArgs),
    /// Serve a toolstream server's tools to an MCP client on stdin/stdout (for clients that
    /// launch MCP servers as processes), forwarding each call to the server over gRPC.
    McpStdio(McpStdioArgs),
}

/// Settings of `serve`: the config file, and the settings that override it (each also an
/// environment variable; flags win over the environment, which wins over the config file).
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// TOML config file.
    #[arg(long, env = "TOOLSTREAM_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: toolstream::config::Overrides,
}

/// Where a client subcommand connects.
#[derive(Debug, clap::Args)]
struct ClientArgs {
    /// Server address.
    #[arg(
        long,
        env = "TOOLSTREAM_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    addr: String,
    /// Bearer token sent with every call (servers with [[auth.tokens]]).
    #[arg(long, env = "TOOLSTREAM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM CA certificates to verify the server with (TLS; default: the system's roots for
    /// an https:// address).
    #[arg(long, env = "TOOLSTREAM_TLS_CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with --tls-key).
    #[arg(long, env = "TOOLSTREAM_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "TOOLSTREAM_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ToolsArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Print the full list, schemas included, as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The tool to run.
    tool: String,
    /// An argument as key=value; the value is read as JSON when it parses (20, true, ["a"]),
    /// as a string otherwise. Repeatable.
    #[arg(long = "arg", value_name = "KEY=VALUE", conflicts_with = "json")]
    args: Vec<String>,
    /// All arguments as one JSON object.
    #[arg(long, value_name = "OBJECT")]
    json: Option<String>,
    /// At most one progress event per this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    min_interval_ms: u32,
    /// Ask for a heartbeat event whenever the stream has been silent this many milliseconds
    /// (keeps proxies with idle timeouts from closing it) [default: none].
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 0,
        hide_default_value = true
    )]
    heartbeat_ms: u32,
    /// Give up after this many seconds (sent as the gRPC deadline).
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Start the run, print its id and exit at once; the run goes on in the server (see
    /// `watch`, `get`, `cancel`).
    #[arg(long)]
    detach: bool,
    /// A label for the run as key=value (find it with `runs --label`). Repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// An idempotency key: a retry with the same key gets the run the first attempt started
    /// instead of starting another.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// When the run asks for input, fail (naming the request and `toolstream respond`) instead
    /// of prompting on the terminal.
    #[arg(long)]
    no_input: bool,
}

#[derive(Debug, clap::Args)]
struct RunsArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Only runs in this state.
    #[arg(long, value_enum)]
    state: Option<StateArg>,
    /// Only runs of this tool.
    #[arg(long, value_name = "NAME")]
    tool: Option<String>,
    /// Runs per request [default: the server's, 50].
    #[arg(long, value_name = "N")]
    page_size: Option<u32>,
    /// Every run the server holds, page after page (otherwise only the first page).
    #[arg(long)]
    all: bool,
    /// Only runs carrying this label (key=value); repeated, runs carrying all of them.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
}

/// A run state, as `runs --state` takes it.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StateArg {
    Running,
    InputRequired,
    Succeeded,
    Failed,
    Cancelled,
}

#[derive(Debug, clap::Args)]
struct WatchArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The run's id (printed by `run --detach`, listed by `runs`).
    run_id: String,
    /// Start after this sequence number: pass the last one you saw to go on where you left.
    #[arg(long, value_name = "N", default_value_t = 0, conflicts_with = "latest")]
    after: u64,
    /// Skip the history: the started event, the latest progress, then live.
    #[arg(long)]
    latest: bool,
    /// At most one progress event per this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    min_interval_ms: u32,
    /// Ask for a heartbeat event whenever the stream has been silent this many milliseconds
    /// [default: none].
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 0,
        hide_default_value = true
    )]
    heartbeat_ms: u32,
}

#[derive(Debug, clap::Args)]
struct RunIdArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The run's id (printed by `run --detach`, listed by `runs`).
    run_id: String,
}

#[derive(Debug, clap::Args)]
struct RespondArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The run's id.
    run_id: String,
    /// The request to answer (`input-1`: from the run's input_requested event or `toolstream get`).
    request_id: String,
    /// The answer, as JSON (`true`, `3`, `{"count": 2}`); text that is not JSON is sent as a
    /// string. Leave it out with `--decline`.
    #[arg(required_unless_present = "decline")]
    value: Option<String>,
    /// Decline the request instead of answering it.
    #[arg(long, conflicts_with = "value")]
    decline: bool,
}

#[derive(Debug, clap::Args)]
struct AgentArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// What to ask.
    prompt: String,
    /// Tools the model may call, comma-separated [default: all].
    #[arg(long, value_delimiter = ',')]
    tools: Vec<String>,
    /// The model [default: the server's].
    #[arg(long)]
    model: Option<String>,
    /// Most model turns [default: the server's].
    #[arg(long)]
    max_steps: Option<u32>,
    /// A system prompt placed before the prompt.
    #[arg(long)]
    system: Option<String>,
    /// A label for the run as key=value (find it with `runs --label`). Repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// An idempotency key: a retry with the same key gets the run the first attempt started
    /// instead of starting another.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// Give up after this many seconds (sent as the gRPC deadline).
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// When the run asks for input, fail (naming the request and `toolstream respond`) instead
    /// of prompting on the terminal.
    #[arg(long)]
    no_input: bool,
}

#[derive(Debug, clap::Args)]
struct McpStdioArgs {
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, clap::Args)]
struct HealthArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Service to check; empty means the whole server.
    #[arg(long, default_value = "")]
    service: String,
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::serve(args).await,
            Command::Tools(args) => client::tools(args).await,
            Command::Run(args) => client::run(args).await,
            Command::Agent(args) => agent::agent(args).await,
            Command::Runs(args) => runs::runs(args).await,
            Command::Watch(args) => runs::watch(args).await,
            Command::Get(args) => runs::get(args).await,
            Command::Cancel(args) => runs::cancel(args).await,
            Command::Respond(args) => runs::respond(args).await,
            Command::Health(args) => client::health(args).await,
            Command::McpStdio(args) => mcp_stdio::mcp_stdio(args).await,
        }
    });
    // Whatever is left (a connection a client stopped reading, blocking work in flight) gets a
    // bounded time: the process always exits.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match outcome {
        Ok(code) => code,
        // The reader of stdout went away (`| head`): nothing left to tell anyone.
        Err(error) if output::is_broken_pipe(&error) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {}", output::error_text(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

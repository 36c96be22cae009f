//! toolstream runs long-running tools and tool-using agents as a gRPC service and streams their
//! progress to callers in any language as it happens.
//!
//! Read it in the order an event travels, from the tool up to the wire:
//!
//! 1. [`tools`]: what a tool is ([`tools::Tool`]), the [`tools::Progress`] handle a tool reports
//!    through (and splits into sub-tasks whose progress rolls up), the ergonomic
//!    [`tools::native::tool_fn`] constructor, the built-in tools, the other kinds (command, MCP,
//!    remote gRPC) with the process groups they run in; [`configured_tools`] (read with
//!    [`config`]) builds the registry a configuration describes.
//! 2. [`registry`]: name → tool, with each tool's JSON Schemas; validates arguments before a run.
//! 3. [`engine`]: one run per call, held as a resource: its log of events (sequence numbers,
//!    coalescing, gaps, the estimate of each call's time left) read by any number of streams, the
//!    table of runs (lookup, listing, retention, cancellation), the run store those live in
//!    (memory, or Redis shared by several replicas), deadlines, the limit on concurrent runs,
//!    graceful draining, and the settings it runs under ([`engine::Limits`],
//!    [`engine::StoreConfig`]), which [`config`] builds. A run is a [`engine::RunKind`] (a tool or
//!    an agent) belonging to an opaque [`engine::Owner`]; the engine names no principal, RPC or
//!    configuration key ([`status`] words its errors for callers).
//! 4. [`agent`]: a language model that calls tools, as a run of the engine; the model behind a
//!    [`agent::ModelProvider`] trait, with an OpenAI-compatible implementation.
//! 5. [`operations`]: the product's verbs (list tools, run a tool or an agent, get, list, watch
//!    and cancel runs), once for every face: each takes the [`auth::Caller`] its face
//!    authenticated, applies the caller's policy, and answers a result that is authorised and
//!    stored. [`status`] is the one mapping from their errors to the contract's status codes.
//! 6. The faces, each a thin adapter over the operations (decode, call one, encode):
//!    [`transport`], the tonic services (`ToolService`, `RunService`) between the wire types in
//!    [`pb`] and the operations' requests; `web` (`src/web/`) for HTTP: JSON routes, SSE, the
//!    WebSocket and the page; [`mcp`] serves the registry to MCP clients (`/mcp`, mounted by
//!    the web face, and the stdio bridge of `toolstream mcp-stdio`); [`json_proto`] converts
//!    JSON to protobuf values and back, and writes the canonical proto3 JSON.
//! 7. [`server`]: the listening server with health, reflection, gRPC-Web and shutdown; `listener`
//!    (`src/listener.rs`) serves gRPC and HTTP/1.1 on one port with the HTTP/2 settings, over
//!    TLS when configured ([`tls`]); [`auth`] says who calls and what they may do;
//!    [`config`] says how it is configured (`src/config/`, a file per section). The `toolstream` binary (`src/main.rs`, `src/cli/`)
//!    only parses flags and calls this library.
//! 8. [`telemetry`]: what operators see besides logs: the Prometheus metrics at `/metrics` (fed by
//!    the engine's [`engine::RunObserver`] hooks and a tower layer around the gRPC services);
//!    [`traces`]: OpenTelemetry traces, with W3C trace context in and out.
//!
//! ## Layers
//!
//! Dependencies point one way: a module may import those on the lines below its own, never one
//! above. Modules on one line are peers: they may import each other, but not in a loop. A
//! submodule named on its own line (`engine::store`, say) has that line, not its parent's.
//! `tests/it/layering.rs` reads this table and fails on an import that runs up or a loop; the few
//! imports that still run up are listed there, each with what it would take to remove.
//!
//! ```text
//! cli                 the `toolstream` binary's commands (src/main.rs, src/cli/)
//! server              puts the services, the web face, telemetry and the listener together
//! web                 HTTP: JSON routes, SSE, the WebSocket, the page, the auth middleware
//! mcp                 the registry as an MCP server: `/mcp` (Streamable HTTP), the stdio bridge
//! listener            gRPC and HTTP/1.1 on one port, the HTTP/2 settings
//! webhooks            signed HTTP callbacks when runs end, queued beside the engine
//! telemetry           metrics around the gRPC services and the engine's runs
//! transport           the tonic services, adapters over the operations
//! status              domain errors as the contract's status codes (gRPC's; HTTP derives its own)
//! operations          the product's verbs, for every face: authorised, stored
//! configured_tools    the registry a configuration describes
//! config              the file, environment and flags, resolved into each layer's settings
//! auth                who calls and what they may do
//! agent               a language model calling tools, as a run of the engine
//! engine              runs: their logs, table, store, limits
//! registry            name → tool, with schemas
//! tools               what a tool is, and the tools
//! json_proto          JSON ↔ protobuf values
//! pb                  the generated wire types
//! tls, traces        leaves: rustls settings; traces and W3C trace context in and out
//! ```

pub mod agent;
pub mod auth;
pub mod config;
pub mod configured_tools;
pub mod engine;
pub mod json_proto;
mod listener;
pub mod mcp;
pub mod operations;
pub mod pb;
pub mod registry;
pub mod server;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod tools;
pub mod traces;
pub mod transport;
mod web;
pub mod webhooks;

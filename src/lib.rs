//! toolstream runs long-running tools and tool-using agents as a gRPC service and streams their
//! progress to callers in any language as it happens.
//!
//! Read it in the order an event travels, from the tool up to the wire:
//!
//! 1. [`tools`]: what a tool is ([`tools::Tool`]), the [`tools::Progress`] handle a tool reports
//!    through (and splits into sub-tasks whose progress rolls up), the ergonomic
//!    [`tools::native::tool_fn`] constructor, the built-in tools, the other kinds (command, MCP,
//!    remote gRPC) with the process groups they run in, and [`tools::from_config`], which builds
//!    the registry a configuration describes.
//! 2. [`registry`]: name → tool, with each tool's JSON Schemas; validates arguments before a run.
//! 3. [`engine`]: one run per call, held as a resource: its log of events (sequence numbers,
//!    coalescing, gaps, the estimate of each call's time left) read by any number of streams, the
//!    table of runs (lookup, listing, retention, cancellation), the run store those live in
//!    (memory, or Redis shared by several replicas), deadlines, the limit on concurrent runs,
//!    graceful draining, and the settings it runs under ([`engine::Limits`],
//!    [`engine::StoreConfig`]), which [`config`] builds.
//! 4. [`agent`]: a language model that calls tools, as a run of the engine; the model behind a
//!    [`agent::ModelProvider`] trait, with an OpenAI-compatible implementation.
//! 5. [`transport`]: the tonic services (`ToolService`, `RunService`), thin adapters between the
//!    wire types in [`pb`] and the engine; [`json_proto`] converts JSON to protobuf values and
//!    back, and writes the canonical proto3 JSON. `web` (`src/web/`) is its sibling for HTTP:
//!    JSON routes, SSE, the WebSocket and the page.
//! 6. [`server`]: the listening server with health, reflection, gRPC-Web and shutdown; `listener`
//!    (`src/listener.rs`) serves gRPC and HTTP/1.1 on one port with the HTTP/2 settings, over
//!    TLS when configured ([`tls`]); [`auth`] says who calls and what they may do;
//!    [`config`] says how it is configured. The `toolstream` binary (`src/main.rs`, `src/cli/`)
//!    only parses flags and calls this library.
//! 7. [`telemetry`]: what operators see besides logs: the Prometheus metrics at `/metrics` (fed by
//!    the engine's [`engine::RunObserver`] hooks and a tower layer around the gRPC services) and
//!    OpenTelemetry traces, with W3C trace context in and out.
//!
//! ## Layers
//!
//! Dependencies point one way: a module may import those on the lines below its own, never one
//! above. Modules on one line are peers: they may import each other, but not in a loop. A
//! submodule named on its own line (`telemetry::traces`) has that line, not its parent's.
//! `tests/it/layering.rs` reads this table and fails on an import that runs up or a loop; the few
//! imports that still run up are listed there, each with what it would take to remove.
//!
//! ```text
//! cli                 the `toolstream` binary's commands (src/main.rs, src/cli/)
//! server              puts the services, the web face, telemetry and the listener together
//! web                 HTTP: JSON routes, SSE, the WebSocket, the page, the auth middleware
//! listener            gRPC and HTTP/1.1 on one port, the HTTP/2 settings
//! telemetry           metrics around the gRPC services and the engine's runs
//! transport           the tonic services; domain errors as gRPC statuses
//! config              the file, environment and flags, resolved into each layer's settings
//! auth                who calls and what they may do
//! agent               a language model calling tools, as a run of the engine
//! engine              runs: their logs, table, store, limits
//! registry            name → tool, with schemas
//! tools               what a tool is, and the tools
//! json_proto          JSON ↔ protobuf values
//! pb                  the generated wire types
//! tls, telemetry::traces   leaves: rustls settings; W3C trace context in and out
//! ```

pub mod agent;
pub mod auth;
pub mod config;
pub mod engine;
pub mod json_proto;
mod listener;
pub mod pb;
pub mod registry;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod tools;
pub mod transport;
mod web;

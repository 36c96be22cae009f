//! toolstream runs long-running tools and tool-using agents as a gRPC service and streams their
//! progress to callers in any language as it happens.
//!
//! Read it in the order an event travels, from the tool up to the wire:
//!
//! 1. [`tools`]: what a tool is ([`tools::Tool`]), the [`tools::Progress`] handle a tool reports
//!    through, the ergonomic [`tools::native::tool_fn`] constructor, and the built-in tools.
//! 2. [`registry`]: name → tool, with each tool's JSON Schemas; validates arguments before a run.
//! 3. [`engine`]: one run per call: run id, event queue with sequence numbers and coalescing of
//!    progress, cancellation, deadlines, the limit on concurrent runs, graceful draining.
//! 4. [`transport`]: the tonic services, a thin adapter between the wire types in [`pb`] and the
//!    engine. `web` (`src/web/`) is its sibling for HTTP: JSON routes, SSE, the WebSocket and
//!    the page, all in the canonical proto3 JSON of [`json_proto`].
//! 5. [`server`]: the listening server with health, reflection, gRPC-Web and shutdown; `listener`
//!    (`src/listener.rs`) serves gRPC and HTTP/1.1 on one port with the HTTP/2 settings;
//!    [`config`] says how it is configured. The `toolstream` binary (`src/main.rs`, `src/cli/`)
//!    only parses flags and calls this library.
//!
//! Dependencies point one way: transport (gRPC and web) → engine → registry → tools.

pub mod agent;
pub mod config;
pub mod engine;
pub mod json_proto;
mod listener;
pub mod pb;
pub mod registry;
pub mod server;
pub mod sources;
pub mod tools;
pub mod transport;
mod web;

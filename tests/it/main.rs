//! The integration tests: one test binary, one module per capability (`run_tool`, `cancellation`,
//! `replicas`…), each starting real servers and talking to them with real clients; helpers shared
//! by all of them live in `common/`.
//!
//! One binary rather than one per file: the crate is linked once, not once per file, and `common`
//! is compiled once with no `allow(dead_code)`.
//!
//! To add tests: write `tests/it/<capability>.rs` (no `mod common;`: `use crate::common::…`), and
//! add `mod <capability>;` below, in alphabetical order. Run one module with
//! `cargo test --test it <capability>::`.
//!
//! Every test runs in this one process, on the test harness's threads: nothing process-wide may be
//! changed by a test (environment variables, the working directory, a global tracing subscriber).
//! A test that shuts a server down stops every tool process of the process, so it runs in a child
//! process of its own (`common::alone`).
//!
//! One test lives outside this binary: `tests/event_cost.rs` counts the heap allocations of an
//! event with a global allocator of its own, which would count every other test's too here.

mod common;

mod agent;
mod agent_approvals;
mod ask_python;
mod auth;
mod backpressure;
mod cancellation;
mod checksum_confinement;
mod cli;
mod cli_terminal;
mod cluster_script;
mod command_describe;
mod command_tools;
mod concurrency;
mod config;
mod connection_limits;
mod cross_site;
mod deploy_manifests;
mod doc_links;
mod errors;
mod eta;
mod example_tools;
mod grpc_web;
mod health_reflection;
mod idempotency_labels;
mod input_owner_lost;
mod input_requests;
mod json_mapping;
mod layering;
mod many_sub_tasks;
mod mcp_elicitation;
mod mcp_server;
mod mcp_tools;
mod metrics;
mod nested_progress;
mod page_input_forms;
mod partial_results;
mod python_client;
mod redis_cluster;
mod redis_tls;
mod remote_inputs;
mod remote_relist;
mod remote_tools;
mod replicas;
mod run_service;
mod run_tool;
mod shutdown;
mod shutdown_processes;
mod sse;
mod tls;
mod traces;
mod web_page;
mod webhooks;
mod websocket;

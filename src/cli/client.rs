//! The client subcommands: `tools`, `run`, `health`.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::{Map, Value};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use toolstream::json_proto::{json_to_struct, value_to_json};
use toolstream::pb;
use toolstream::pb::tool_service_client::ToolServiceClient;

use super::output::{ProgressView, event_json, status_exit};
use super::{HealthArgs, RunArgs, ToolsArgs};

pub(super) async fn connect(addr: &str) -> anyhow::Result<Channel> {
    let addr = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    Endpoint::from_shared(addr.clone())
        .with_context(|| format!("{addr:?} is not a server address"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {addr}; is `toolstream serve` running there?"))
}

pub(super) async fn tools(args: ToolsArgs) -> anyhow::Result<ExitCode> {
    let mut client = ToolServiceClient::new(connect(&args.client.addr).await?);
    let response = match client.list_tools(pb::ListToolsRequest {}).await {
        Ok(response) => response.into_inner(),
        Err(status) => return Ok(status_exit(&status)),
    };
    if args.json {
        let tools: Vec<Value> = response
            .tools
            .into_iter()
            .map(|tool| {
                serde_json::json!({
                    "name": tool.name,
                    "kind": tool.kind,
                    "description": tool.description,
                    "input_schema": tool.input_schema.map(struct_json),
                    "output_schema": tool.output_schema.map(struct_json),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&tools)?);
    } else {
        let width = response
            .tools
            .iter()
            .map(|t| t.name.len())
            .max()
            .unwrap_or(0);
        for tool in response.tools {
            println!(
                "{:width$}  {:8}  {}",
                tool.name, tool.kind, tool.description
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn struct_json(object: prost_types::Struct) -> Value {
    Value::Object(toolstream::json_proto::struct_to_json(object))
}

/// Reads `--arg key=value` pairs: values are JSON when they parse, strings otherwise.
fn parse_args(pairs: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut object = Map::new();
    for pair in pairs {
        let Some((key, raw)) = pair.split_once('=') else {
            bail!("--arg {pair:?} is not KEY=VALUE");
        };
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()));
        object.insert(key.to_owned(), value);
    }
    Ok(object)
}

pub(super) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let arguments = match &args.json {
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(object)) => object,
            Ok(_) => bail!("--json must be a JSON object, like '{{\"count\": 3}}'"),
            Err(e) => bail!("--json is not valid JSON: {e}"),
        },
        None => parse_args(&args.args)?,
    };
    let mut client = ToolServiceClient::new(connect(&args.client.addr).await?);
    let mut request = tonic::Request::new(pb::RunToolRequest {
        tool: args.tool.clone(),
        arguments: Some(json_to_struct(arguments)),
        options: Some(pb::RunOptions {
            min_progress_interval_ms: args.min_interval_ms,
            ..pb::RunOptions::default()
        }),
    });
    if let Some(secs) = args.timeout {
        request.set_timeout(Duration::from_secs_f64(secs.max(0.001)));
    }
    let mut events = match client.run_tool(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return Ok(status_exit(&status)),
    };

    let interactive = std::io::stdout().is_terminal();
    let view = interactive.then(|| ProgressView::new(&args.tool));
    while let Some(item) = events.next().await {
        let event = match item {
            Ok(event) => event,
            Err(status) => {
                if let Some(view) = &view {
                    view.abandon();
                }
                return Ok(status_exit(&status));
            }
        };
        match &view {
            None => println!("{}", event_json(&event)),
            Some(view) => match event.event {
                Some(pb::run_event::Event::Progress(progress)) => view.show(&progress),
                Some(pb::run_event::Event::Result(result)) => {
                    view.finish();
                    let value = result.value.map_or(Value::Null, value_to_json);
                    println!("{}", serde_json::to_string_pretty(&value)?);
                }
                _ => {}
            },
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn health(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let mut client = HealthClient::new(connect(&args.client.addr).await?);
    let response = client
        .check(tonic_health::pb::HealthCheckRequest {
            service: args.service.clone(),
        })
        .await;
    match response {
        Ok(response) => {
            let status = response.into_inner().status();
            let name = if args.service.is_empty() {
                "server"
            } else {
                &args.service
            };
            println!("{name}: {}", status.as_str_name());
            Ok(if status == ServingStatus::Serving {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Err(status) => Ok(status_exit(&status)),
    }
}

//! The client subcommands of ToolService and health: `tools`, `run` (and `run --detach`),
//! `health`.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::{Map, Value};
use tonic::Status;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use toolstream::json_proto::json_to_struct;
use toolstream::pb;
use toolstream::pb::tool_service_client::ToolServiceClient;
use toolstream::tls::ClientTls;

use super::ask::Input;
use super::output::{error_text, follow, print_line, status_exit};
use super::{ClientArgs, HealthArgs, RunArgs, ToolsArgs};

/// A connection to the server `args` name, over TLS for an `https://` address (or any TLS
/// flag), with the bearer token on every call when one is given.
pub(super) async fn connect(args: &ClientArgs) -> anyhow::Result<Connection> {
    let channel = channel(args).await?;
    let authorization = match &args.token {
        Some(token) => Some(
            MetadataValue::try_from(format!("Bearer {token}"))
                .context("--token (TOOLSTREAM_TOKEN) holds characters a header cannot carry")?,
        ),
        None => None,
    };
    Ok(InterceptedService::new(channel, Bearer(authorization)))
}

/// A channel to the server `args` name, over TLS for an `https://` address (or any TLS flag).
pub(super) async fn channel(args: &ClientArgs) -> anyhow::Result<Channel> {
    let tls = ClientTls {
        ca: args.tls_ca.clone(),
        cert: args.tls_cert.clone(),
        key: args.tls_key.clone(),
    };
    let addr = toolstream::tls::with_scheme(&args.addr, &tls);
    let channel = toolstream::tls::endpoint(&addr, &tls)
        .map_err(anyhow::Error::msg)?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|error| {
            anyhow::anyhow!(
                "cannot connect to {addr} ({}); is `toolstream serve` running there?",
                error_text(&error)
            )
        })?;
    Ok(channel)
}

/// What the client subcommands call through.
pub(super) type Connection = InterceptedService<Channel, Bearer>;

/// RespondToRun on `connection`, for a command that asks a run's questions at the terminal.
pub(super) fn answerer(connection: &Connection) -> super::ask::Answerer {
    let client = toolstream::pb::run_service_client::RunServiceClient::new(connection.clone());
    Box::new(move |request| {
        let mut client = client.clone();
        Box::pin(async move {
            client
                .respond_to_run(request)
                .await
                .map(tonic::Response::into_inner)
        })
    })
}

/// Puts `authorization: Bearer <token>` on every call.
#[derive(Clone)]
pub(super) struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub(super) async fn tools(args: ToolsArgs) -> anyhow::Result<ExitCode> {
    let mut client = ToolServiceClient::new(connect(&args.client).await?);
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
            let schema = tool.input_schema.map_or(Value::Null, struct_json);
            for line in argument_lines(&schema) {
                println!("    {line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A tool's arguments as `tools` lists them, one line each, required ones first: name, type (and
/// `required`), description, from the tool's input JSON Schema.
fn argument_lines(schema: &Value) -> Vec<String> {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut arguments: Vec<(&String, String, &str)> = properties
        .iter()
        .map(|(name, property)| {
            let mut kind = type_name(property, schema);
            if required.contains(&name.as_str()) {
                kind.push_str(", required");
            }
            let description = property
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("");
            (name, kind, description)
        })
        .collect();
    arguments.sort_by_key(|(name, _, _)| !required.contains(&name.as_str()));
    let name_width = arguments.iter().map(|a| a.0.len()).max().unwrap_or(0);
    let kind_width = arguments.iter().map(|a| a.1.len()).max().unwrap_or(0);
    arguments
        .into_iter()
        .map(|(name, kind, description)| {
            format!("{name:name_width$}  {kind:kind_width$}  {description}")
                .trim_end()
                .to_owned()
        })
        .collect()
}

/// The type a JSON Schema describes, in a few words: `integer`, `array of string`,
/// `"sha256" | "sha512"`; a `$ref` into `root`'s `$defs` is followed.
fn type_name(schema: &Value, root: &Value) -> String {
    if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
        let resolved = target
            .strip_prefix("#/$defs/")
            .and_then(|name| root.get("$defs")?.get(name));
        return match resolved {
            Some(resolved) => type_name(resolved, root),
            None => target.rsplit('/').next().unwrap_or(target).to_owned(),
        };
    }
    let constants: Vec<String> = match (schema.get("enum"), schema.get("oneOf")) {
        (Some(Value::Array(values)), _) => values.iter().map(Value::to_string).collect(),
        (_, Some(Value::Array(choices))) => choices
            .iter()
            .filter_map(|choice| choice.get("const").map(Value::to_string))
            .collect(),
        _ => Vec::new(),
    };
    if !constants.is_empty() {
        return constants.join(" | ");
    }
    match schema.get("type") {
        Some(Value::String(kind)) if kind == "array" => match schema.get("items") {
            Some(items) => format!("array of {}", type_name(items, root)),
            None => "array".to_owned(),
        },
        Some(Value::String(kind)) => kind.clone(),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".to_owned(),
    }
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

/// `--label key=value` flags as a map of labels.
pub(super) fn parse_labels(pairs: &[String]) -> anyhow::Result<HashMap<String, String>> {
    let mut labels = HashMap::with_capacity(pairs.len());
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--label {pair:?} is not KEY=VALUE");
        };
        labels.insert(key.to_owned(), value.to_owned());
    }
    Ok(labels)
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
    let connection = connect(&args.client).await?;
    let mut client = ToolServiceClient::new(connection.clone());
    let on_disconnect = if args.detach {
        pb::OnDisconnect::Continue
    } else {
        pb::OnDisconnect::Unspecified
    };
    let mut request = tonic::Request::new(pb::RunToolRequest {
        tool: args.tool.clone(),
        arguments: Some(json_to_struct(arguments)),
        options: Some(pb::RunOptions {
            min_progress_interval_ms: args.min_interval_ms,
            on_disconnect: on_disconnect as i32,
            heartbeat_interval_ms: args.heartbeat_ms,
            idempotency_key: args.idempotency_key.clone().unwrap_or_default(),
            labels: parse_labels(&args.labels)?,
            input_timeout_ms: 0,
        }),
    });
    if let Some(secs) = args.timeout {
        request.set_timeout(Duration::from_secs_f64(secs.max(0.001)));
    }
    let response = match client.run_tool(request).await {
        Ok(response) => response,
        Err(status) => return Ok(status_exit(&status)),
    };
    if args.detach {
        return detach(response).await;
    }
    let input = Input::new(answerer(&connection), args.no_input);
    follow(response.into_inner(), &args.tool, input).await
}

/// `run --detach`: the run was started to go on without its caller; print its id and leave.
/// The id is in the `x-run-id` metadata; a server that did not send it names the run in the
/// `started` event.
async fn detach(
    response: tonic::Response<tonic::Streaming<pb::RunEvent>>,
) -> anyhow::Result<ExitCode> {
    let from_metadata = response
        .metadata()
        .get("x-run-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let run_id = match from_metadata {
        Some(run_id) => run_id,
        None => match response.into_inner().next().await {
            Some(Ok(event)) => event.run_id,
            Some(Err(status)) => return Ok(status_exit(&status)),
            None => bail!("the server ended the stream before naming the run"),
        },
    };
    print_line(run_id)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn health(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let mut client = HealthClient::new(connect(&args.client).await?);
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

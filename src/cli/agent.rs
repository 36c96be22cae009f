//! `toolstream agent "prompt"`: the model's text as it streams, and the tree of bars of the run,
//! its tool calls and their sub-tasks.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use toolstream::json_proto::value_to_json;
use toolstream::pb;
use toolstream::pb::run_event::Event;
use toolstream::pb::tool_call_finished::Outcome;
use toolstream::pb::tool_service_client::ToolServiceClient;

use super::AgentArgs;
use super::client::connect;
use super::output::{event_json, status_exit};
use super::tree::ProgressTree;

pub(super) async fn agent(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let mut client = ToolServiceClient::new(connect(&args.client).await?);
    let mut request = tonic::Request::new(pb::RunAgentRequest {
        prompt: args.prompt,
        tools: args.tools,
        model: args.model.unwrap_or_default(),
        max_steps: args.max_steps.unwrap_or(0),
        system_prompt: args.system.unwrap_or_default(),
        options: None,
    });
    if let Some(secs) = args.timeout {
        request.set_timeout(Duration::from_secs_f64(secs.max(0.001)));
    }
    let mut events = match client.run_agent(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return Ok(status_exit(&status)),
    };
    let mut view = std::io::stdout().is_terminal().then(AgentView::new);
    while let Some(item) = events.next().await {
        let event = match item {
            Ok(event) => event,
            Err(status) => return Ok(status_exit(&status)),
        };
        match view.as_mut() {
            None => println!("{}", event_json(&event)),
            Some(view) => view.show(event),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The terminal view: streamed text above, the tree of bars below it (the run, each tool call,
/// each call's sub-tasks).
struct AgentView {
    tree: ProgressTree,
}

impl AgentView {
    fn new() -> Self {
        AgentView {
            tree: ProgressTree::new("agent"),
        }
    }

    fn show(&mut self, event: pb::RunEvent) {
        match event.event {
            Some(Event::Message(message)) => {
                // Text goes above the bars; `suspend` keeps them from tearing it.
                self.tree.suspend(|| {
                    print!("{}", message.text);
                    let _ = std::io::stdout().flush();
                });
            }
            Some(Event::ToolCallStarted(call)) => {
                self.tree
                    .call_started(&call.call_id, &call.tool, &call.parent_call_id);
            }
            Some(Event::Progress(progress)) => self.tree.show(&progress),
            Some(Event::ToolCallFinished(call)) => {
                let error = match &call.outcome {
                    Some(Outcome::Error(error)) => Some(error.as_str()),
                    _ => None,
                };
                self.tree.call_finished(&call.call_id, error);
            }
            Some(Event::Result(result)) => {
                self.tree.finish();
                let answer = result.value.map_or(Value::Null, value_to_json);
                self.tree.suspend(|| {
                    // The text already streamed; end its line. A non-string result is printed.
                    match answer {
                        Value::String(_) => println!(),
                        other => println!("\n{other}"),
                    }
                });
            }
            Some(Event::Gap(gap)) => self.tree.note(&format!(
                "note: events {} to {} are no longer held by the server ({})",
                gap.from_sequence, gap.to_sequence, gap.reason
            )),
            Some(Event::Started(_) | Event::Heartbeat(_)) | None => {}
        }
    }
}

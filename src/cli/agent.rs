//! `toolstream agent "prompt"`: the model's text as it streams, and a bar per tool call.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::Value;
use toolstream::json_proto::value_to_json;
use toolstream::pb;
use toolstream::pb::run_event::Event;
use toolstream::pb::tool_call_finished::Outcome;
use toolstream::pb::tool_service_client::ToolServiceClient;

use super::AgentArgs;
use super::client::connect;
use super::output::{event_json, status_exit};

pub(super) async fn agent(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let mut client = ToolServiceClient::new(connect(&args.client.addr).await?);
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

/// The terminal view: streamed text above, one bar per tool call below it.
struct AgentView {
    bars: MultiProgress,
    calls: HashMap<String, ProgressBar>,
    style: ProgressStyle,
}

impl AgentView {
    fn new() -> Self {
        let style = ProgressStyle::with_template(
            "  {prefix:.bold} [{bar:30.cyan/blue}] {percent:>3}% {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        AgentView {
            bars: MultiProgress::new(),
            calls: HashMap::new(),
            style,
        }
    }

    fn show(&mut self, event: pb::RunEvent) {
        match event.event {
            Some(Event::Message(message)) => {
                // Text goes above the bars; `suspend` keeps them from tearing it.
                self.bars.suspend(|| {
                    print!("{}", message.text);
                    let _ = std::io::stdout().flush();
                });
            }
            Some(Event::ToolCallStarted(call)) => {
                let bar = self.bars.add(ProgressBar::new(1000));
                bar.set_style(self.style.clone());
                bar.set_prefix(format!("{} ({})", call.tool, call.call_id));
                self.calls.insert(call.call_id, bar);
            }
            Some(Event::Progress(progress)) => {
                if let Some(bar) = self.calls.get(&progress.call_id) {
                    if let Some(fraction) = progress.progress {
                        bar.set_position((fraction.clamp(0.0, 1.0) * 1000.0).round() as u64);
                    }
                    if let Some(status) = progress.status {
                        bar.set_message(status);
                    }
                }
            }
            Some(Event::ToolCallFinished(call)) => {
                if let Some(bar) = self.calls.remove(&call.call_id) {
                    match call.outcome {
                        Some(Outcome::Error(error)) => {
                            bar.abandon_with_message(format!("failed: {error}"))
                        }
                        _ => {
                            bar.set_position(1000);
                            bar.finish_with_message("done");
                        }
                    }
                }
            }
            Some(Event::Result(result)) => {
                let answer = result.value.map_or(Value::Null, value_to_json);
                self.bars.suspend(|| {
                    // The text already streamed; end its line. A non-string result is printed.
                    match answer {
                        Value::String(_) => println!(),
                        other => println!("\n{other}"),
                    }
                });
            }
            Some(Event::Started(_) | Event::Gap(_) | Event::Heartbeat(_)) | None => {}
        }
    }
}

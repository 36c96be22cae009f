//! `toolstream agent "prompt"`: the model's text as it streams, and the tree of bars of the run,
//! its tool calls and their sub-tasks.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;
use toolstream::json_proto::value_to_json;
use toolstream::pb;
use toolstream::pb::run_event::Event;
use toolstream::pb::tool_call_finished::Outcome;
use toolstream::pb::tool_service_client::ToolServiceClient;

use super::AgentArgs;
use super::ask::{Input, RunEvents};
use super::client::connect;
use super::output::{event_json, status_exit};
use super::tree::ProgressTree;

pub(super) async fn agent(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let connection = connect(&args.client).await?;
    let mut client = ToolServiceClient::new(connection.clone());
    let mut input = Input::new(super::client::answerer(&connection), args.no_input);
    let mut request = tonic::Request::new(pb::RunAgentRequest {
        prompt: args.prompt,
        tools: args.tools,
        model: args.model.unwrap_or_default(),
        max_steps: args.max_steps.unwrap_or(0),
        system_prompt: args.system.unwrap_or_default(),
        options: Some(pb::RunOptions {
            idempotency_key: args.idempotency_key.unwrap_or_default(),
            labels: super::client::parse_labels(&args.labels)?,
            ..pb::RunOptions::default()
        }),
        approval_required: Vec::new(),
    });
    if let Some(secs) = args.timeout {
        request.set_timeout(Duration::from_secs_f64(secs.max(0.001)));
    }
    let mut events = match client.run_agent(request).await {
        Ok(response) => RunEvents::new(response.into_inner()),
        Err(status) => return Ok(status_exit(&status)),
    };
    let mut view = std::io::stdout().is_terminal().then(AgentView::new);
    while let Some(item) = events.next().await {
        let event = match item {
            Ok(event) => event,
            Err(status) => {
                if let Some(view) = &mut view {
                    view.abandon();
                }
                return Ok(status_exit(&status));
            }
        };
        let asked = match &event.event {
            Some(Event::InputRequested(request)) => Some(request.clone()),
            _ => None,
        };
        let Some(view) = view.as_mut() else {
            println!("{}", event_json(&event));
            if let Some(request) = asked
                && let Some(code) = input
                    .requested(&event.run_id, &request, None, &mut events)
                    .await
            {
                return Ok(code);
            }
            continue;
        };
        let Some(request) = asked else {
            view.show(event);
            continue;
        };
        // What the model wrote goes above the question.
        view.end_line();
        if let Some(code) = input
            .requested(&event.run_id, &request, Some(&view.tree), &mut events)
            .await
        {
            view.abandon();
            return Ok(code);
        }
    }
    if let Some(view) = view.as_mut().filter(|view| !view.answered) {
        view.abandon();
    }
    Ok(ExitCode::SUCCESS)
}

/// The terminal view: the model's text above, as whole lines, and the tree of bars below it (the
/// run, each tool call, each call's sub-tasks).
///
/// Text streams in pieces (a word or less); a piece without its line's end is held until the
/// line is whole, because the bars are redrawn under the cursor after each print: a partial line
/// would be followed by a copy of the bars. What is held is printed when the model's turn ends
/// (its tool calls start, or the answer is complete) or the run ends.
struct AgentView {
    tree: ProgressTree,
    /// The text of the line being written, not yet printed.
    line: String,
    /// The result came.
    answered: bool,
}

impl AgentView {
    fn new() -> Self {
        AgentView {
            tree: ProgressTree::new("agent"),
            line: String::new(),
            answered: false,
        }
    }

    fn show(&mut self, event: pb::RunEvent) {
        match event.event {
            Some(Event::Message(message)) => self.text(&message.text),
            Some(Event::ToolCallStarted(call)) => {
                // The model's turn is over: what it wrote goes above the calls.
                self.end_line();
                self.tree
                    .call_started(&call.call_id, &call.tool, &call.parent_call_id);
            }
            Some(Event::Progress(progress)) => self.tree.show(&progress),
            Some(Event::PartialResult(partial)) => {
                // A tool's output as it is made, under its call's line; the model's text held
                // for its line's end stays held.
                self.tree.note(&super::output::partial_line(&partial));
            }
            Some(Event::ToolCallFinished(call)) => {
                let error = match &call.outcome {
                    Some(Outcome::Error(error)) => Some(error.as_str()),
                    _ => None,
                };
                self.tree.call_finished(&call.call_id, error);
            }
            Some(Event::Result(result)) => {
                self.answered = true;
                self.end_line();
                self.tree.finish();
                // The answer already streamed as text; a non-string result is printed.
                match result.value.map_or(Value::Null, value_to_json) {
                    Value::String(_) => {}
                    other => println!("{other}"),
                }
            }
            Some(Event::Gap(gap)) => {
                self.end_line();
                self.tree.note(&format!(
                    "note: events {} to {} are no longer held by the server ({})",
                    gap.from_sequence, gap.to_sequence, gap.reason
                ));
            }
            // Input requests are asked by the caller, which holds the connection to answer on.
            Some(
                Event::Started(_)
                | Event::Heartbeat(_)
                | Event::InputRequested(_)
                | Event::InputResolved(_),
            )
            | None => {}
        }
    }

    /// Takes a piece of the model's text: prints the lines it completes above the bars.
    fn text(&mut self, piece: &str) {
        self.line.push_str(piece);
        let Some(end) = self.line.rfind('\n') else {
            return;
        };
        let rest = self.line.split_off(end + 1);
        let whole = std::mem::replace(&mut self.line, rest);
        self.print(&whole);
    }

    /// Prints the line being written, if any, as a line of its own.
    fn end_line(&mut self) {
        if self.line.trim().is_empty() {
            self.line.clear();
            return;
        }
        let mut line = std::mem::take(&mut self.line);
        line.push('\n');
        self.print(&line);
    }

    /// Prints whole lines (`text` ends with a newline) above the bars.
    fn print(&self, text: &str) {
        self.tree.suspend(|| {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
        });
    }

    /// The stream ended without a result: the text held is printed, the bars stay as they are.
    fn abandon(&mut self) {
        self.end_line();
        self.tree.abandon();
    }
}

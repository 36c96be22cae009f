//! A run that asks, on the command line: `run`, `watch` and `agent` prompt for the answer inline
//! when both stdin and stdout are a terminal (the bars are cleared while asking), and send it with
//! RespondToRun on the command's own connection; `--no-input` ends the command instead; anywhere
//! else the request is shown (a JSON line, or a note above the bars) and left to
//! `toolstream respond`.
//!
//! What is asked follows the request: yes/no for an approval or a boolean schema, a number for
//! `number`/`integer`, a choice for an `enum`, text for a string, JSON for anything else. Ctrl-D
//! declines; so does an empty answer to anything but text.
//!
//! While a question waits, the run's stream is still read (its events held for the command to
//! show after): a request resolved elsewhere meanwhile (`toolstream respond`, the page, expiry,
//! the run's end) stops the question, saying how it was resolved. The terminal is read on a
//! thread of its own ([`Keyboard`]), so giving up a question leaves no read blocking the command.

use std::collections::VecDeque;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use futures::StreamExt;
use serde_json::Value;
use toolstream::json_proto::{json_to_value, struct_to_json, value_to_json};
use toolstream::pb;
use toolstream::pb::run_event::Event;

use super::tree::ProgressTree;
use futures::future::BoxFuture;

/// What the command does when its run asks.
pub(super) enum Input {
    /// Ask the person at the terminal (read through the keyboard, once it is needed); answer
    /// through this client.
    Prompt(Answerer, Option<Keyboard>),
    /// `--no-input`: end the command with an error naming the request.
    Refuse,
    /// Show the request and leave the answer to `toolstream respond`.
    Leave,
}

/// Sends an answer (RespondToRun) on the command's own connection; made by the client
/// (`super::client::answerer`), so that asking needs nothing of how the connection is made.
pub(super) type Answerer = Box<
    dyn Fn(pb::RespondToRunRequest) -> BoxFuture<'static, Result<pb::Run, tonic::Status>>
        + Send
        + Sync,
>;

impl Input {
    /// Prompting when stdin and stdout are both a terminal, unless `no_input`.
    pub(super) fn new(answer: Answerer, no_input: bool) -> Self {
        if no_input {
            Input::Refuse
        } else if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
            Input::Prompt(answer, None)
        } else {
            Input::Leave
        }
    }

    /// The run `run_id` asks `request`; `view` is the terminal's bars (none when events are
    /// printed as JSON lines, which the caller has done); `events` the run's stream, read on
    /// while the question waits. Returns the exit code when the command must end here
    /// (`--no-input`), nothing when it goes on following the run.
    pub(super) async fn requested(
        &mut self,
        run_id: &str,
        request: &pb::InputRequested,
        view: Option<&ProgressTree>,
        events: &mut RunEvents,
    ) -> Option<ExitCode> {
        let id = &request.request_id;
        match (self, view) {
            (Input::Refuse, view) => {
                let message = format!(
                    "error: run {run_id} asks for input ({id}: {:?}) and --no-input is set; \
                     answer it from elsewhere with `toolstream respond {run_id} {id} VALUE` (a run \
                     started with `run --detach` waits for that), or leave out --no-input to be \
                     asked here",
                    request.prompt
                );
                match view {
                    Some(view) => view.suspend(|| eprintln!("{message}")),
                    None => eprintln!("{message}"),
                }
                Some(ExitCode::FAILURE)
            }
            (Input::Prompt(client, keyboard), Some(view)) => {
                let keyboard = keyboard.get_or_insert_with(Keyboard::start);
                let asking = Asking {
                    run_id,
                    request,
                    view,
                };
                asking.prompt(client, keyboard, events).await;
                None
            }
            (_, Some(view)) => {
                view.note(&format!(
                    "the run asks ({id}): {}; answer with `toolstream respond {run_id} {id} VALUE`",
                    request.prompt
                ));
                None
            }
            (_, None) => None,
        }
    }
}

/// A run's stream, with the events read ahead while a question waited, given back first.
pub(super) struct RunEvents {
    stream: tonic::Streaming<pb::RunEvent>,
    held: VecDeque<Result<pb::RunEvent, tonic::Status>>,
    ended: bool,
}

impl RunEvents {
    pub(super) fn new(stream: tonic::Streaming<pb::RunEvent>) -> Self {
        RunEvents {
            stream,
            held: VecDeque::new(),
            ended: false,
        }
    }

    /// The next event (or the status the stream ended with); `None` at its end.
    pub(super) async fn next(&mut self) -> Option<Result<pb::RunEvent, tonic::Status>> {
        if let Some(item) = self.held.pop_front() {
            return Some(item);
        }
        self.read().await
    }

    async fn read(&mut self) -> Option<Result<pb::RunEvent, tonic::Status>> {
        if self.ended {
            return None;
        }
        let item = self.stream.next().await;
        // A stream that ended with a status ends there too.
        self.ended = !matches!(item, Some(Ok(_)));
        item
    }

    /// Reads one more item and holds it; returns what it says about `request_id`: still open,
    /// resolved (how), or the stream ended. Safe to drop while waiting: nothing is lost.
    async fn read_ahead(&mut self, request_id: &str) -> Waited {
        let Some(item) = self.read().await else {
            return Waited::RunEnded;
        };
        let waited = match &item {
            Ok(event) => resolution(event, request_id).map_or(Waited::Open, Waited::Resolved),
            Err(_) => Waited::RunEnded,
        };
        self.held.push_back(item);
        waited
    }

    /// How `request_id` was resolved, when one of the held events says so.
    fn held_resolution(&self, request_id: &str) -> Option<pb::InputResolved> {
        self.held
            .iter()
            .filter_map(|item| item.as_ref().ok())
            .find_map(|event| resolution(event, request_id))
    }
}

fn resolution(event: &pb::RunEvent, request_id: &str) -> Option<pb::InputResolved> {
    match &event.event {
        Some(Event::InputResolved(resolved)) if resolved.request_id == request_id => {
            Some(resolved.clone())
        }
        _ => None,
    }
}

/// What came while a question waited.
enum Waited {
    /// A line typed (`None`: Ctrl-D), or the terminal could not be read.
    Reply(std::io::Result<Option<String>>),
    /// An event that does not resolve the request.
    Open,
    /// The request was resolved elsewhere.
    Resolved(pb::InputResolved),
    /// The run's stream ended.
    RunEnded,
}

/// The terminal's stdin, read one line at a time on a thread of its own when a question asks
/// for one: a question given up leaves its read there, and the next question takes that line.
pub(super) struct Keyboard {
    wants: std::sync::mpsc::Sender<()>,
    lines: tokio::sync::mpsc::UnboundedReceiver<std::io::Result<Option<String>>>,
    /// A line was asked for and has not come yet.
    reading: bool,
}

impl Keyboard {
    fn start() -> Self {
        let (wants, wanted) = std::sync::mpsc::channel::<()>();
        let (sender, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for () in wanted {
                if sender.send(read_line()).is_err() {
                    return;
                }
            }
        });
        Keyboard {
            wants,
            lines,
            reading: false,
        }
    }

    /// The next line typed. Safe to drop while waiting: the line comes to the next call.
    async fn line(&mut self) -> std::io::Result<Option<String>> {
        if !self.reading {
            self.reading = self.wants.send(()).is_ok();
        }
        let line = self.lines.recv().await;
        self.reading = false;
        line.unwrap_or_else(|| Err(std::io::Error::other("the terminal reader stopped")))
    }
}

/// One line of stdin without its end: `None` at its end (Ctrl-D).
fn read_line() -> std::io::Result<Option<String>> {
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line)? == 0 {
        // Ctrl-D leaves the cursor after the question.
        eprintln!();
        return Ok(None);
    }
    let end = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(end);
    Ok(Some(line))
}

/// One request being asked at the terminal.
struct Asking<'a> {
    run_id: &'a str,
    request: &'a pb::InputRequested,
    view: &'a ProgressTree,
}

impl Asking<'_> {
    /// Asks until the server takes an answer (or a decline), or the request is resolved
    /// elsewhere: a reply that does not fit the form, or that the server refuses as
    /// INVALID_ARGUMENT, is asked again with the reason above it.
    async fn prompt(
        &self,
        answer_with: &Answerer,
        keyboard: &mut Keyboard,
        events: &mut RunEvents,
    ) {
        let (run_id, request, view) = (self.run_id, self.request, self.view);
        let form = Form::of(request);
        let mut problem: Option<String> = None;
        loop {
            let reply = match self.wait(&form, problem.take(), keyboard, events) {
                Waited::Reply(reply) => reply,
                // Resolved elsewhere (or the run ended): said after the question, not asked.
                _ => return,
            };
            let value = match reply {
                Ok(Some(text)) => match form.parse(&text) {
                    Ok(value) => value,
                    Err(reason) => {
                        problem = Some(reason);
                        continue;
                    }
                },
                Ok(None) => None,
                Err(error) => {
                    view.note(&format!(
                        "note: cannot read the terminal ({error}); answer with `toolstream \
                         respond {run_id} {} VALUE`",
                        request.request_id
                    ));
                    return;
                }
            };
            let answer = pb::RespondToRunRequest {
                run_id: run_id.to_owned(),
                request_id: request.request_id.clone(),
                decline: value.is_none(),
                value: value.map(json_to_value),
            };
            match answer_with(answer).await {
                Ok(_) => return,
                Err(status) if status.code() == tonic::Code::InvalidArgument => {
                    problem = Some(status.message().to_owned());
                }
                Err(status) => {
                    // Answered elsewhere first, expired, or the run ended: the stream tells the
                    // rest.
                    view.note(&format!(
                        "note: the answer was not taken: {}",
                        status.message()
                    ));
                    return;
                }
            }
        }
    }

    /// Writes the question (after `problem`, the reason the last reply was refused) with the
    /// bars out of the way, and waits for a line typed or the request's resolution elsewhere
    /// (then said after the question), whichever comes first.
    fn wait(
        &self,
        form: &Form,
        problem: Option<String>,
        keyboard: &mut Keyboard,
        events: &mut RunEvents,
    ) -> Waited {
        let id = &self.request.request_id;
        // Waiting blocks this thread (the bars stay out of the way meanwhile); the runtime has
        // worker threads to spare.
        tokio::task::block_in_place(|| {
            self.view.suspend(|| {
                let waited = match events.held_resolution(id) {
                    Some(resolved) => Waited::Resolved(resolved),
                    None => match write_question(self.request, form, problem) {
                        Err(error) => Waited::Reply(Err(error)),
                        Ok(()) => tokio::runtime::Handle::current().block_on(async {
                            loop {
                                tokio::select! {
                                    line = keyboard.line() => break Waited::Reply(line),
                                    waited = events.read_ahead(id) => match waited {
                                        Waited::Open => continue,
                                        waited => break waited,
                                    },
                                }
                            }
                        }),
                    },
                };
                let said = match &waited {
                    Waited::Resolved(resolved) => Some(resolved_elsewhere(resolved)),
                    Waited::RunEnded => Some("(the run ended; not asking any more)".to_owned()),
                    Waited::Reply(_) | Waited::Open => None,
                };
                if let Some(said) = said {
                    eprintln!("{said}");
                }
                waited
            })
        })
    }
}

/// How a request resolved elsewhere is said after its question.
fn resolved_elsewhere(resolved: &pb::InputResolved) -> String {
    match resolved.outcome() {
        pb::InputOutcome::Answered => {
            let value = resolved.value.clone().map_or(Value::Null, value_to_json);
            format!("(answered elsewhere: {value})")
        }
        pb::InputOutcome::Declined => "(declined elsewhere)".to_owned(),
        pb::InputOutcome::Expired => "(expired: nobody answered in time)".to_owned(),
        pb::InputOutcome::Cancelled | pb::InputOutcome::Unspecified => {
            "(cancelled: the run is ending)".to_owned()
        }
    }
}

/// Writes the question (after `problem`, the reason the last reply was refused) to stderr, where
/// the bars are.
fn write_question(
    request: &pb::InputRequested,
    form: &Form,
    problem: Option<String>,
) -> std::io::Result<()> {
    // The question is written at once: a reply typed early is echoed after it, not inside it.
    let mut question = String::new();
    if let Some(problem) = problem {
        question.push_str(&format!("  {problem}\n"));
    }
    if let Some(data) = request.data.clone().filter(|data| !data.fields.is_empty()) {
        question.push_str(&format!("  {}\n", Value::Object(struct_to_json(data))));
    }
    if let Form::Choice(choices) = form {
        for (index, choice) in choices.iter().enumerate() {
            question.push_str(&format!("  {}) {}\n", index + 1, choice_text(choice)));
        }
    }
    question.push_str(&format!("? {} {} ", request.prompt, form.hint()));
    let mut stderr = std::io::stderr().lock();
    stderr.write_all(question.as_bytes())?;
    stderr.flush()
}

/// The kind of answer a request wants, from its kind and schema.
#[derive(Debug, PartialEq)]
enum Form {
    YesNo,
    Integer,
    Number,
    /// One of the schema's `enum` values.
    Choice(Vec<Value>),
    Text,
    Json,
}

impl Form {
    fn of(request: &pb::InputRequested) -> Self {
        if request.kind() == pb::InputKind::Approval {
            return Form::YesNo;
        }
        let schema = request
            .schema
            .clone()
            .map(|schema| Value::Object(struct_to_json(schema)))
            .unwrap_or(Value::Null);
        if let Some(Value::Array(choices)) = schema.get("enum") {
            return Form::Choice(choices.clone());
        }
        match schema.get("type").and_then(Value::as_str) {
            Some("boolean") => Form::YesNo,
            Some("integer") => Form::Integer,
            Some("number") => Form::Number,
            Some("string") => Form::Text,
            _ => Form::Json,
        }
    }

    /// What follows the question, saying what to type.
    fn hint(&self) -> String {
        match self {
            Form::YesNo => "[y/n, empty declines]".to_owned(),
            Form::Integer => "(a whole number, empty declines)".to_owned(),
            Form::Number => "(a number, empty declines)".to_owned(),
            Form::Choice(choices) => format!("[1-{}, empty declines]", choices.len()),
            Form::Text => "(Ctrl-D declines)".to_owned(),
            Form::Json => "(JSON, empty declines)".to_owned(),
        }
    }

    /// The answer a reply gives: `Ok(None)` declines, `Err` says why the reply does not fit.
    fn parse(&self, reply: &str) -> Result<Option<Value>, String> {
        let trimmed = reply.trim();
        if trimmed.is_empty() && *self != Form::Text {
            return Ok(None);
        }
        match self {
            Form::YesNo => match trimmed.to_ascii_lowercase().as_str() {
                "y" | "yes" => Ok(Some(Value::Bool(true))),
                "n" | "no" => Ok(Some(Value::Bool(false))),
                _ => Err(format!("{trimmed:?} is not y or n")),
            },
            Form::Integer => trimmed
                .parse::<i64>()
                .map(|n| Some(Value::from(n)))
                .map_err(|_| format!("{trimmed:?} is not a whole number")),
            Form::Number => trimmed
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(|n| Some(Value::Number(n)))
                .ok_or_else(|| format!("{trimmed:?} is not a number")),
            Form::Choice(choices) => {
                let by_index = trimmed
                    .parse::<usize>()
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|index| choices.get(index));
                by_index
                    .or_else(|| choices.iter().find(|choice| choice_text(choice) == trimmed))
                    .map(|choice| Some(choice.clone()))
                    .ok_or_else(|| format!("{trimmed:?} is not one of 1 to {}", choices.len()))
            }
            Form::Text => Ok(Some(Value::String(reply.to_owned()))),
            Form::Json => serde_json::from_str(trimmed)
                .map(Some)
                .map_err(|error| format!("not JSON: {error}")),
        }
    }
}

/// A choice as it is listed and may be typed: a string as itself, anything else as JSON.
fn choice_text(choice: &Value) -> String {
    match choice {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use toolstream::json_proto::json_to_struct;

    fn asking(kind: pb::InputKind, schema: Value) -> pb::InputRequested {
        let schema = match schema {
            Value::Object(object) => Some(json_to_struct(object)),
            _ => None,
        };
        pb::InputRequested {
            kind: kind as i32,
            schema,
            ..pb::InputRequested::default()
        }
    }

    #[test]
    fn the_form_follows_the_kind_and_the_schema() {
        let input = pb::InputKind::Input;
        let cases = [
            (
                pb::InputKind::Approval,
                json!({"type": "boolean"}),
                Form::YesNo,
            ),
            (input, json!({"type": "boolean"}), Form::YesNo),
            (input, json!({"type": "integer"}), Form::Integer),
            (input, json!({"type": "number"}), Form::Number),
            (input, json!({"type": "string"}), Form::Text),
            (
                input,
                json!({"type": "string", "enum": ["a", "b"]}),
                Form::Choice(vec![json!("a"), json!("b")]),
            ),
            (input, json!({"type": "object"}), Form::Json),
            (input, Value::Null, Form::Json),
        ];
        for (kind, schema, form) in cases {
            assert_eq!(Form::of(&asking(kind, schema.clone())), form, "{schema}");
        }
    }

    #[test]
    fn replies_become_answers_declines_or_reasons() {
        assert_eq!(Form::YesNo.parse("Y"), Ok(Some(json!(true))));
        assert_eq!(Form::YesNo.parse("no"), Ok(Some(json!(false))));
        assert!(Form::YesNo.parse("maybe").is_err());
        assert_eq!(Form::YesNo.parse(""), Ok(None));
        assert_eq!(Form::Integer.parse(" 3 "), Ok(Some(json!(3))));
        assert!(Form::Integer.parse("3.5").is_err());
        assert_eq!(Form::Number.parse("3.5"), Ok(Some(json!(3.5))));
        assert!(Form::Number.parse("NaN").is_err());
        let choice = Form::Choice(vec![json!("fast"), json!(2)]);
        assert_eq!(choice.parse("1"), Ok(Some(json!("fast"))));
        assert_eq!(choice.parse("fast"), Ok(Some(json!("fast"))));
        assert_eq!(choice.parse("2"), Ok(Some(json!(2))));
        assert!(choice.parse("3").is_err());
        assert_eq!(Form::Text.parse(""), Ok(Some(json!(""))));
        assert_eq!(Form::Text.parse(" hi "), Ok(Some(json!(" hi "))));
        assert_eq!(Form::Json.parse(r#"{"a": 1}"#), Ok(Some(json!({"a": 1}))));
        assert!(Form::Json.parse("{").is_err());
    }
}

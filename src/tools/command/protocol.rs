//! The JSON-lines protocol a command tool speaks on stdout: one JSON object per line.
//!
//! - `{"result": ...}`: the tool's result (the last line);
//! - `{"error": "..."}`: the tool failed with that message (the last line);
//! - `{"partial": {"value": ..., "key": "hits", "append": true}}`: a piece of the tool's output
//!   before its result (`key` defaults to "", the main output; `append` to false: the value
//!   replaces that output rather than adding its next item); with `"task": "t3"`, a piece of the
//!   output of that sub-task (made by an earlier line, not done yet);
//! - any other object: progress, `{"progress": 0.4, "status": "...", ...extra}`, of the tool or,
//!   with a `task` object, of one of its sub-tasks:
//!   `{"task": {"id": "t3", "parent": "t1", "label": "item 3", "weight": 0.25, "done": true}, ...}`
//!   (only `id` is required; see docs/command-tools.md).
//!
//! - `{"ask": {"id": "a1", "prompt": "...", "schema": {...}}}`: a question for a person (tools
//!   declared with `asks = true`); the server answers with one line on the tool's stdin,
//!   `{"answer": {"id": "a1", "outcome": "answered", "value": ...}}` (see [`answer_line`]).
//!
//! A `result` key makes a line the result, an `error` key the error, a `partial` key a partial
//! result and an `ask` key a question, whatever else it holds; so progress data cannot use those
//! four keys. A `task` that is not an object with a string `id` stays in the data.

use serde_json::{Map, Value};

use crate::tools::{PartialOutput, ProgressUpdate};

/// One line of a tool's output.
#[derive(Debug, PartialEq)]
pub enum Message {
    /// A progress report, of the tool itself or of one of its sub-tasks.
    Progress {
        /// The sub-task it is about; `None`: the tool itself. Boxed: most lines have none.
        task: Option<Box<TaskLine>>,
        /// The report.
        update: ProgressUpdate,
    },
    /// The result; the run succeeds with it when the tool then exits cleanly.
    Result(Value),
    /// The tool's own error message.
    Error(String),
    /// A question for a person; the tool waits for the answer on stdin.
    Ask {
        /// The tool's name for the question, repeated in the answer.
        id: String,
        /// What to ask.
        prompt: String,
        /// JSON Schema of the answer; `None`: any value.
        schema: Option<Value>,
    },
    /// A piece of the tool's output, before its result.
    Partial(PartialOutput),
    /// A piece of the output of one of the tool's sub-tasks (`partial.task`).
    TaskPartial {
        /// The tool's id for the sub-task, as in its `task` lines.
        task: String,
        output: PartialOutput,
    },
}

/// Parses one line. The error says what is wrong with it, for the message a client sees.
pub fn parse(line: &[u8]) -> Result<Message, String> {
    let value: Value = serde_json::from_slice(line).map_err(|e| format!("not JSON ({e})"))?;
    let Value::Object(mut object) = value else {
        return Err("not a JSON object".to_owned());
    };
    if let Some(result) = object.remove("result") {
        return Ok(Message::Result(result));
    }
    if let Some(error) = object.remove("error") {
        return Ok(Message::Error(match error {
            Value::String(message) => message,
            other => other.to_string(),
        }));
    }
    if let Some(ask) = object.remove("ask") {
        let Value::Object(mut ask) = ask else {
            return Err("ask must be an object with an id and a prompt".to_owned());
        };
        let id = match ask.remove("id") {
            Some(Value::String(id)) => id,
            None | Some(Value::Null) => String::new(),
            Some(other) => return Err(format!("ask.id must be a string, not {other}")),
        };
        let prompt = match ask.remove("prompt") {
            Some(Value::String(prompt)) => prompt,
            _ => return Err("ask.prompt must be a string".to_owned()),
        };
        let schema = match ask.remove("schema") {
            None | Some(Value::Null) => None,
            Some(schema @ (Value::Object(_) | Value::Bool(_))) => Some(schema),
            Some(other) => return Err(format!("ask.schema must be a JSON Schema, not {other}")),
        };
        return Ok(Message::Ask { id, prompt, schema });
    }
    if let Some(partial) = object.remove("partial") {
        return partial_line(partial).map(|(output, task)| match task {
            None => Message::Partial(output),
            Some(task) => Message::TaskPartial { task, output },
        });
    }
    let task = match object.get("task") {
        Some(Value::Object(task)) if matches!(task.get("id"), Some(Value::String(_))) => {
            let Some(Value::Object(task)) = object.remove("task") else {
                unreachable!("matched above")
            };
            Some(Box::new(TaskLine::from_object(task)?))
        }
        _ => None,
    };
    Ok(Message::Progress {
        task,
        update: ProgressUpdate::from_object(object),
    })
}

/// The `partial` object of a line: `value` (absent: null), `key` (a string), `append` (a bool),
/// and the sub-task it is of (`task`, a string; absent: the tool itself).
fn partial_line(partial: Value) -> Result<(PartialOutput, Option<String>), String> {
    let Value::Object(mut partial) = partial else {
        return Err(format!(
            "partial must be an object such as {{\"value\": ...}}, not {partial}"
        ));
    };
    let value = partial.remove("value").unwrap_or(Value::Null);
    let key = take_text(&mut partial, "partial", "key")?.unwrap_or_default();
    let append = take_flag(&mut partial, "partial", "append")?;
    let task = take_text(&mut partial, "partial", "task")?;
    refuse_unknown(&partial, "partial", "value, key, append, task")?;
    Ok((PartialOutput { key, value, append }, task))
}

/// Takes `key` out of the line's object `what` as a string; absent or null is `None`.
fn take_text(
    object: &mut Map<String, Value>,
    what: &str,
    key: &str,
) -> Result<Option<String>, String> {
    match object.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(format!("{what}.{key} must be a string, not {other}")),
    }
}

/// Takes `key` out of the line's object `what` as a bool; absent or null is false.
fn take_flag(object: &mut Map<String, Value>, what: &str, key: &str) -> Result<bool, String> {
    match object.remove(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(flag)) => Ok(flag),
        Some(other) => Err(format!("{what}.{key} must be true or false, not {other}")),
    }
}

/// Refuses a key left in the line's object `what` after the `known` ones were taken.
fn refuse_unknown(object: &Map<String, Value>, what: &str, known: &str) -> Result<(), String> {
    match object.keys().next() {
        Some(unknown) => Err(format!(
            "{what} has an unknown key {unknown:?} (known: {known})"
        )),
        None => Ok(()),
    }
}

/// The `task` of a progress line: which sub-task it is about, and how to make it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskLine {
    /// The tool's name for the sub-task.
    pub id: String,
    /// The sub-task it belongs to; empty: the tool itself. Read when the sub-task is made.
    pub parent: String,
    /// What the client sees; `None`: the id. Read when the sub-task is made.
    pub label: Option<String>,
    /// Its share of its parent; `None`: 1. Read when the sub-task is made.
    pub weight: Option<f64>,
    /// The sub-task is complete.
    pub done: bool,
}

impl TaskLine {
    fn from_object(mut task: Map<String, Value>) -> Result<Self, String> {
        let id = take_text(&mut task, "task", "id")?.unwrap_or_default();
        let parent = take_text(&mut task, "task", "parent")?.unwrap_or_default();
        let label = take_text(&mut task, "task", "label")?;
        let weight = match task.remove("weight") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_f64().is_some_and(|w| w >= 0.0) => n.as_f64(),
            Some(other) => return Err(format!("task.weight must be a number >= 0, not {other}")),
        };
        let done = take_flag(&mut task, "task", "done")?;
        refuse_unknown(&task, "task", "id, parent, label, weight, done")?;
        Ok(TaskLine {
            id,
            parent,
            label,
            weight,
            done,
        })
    }
}

/// The line that answers the tool's question `id` (a newline at its end): `outcome` is
/// `answered` (with `value`), `declined`, `expired`, `cancelled` or `refused` (with `reason`: the
/// question could not be asked).
pub fn answer_line(id: &str, answer: &crate::tools::Answer) -> Vec<u8> {
    let mut body = serde_json::Map::new();
    body.insert("id".to_owned(), Value::String(id.to_owned()));
    body.insert(
        "outcome".to_owned(),
        Value::String(answer.outcome_name().to_owned()),
    );
    match answer {
        crate::tools::Answer::Answered(value) => {
            body.insert("value".to_owned(), value.clone());
        }
        crate::tools::Answer::Refused(reason) => {
            body.insert("reason".to_owned(), Value::String(reason.clone()));
        }
        _ => {}
    }
    let mut line = serde_json::json!({ "answer": body })
        .to_string()
        .into_bytes();
    line.push(b'\n');
    line
}

/// The start of a line, made readable for an error message.
pub fn preview(line: &[u8]) -> String {
    const MAX_CHARS: usize = 200;
    let text = String::from_utf8_lossy(line);
    let mut chars = text.chars();
    let mut shown: String = chars.by_ref().take(MAX_CHARS).collect();
    if chars.next().is_some() {
        shown.push('…');
    }
    format!("{shown:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn progress_lines_keep_their_extra_data() {
        let Ok(Message::Progress { task: None, update }) =
            parse(br#"{"progress":0.5,"status":"half","n":3}"#)
        else {
            panic!("not progress of the tool");
        };
        assert_eq!(update.fraction, Some(0.5));
        assert_eq!(update.status.as_deref(), Some("half"));
        assert_eq!(update.data.get("n"), Some(&json!(3)));
    }

    #[test]
    fn task_objects_name_a_sub_task() {
        let Ok(Message::Progress {
            task: Some(task),
            update,
        }) = parse(
            br#"{"task":{"id":"t3","parent":"t1","label":"item 3","weight":0.25},"progress":0.5,"n":1}"#,
        )
        else {
            panic!("not progress of a sub-task");
        };
        assert_eq!(
            *task,
            TaskLine {
                id: "t3".into(),
                parent: "t1".into(),
                label: Some("item 3".into()),
                weight: Some(0.25),
                done: false,
            }
        );
        assert_eq!(update.fraction, Some(0.5));
        assert_eq!(update.data.get("n"), Some(&json!(1)));
        assert!(!update.data.contains_key("task"));

        let Ok(Message::Progress {
            task: Some(task),
            update,
        }) = parse(br#"{"task":{"id":"t3","done":true}}"#)
        else {
            panic!("not progress of a sub-task");
        };
        assert!(task.done && task.parent.is_empty() && task.label.is_none());
        assert!(update.is_empty());
    }

    #[test]
    fn a_task_that_is_not_a_sub_task_stays_data_and_a_bad_one_is_refused() {
        for line in [&br#"{"task":"download"}"#[..], br#"{"task":{"name":"x"}}"#] {
            let Ok(Message::Progress { task: None, update }) = parse(line) else {
                panic!("not progress of the tool");
            };
            assert!(update.data.contains_key("task"));
        }
        assert!(
            parse(br#"{"task":{"id":"t","weight":-1}}"#)
                .unwrap_err()
                .contains("task.weight")
        );
        assert!(
            parse(br#"{"task":{"id":"t","wieght":1}}"#)
                .unwrap_err()
                .contains("unknown key \"wieght\"")
        );
    }

    #[test]
    fn result_and_error_lines_are_recognised() {
        assert_eq!(
            parse(br#"{"result":{"ok":true}}"#),
            Ok(Message::Result(json!({"ok": true})))
        );
        assert_eq!(
            parse(br#"{"result":null}"#),
            Ok(Message::Result(Value::Null))
        );
        assert_eq!(
            parse(br#"{"error":"disk full"}"#),
            Ok(Message::Error("disk full".into()))
        );
        assert_eq!(
            parse(br#"{"error":{"code":7}}"#),
            Ok(Message::Error(r#"{"code":7}"#.into()))
        );
    }

    #[test]
    fn a_partial_line_may_name_a_sub_task() {
        assert_eq!(
            parse(br#"{"partial":{"value":"00ff","key":"sha256","task":"t3"}}"#),
            Ok(Message::TaskPartial {
                task: "t3".into(),
                output: PartialOutput {
                    key: "sha256".into(),
                    value: json!("00ff"),
                    append: false,
                },
            })
        );
        assert!(
            parse(br#"{"partial":{"value":1,"task":3}}"#)
                .unwrap_err()
                .contains("partial.task")
        );
    }

    #[test]
    fn partial_lines_are_recognised_and_checked() {
        assert_eq!(
            parse(br#"{"partial":{"value":{"file":"a","sha256":"00"},"key":"digests","append":true}}"#),
            Ok(Message::Partial(PartialOutput {
                key: "digests".into(),
                value: json!({"file": "a", "sha256": "00"}),
                append: true,
            }))
        );
        assert_eq!(
            parse(br#"{"partial":{"value":3}}"#),
            Ok(Message::Partial(PartialOutput {
                key: String::new(),
                value: json!(3),
                append: false,
            }))
        );
        assert!(parse(br#"{"partial":5}"#).unwrap_err().contains("object"));
        assert!(
            parse(br#"{"partial":{"value":1,"append":"yes"}}"#)
                .unwrap_err()
                .contains("partial.append")
        );
        assert!(
            parse(br#"{"partial":{"value":1,"kye":"x"}}"#)
                .unwrap_err()
                .contains("unknown key \"kye\"")
        );
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert!(parse(b"hello").unwrap_err().starts_with("not JSON"));
        assert_eq!(parse(b"[1,2]").unwrap_err(), "not a JSON object");
    }

    #[test]
    fn previews_are_short_and_quoted() {
        assert_eq!(preview(b"abc"), "\"abc\"");
        let long = vec![b'x'; 1000];
        assert_eq!(preview(&long).chars().count(), 203);
    }
}

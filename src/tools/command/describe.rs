//! `describe = true`: the tool describes itself, so its `[[tools]]` entry needs no schema.
//!
//! At start-up the command is run once with one more argument, `--describe`, and no input. It
//! prints one JSON object to stdout and exits 0:
//!
//! ```json
//! {"description": "Process files.", "input_schema": {"type": "object", ...}, "output_schema": {...}}
//! ```
//!
//! `input_schema` is required (a JSON Schema of an object); `description` and `output_schema` are
//! optional, and the entry's own `description` or `output_schema` wins over them. Any other key is
//! ignored. A command that cannot start, exits non-zero, prints something else or takes longer than
//! [`DESCRIBE_TIMEOUT`] stops `serve` with a message naming the entry and what went wrong.
//! `toolstream.tool.main` answers `--describe` from the function's type hints and docstring.

use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncReadExt;

use super::CommandTool;
use super::protocol::preview;
use super::stderr::StderrTail;
use crate::tools::process_group::ProcessGroup;

/// How long the command may take to describe itself.
pub const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest description read.
const MAX_DESCRIPTION_BYTES: u64 = 1024 * 1024;

/// What a tool said about itself.
#[derive(Debug, PartialEq)]
pub struct Description {
    /// What the tool does.
    pub description: Option<String>,
    /// JSON Schema of its arguments.
    pub input_schema: Value,
    /// JSON Schema of its result.
    pub output_schema: Option<Value>,
}

/// Runs `tool`'s command with `--describe` and reads its description.
pub async fn describe(tool: &CommandTool) -> Result<Description, String> {
    let shown = format!("`{} --describe`", tool.command.join(" "));
    tokio::time::timeout(DESCRIBE_TIMEOUT, run(tool, &shown))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "describe = true, but {shown} did not answer within {} s",
                DESCRIBE_TIMEOUT.as_secs()
            ))
        })
}

async fn run(tool: &CommandTool, shown: &str) -> Result<Description, String> {
    let mut command = tokio::process::Command::new(tool.program());
    command
        .args(tool.command.iter().skip(1))
        .arg("--describe")
        .envs(&tool.env);
    if let Some(cwd) = &tool.cwd {
        command.current_dir(cwd);
    }
    // Dropped on any early return (timeout included): the group is stopped.
    let spawned = ProcessGroup::spawn(command, tool.kill_grace)
        .map_err(|e| format!("describe = true, but {shown} cannot start: {e}"))?;
    let mut group = spawned.group;
    drop(spawned.stdin);
    let mut stdout = Vec::new();
    let mut tail = StderrTail::default();
    let mut limited = spawned.stdout.take(MAX_DESCRIPTION_BYTES + 1);
    let read = limited.read_to_end(&mut stdout);
    let (read, ()) = tokio::join!(read, tail.collect(spawned.stderr, &tool.spec.name));
    read.map_err(|e| format!("cannot read what {shown} printed: {e}"))?;
    let status = group
        .wait()
        .await
        .map_err(|e| format!("cannot wait for {shown}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "describe = true, but {shown} {}{}",
            super::describe_exit(status),
            tail.as_suffix()
        ));
    }
    if stdout.len() as u64 > MAX_DESCRIPTION_BYTES {
        return Err(format!(
            "{shown} printed more than {MAX_DESCRIPTION_BYTES} bytes"
        ));
    }
    parse(&stdout).map_err(|reason| format!("{shown} {reason}"))
}

/// Reads a description; the error completes "`cmd --describe` ...".
fn parse(output: &[u8]) -> Result<Description, String> {
    let value: Value = serde_json::from_slice(output).map_err(|e| {
        format!(
            "did not print one JSON object like {{\"input_schema\": {{...}}}} ({e}): {}",
            preview(output)
        )
    })?;
    let Value::Object(mut object) = value else {
        return Err(format!(
            "printed JSON that is not an object: {}",
            preview(output)
        ));
    };
    let input_schema = object
        .remove("input_schema")
        .ok_or("printed a description without `input_schema`")?;
    if !input_schema.is_object() || input_schema.get("type").is_some_and(|t| t != "object") {
        return Err(
            "described an `input_schema` that is not the schema of an object (type \"object\")"
                .to_owned(),
        );
    }
    jsonschema::validator_for(&input_schema)
        .map_err(|e| format!("described an `input_schema` that is not valid JSON Schema: {e}"))?;
    let output_schema = match object.remove("output_schema") {
        None | Some(Value::Null) => None,
        Some(schema) => {
            jsonschema::validator_for(&schema).map_err(|e| {
                format!("described an `output_schema` that is not valid JSON Schema: {e}")
            })?;
            Some(schema)
        }
    };
    let description = match object.remove("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text),
        Some(_) => return Err("described a `description` that is not a string".to_owned()),
    };
    Ok(Description {
        description,
        input_schema,
        output_schema,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_description_gives_schemas_and_text() {
        let parsed = parse(
            br#"{"name": "t", "description": "Does t.", "input_schema": {"type": "object",
                "properties": {"n": {"type": "integer"}}}, "output_schema": {"type": "string"}}"#,
        )
        .unwrap();
        assert_eq!(parsed.description.as_deref(), Some("Does t."));
        assert_eq!(
            parsed.input_schema["properties"]["n"],
            json!({"type": "integer"})
        );
        assert_eq!(parsed.output_schema, Some(json!({"type": "string"})));
    }

    #[test]
    fn a_wrong_description_says_what_is_wrong() {
        assert!(
            parse(b"hello")
                .unwrap_err()
                .contains("did not print one JSON object")
        );
        assert!(parse(b"[1]").unwrap_err().contains("not an object"));
        assert!(parse(b"{}").unwrap_err().contains("without `input_schema`"));
        assert!(
            parse(br#"{"input_schema": {"type": "string"}}"#)
                .unwrap_err()
                .contains("schema of an object")
        );
        assert!(
            parse(br#"{"input_schema": {"type": "object", "required": 5}}"#)
                .unwrap_err()
                .contains("not valid JSON Schema")
        );
        assert!(
            parse(br#"{"input_schema": {}, "description": 3}"#)
                .unwrap_err()
                .contains("not a string")
        );
    }
}

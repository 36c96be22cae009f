//! A `[[tools]]` entry of kind "command", checked and turned into a [`CommandTool`].

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::CommandTool;
use crate::tools::{ToolKind, ToolSpec};

/// The entry as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandEntry {
    /// Always "command" here; sources.rs dispatched on it.
    #[allow(dead_code)]
    kind: String,
    name: String,
    command: Vec<String>,
    description: Option<String>,
    input_schema: Option<toml::Table>,
    output_schema: Option<toml::Table>,
    timeout_secs: Option<u64>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    /// Ask the command for its description and schemas at start-up (`describe.rs`).
    #[serde(default)]
    describe: bool,
    /// The command may ask questions (`{"ask": ...}`): its stdin stays open for the answers.
    #[serde(default)]
    asks: bool,
}

/// A checked entry: its tool, and what the command must still say about itself.
pub struct Declared {
    /// The tool, with the entry's schemas (or the defaults).
    pub tool: CommandTool,
    /// `describe = true`: the description and schemas come from the command.
    pub describe: bool,
    /// Whether the entry gave its own description, which wins over the command's.
    pub has_description: bool,
}

/// Checks `entry` and builds its tool. Relative `cwd`s are resolved against `base_dir`.
pub fn command_tool(entry: &toml::Table, base_dir: &Path) -> Result<Declared, String> {
    let entry: CommandEntry = toml::Value::Table(entry.clone())
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_owned())?;
    let Some(program) = entry.command.first() else {
        return Err("`command` is empty; give the program and its arguments, \
                    like [\"python3\", \"tool.py\"]"
            .into());
    };
    if program.is_empty() {
        return Err("`command` starts with an empty program name".into());
    }
    if entry.describe && entry.input_schema.is_some() {
        return Err(
            "give either `input_schema` or `describe = true`, not both: \
                    with `describe` the command says its own schema"
                .into(),
        );
    }
    let input_schema = match entry.input_schema {
        Some(table) => schema("input_schema", table)?,
        None => serde_json::json!({"type": "object"}),
    };
    if input_schema.get("type").is_some_and(|t| t != "object") {
        return Err(
            "`input_schema` must describe an object (type = \"object\"): \
                    arguments are always a JSON object"
                .into(),
        );
    }
    let output_schema = entry
        .output_schema
        .map(|table| schema("output_schema", table))
        .transpose()?;
    let timeout = match entry.timeout_secs {
        Some(0) => return Err("`timeout_secs` must be at least 1".into()),
        Some(secs) => Some(Duration::from_secs(secs)),
        None => None,
    };
    let cwd = entry
        .cwd
        .map(|cwd| {
            let path = base_dir.join(&cwd);
            std::fs::canonicalize(&path)
                .ok()
                .filter(|p| p.is_dir())
                .ok_or_else(|| format!("`cwd` {cwd:?} ({}) is not a directory", path.display()))
        })
        .transpose()?;
    let has_description = entry.description.is_some();
    let description = entry
        .description
        .unwrap_or_else(|| format!("Runs `{}`.", entry.command.join(" ")));
    let tool = CommandTool {
        spec: ToolSpec {
            name: entry.name,
            description,
            input_schema,
            output_schema,
            kind: ToolKind::Command,
        },
        command: entry.command,
        env: entry.env,
        cwd,
        timeout,
        kill_grace: super::DEFAULT_KILL_GRACE,
        max_line_bytes: super::DEFAULT_MAX_LINE_BYTES,
        asks: entry.asks,
    };
    Ok(Declared {
        tool,
        describe: entry.describe,
        has_description,
    })
}

/// A schema table as JSON, refused when it is not a valid JSON Schema.
fn schema(key: &str, table: toml::Table) -> Result<Value, String> {
    let value =
        serde_json::to_value(table).map_err(|e| format!("`{key}` cannot be read as JSON: {e}"))?;
    jsonschema::validator_for(&value)
        .map_err(|e| format!("`{key}` is not a valid JSON Schema: {e}"))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    fn error(text: &str) -> String {
        command_tool(&entry(text), Path::new(".")).err().unwrap()
    }

    #[test]
    fn describe_excludes_a_written_schema() {
        let base = "kind = \"command\"\nname = \"t\"\ncommand = [\"x\"]\ndescribe = true\n";
        assert!(command_tool(&entry(base), Path::new(".")).unwrap().describe);
        assert!(
            error(&format!("{base}input_schema = {{ type = \"object\" }}"))
                .contains("either `input_schema` or `describe = true`")
        );
    }

    #[test]
    fn a_minimal_entry_gets_defaults() {
        let declared = command_tool(
            &entry("kind = \"command\"\nname = \"t\"\ncommand = [\"true\"]"),
            Path::new("."),
        )
        .unwrap();
        assert!(!declared.describe && !declared.has_description);
        let tool = declared.tool;
        assert_eq!(
            tool.spec.input_schema,
            serde_json::json!({"type": "object"})
        );
        assert_eq!(tool.spec.kind, ToolKind::Command);
        assert_eq!(tool.timeout, None);
        assert!(tool.spec.description.contains("true"));
    }

    #[test]
    fn mistakes_are_named() {
        let base = "kind = \"command\"\nname = \"t\"\n";
        assert!(error(base).contains("missing field `command`"));
        assert!(error(&format!("{base}command = []")).contains("`command` is empty"));
        assert!(
            error(&format!("{base}command = [\"x\"]\ncomand = 1"))
                .contains("unknown field `comand`")
        );
        assert!(
            error(&format!(
                "{base}command = [\"x\"]\ninput_schema = {{ type = 5 }}"
            ))
            .contains("not a valid JSON Schema")
        );
        assert!(
            error(&format!(
                "{base}command = [\"x\"]\ninput_schema = {{ type = \"string\" }}"
            ))
            .contains("must describe an object")
        );
        assert!(
            error(&format!("{base}command = [\"x\"]\ntimeout_secs = 0")).contains("at least 1")
        );
        assert!(
            error(&format!("{base}command = [\"x\"]\ncwd = \"no/such/dir\""))
                .contains("no/such/dir")
        );
    }
}

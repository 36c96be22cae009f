//! The tool registry: name → tool, with each tool's schemas and a compiled validator for its
//! arguments. Built once at start-up from the built-in tools and the config file, then shared
//! read-only by every run.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::tools::{Tool, ToolSpec};

/// Why a tool could not be added to the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Two tools have the same name.
    #[error("a tool named {0:?} is already registered; tool names must be unique")]
    Duplicate(String),
    /// The tool's name cannot be used.
    #[error("tool name {0:?} is invalid: use letters, digits, '_', '-' and '.' only")]
    InvalidName(String),
    /// The tool's input schema is not a valid JSON Schema.
    #[error("tool {name:?} has an invalid input schema: {reason}")]
    InvalidSchema {
        /// The tool.
        name: String,
        /// What is wrong with the schema.
        reason: String,
    },
}

/// Why arguments were refused before a run started.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// No tool has that name.
    #[error("unknown tool {0:?}; ListTools shows the tools this server offers")]
    UnknownTool(String),
    /// The arguments do not satisfy the tool's input schema.
    #[error("invalid arguments for tool {tool:?}: {reason}")]
    InvalidArguments {
        /// The tool.
        tool: String,
        /// Which field is wrong and why.
        reason: String,
    },
}

struct Entry {
    tool: Arc<dyn Tool>,
    validator: jsonschema::Validator,
}

/// Every tool this server can run.
#[derive(Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Entry>,
}

impl ToolRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tool, compiling its input schema.
    pub fn register(&mut self, tool: Arc<dyn Tool>) -> Result<(), RegistryError> {
        let spec = tool.spec();
        let name = spec.name.clone();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(RegistryError::InvalidName(name));
        }
        if self.tools.contains_key(&name) {
            return Err(RegistryError::Duplicate(name));
        }
        let validator = jsonschema::validator_for(&spec.input_schema).map_err(|e| {
            RegistryError::InvalidSchema {
                name: name.clone(),
                reason: e.to_string(),
            }
        })?;
        self.tools.insert(name, Entry { tool, validator });
        Ok(())
    }

    /// The specs of every tool, sorted by name.
    pub fn specs(&self) -> impl Iterator<Item = &ToolSpec> {
        self.tools.values().map(|entry| entry.tool.spec())
    }

    /// The spec of one tool.
    pub fn spec(&self, name: &str) -> Option<&ToolSpec> {
        self.tools.get(name).map(|entry| entry.tool.spec())
    }

    /// Whether a tool of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tools.contains_key(name)
    }

    /// Finds a tool and checks `arguments` against its input schema. `None` arguments mean the
    /// empty object.
    pub fn prepare(
        &self,
        name: &str,
        arguments: Option<Value>,
    ) -> Result<(Arc<dyn Tool>, Value), LookupError> {
        let entry = self
            .tools
            .get(name)
            .ok_or_else(|| LookupError::UnknownTool(name.to_owned()))?;
        let arguments = arguments.unwrap_or_else(|| Value::Object(Default::default()));
        if !arguments.is_object() {
            return Err(LookupError::InvalidArguments {
                tool: name.to_owned(),
                reason: "arguments must be a JSON object".to_owned(),
            });
        }
        let problems: Vec<String> = entry
            .validator
            .iter_errors(&arguments)
            .take(5)
            .map(|error| {
                let at = error.instance_path().to_string();
                if at.is_empty() {
                    error.to_string()
                } else {
                    format!(
                        "field {}: {error}",
                        at.trim_start_matches('/').replace('/', ".")
                    )
                }
            })
            .collect();
        if !problems.is_empty() {
            return Err(LookupError::InvalidArguments {
                tool: name.to_owned(),
                reason: problems.join("; "),
            });
        }
        Ok((Arc::clone(&entry.tool), arguments))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::builtin::ticks;
    use serde_json::json;

    fn registry() -> ToolRegistry {
        let mut registry = ToolRegistry::new();
        registry.register(Arc::new(ticks())).unwrap();
        registry
    }

    #[test]
    fn duplicate_names_are_refused() {
        let mut registry = registry();
        let err = registry.register(Arc::new(ticks())).unwrap_err();
        assert!(matches!(err, RegistryError::Duplicate(name) if name == "ticks"));
    }

    #[test]
    fn schema_errors_name_the_field() {
        let err = registry()
            .prepare("ticks", Some(json!({"count": "many"})))
            .err()
            .unwrap();
        let message = err.to_string();
        assert!(message.contains("field count"), "{message}");
        assert!(message.contains("\"many\""), "{message}");
    }

    #[test]
    fn missing_required_field_is_named() {
        let err = registry().prepare("ticks", None).err().unwrap();
        assert!(
            err.to_string().contains("\"count\" is a required property"),
            "{err}"
        );
    }

    #[test]
    fn unknown_tool_is_reported() {
        let err = registry().prepare("nope", None).err().unwrap();
        assert!(matches!(err, LookupError::UnknownTool(name) if name == "nope"));
    }
}

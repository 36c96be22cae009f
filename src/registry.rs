//! The tool registry: name → tool, with each tool's schemas and a compiled validator for its
//! arguments. Built once at start-up from the built-in tools and the config file, then shared
//! read-only by every run.
//!
//! Most tools are fixed at start-up. A [`ToolSet`] is the exception: a group of tools whose
//! members may change while the server runs (the tools of a remote server, re-listed when it
//! comes back with other tools). Names stay unique across everything: a set's new tool whose name
//! another tool already has is refused, and the tool already there keeps its name.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::Value;

pub use crate::tools::ToolSetChange;
use crate::tools::{Tool, ToolListing, ToolSpec};

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
    #[error("unknown tool {0:?}; list the tools with `toolstream tools` or ListTools")]
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

impl Entry {
    /// Checks the tool's name and compiles its input schema.
    fn new(tool: Arc<dyn Tool>) -> Result<Entry, RegistryError> {
        let spec = tool.spec();
        let name = &spec.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(RegistryError::InvalidName(name.clone()));
        }
        let validator = jsonschema::validator_for(&spec.input_schema).map_err(|e| {
            RegistryError::InvalidSchema {
                name: name.clone(),
                reason: e.to_string(),
            }
        })?;
        Ok(Entry { tool, validator })
    }
}

/// Who holds each name: the fixed tools (`None`) or a [`ToolSet`] (its number). Shared by a
/// registry and its sets, so that a set that changes later still keeps names unique.
type Claims = Mutex<HashMap<String, Option<usize>>>;

/// Every tool this server can run.
#[derive(Default)]
pub struct ToolRegistry {
    /// Tools fixed at start-up: looked up without any lock.
    tools: BTreeMap<String, Entry>,
    /// Groups of tools that may change while the server runs.
    sets: Vec<Arc<ToolSet>>,
    claims: Arc<Claims>,
}

/// A group of tools whose members may change while the server runs; see [`ToolSet::replace`].
pub struct ToolSet {
    /// Its number among the registry's sets.
    id: usize,
    /// What the set is, for logs ("remote http://...").
    label: String,
    tools: RwLock<Arc<BTreeMap<String, Entry>>>,
    claims: Arc<Claims>,
    /// Why the set's source cannot be listed now (a remote that is down); `None` while it can.
    unreachable: RwLock<Option<String>>,
}

/// A [`ToolSet`]'s source as health reports it (`/healthz`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceHealth {
    /// What the source is: "remote http://127.0.0.1:50052".
    pub source: String,
    /// Whether its tools could be listed the last time they were asked for.
    pub reachable: bool,
    /// How many of its tools are offered now.
    pub tools: usize,
    /// Why it cannot be listed, while it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ToolListing for ToolSet {
    fn replace(&self, tools: Vec<Arc<dyn Tool>>) -> ToolSetChange {
        ToolSet::replace(self, tools)
    }

    fn set_unreachable(&self, reason: Option<String>) {
        ToolSet::set_unreachable(self, reason);
    }
}

impl ToolSet {
    /// What the set is, as given to [`ToolRegistry::register_set`].
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The names of the set's tools now.
    pub fn names(&self) -> Vec<String> {
        self.current().keys().cloned().collect()
    }

    /// Records why the set's source cannot be listed now, or (`None`) that it can again.
    pub fn set_unreachable(&self, reason: Option<String>) {
        *self.unreachable.write().unwrap_or_else(|e| e.into_inner()) = reason;
    }

    /// The set's source as health reports it.
    pub fn health(&self) -> SourceHealth {
        let error = self
            .unreachable
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        SourceHealth {
            source: self.label.clone(),
            reachable: error.is_none(),
            tools: self.current().len(),
            error,
        }
    }

    fn current(&self) -> Arc<BTreeMap<String, Entry>> {
        Arc::clone(&self.tools.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Makes `tools` the set's tools. A tool whose name another tool of the registry holds, or
    /// whose name or schema is invalid, is left out (and named in the change); the others replace
    /// the set's previous tools at once. Runs already started keep the tool they started with.
    pub fn replace(&self, tools: Vec<Arc<dyn Tool>>) -> ToolSetChange {
        let mut change = ToolSetChange::default();
        let mut entries = BTreeMap::new();
        for tool in tools {
            match Entry::new(tool) {
                Ok(entry) => {
                    let name = entry.tool.spec().name.clone();
                    match entries.entry(name) {
                        std::collections::btree_map::Entry::Vacant(slot) => {
                            slot.insert(entry);
                        }
                        std::collections::btree_map::Entry::Occupied(taken) => change
                            .refused
                            .push(RegistryError::Duplicate(taken.key().clone()).to_string()),
                    }
                }
                Err(error) => change.refused.push(error.to_string()),
            }
        }
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|name, _| match claims.get(name) {
            Some(owner) if *owner != Some(self.id) => {
                change
                    .refused
                    .push(RegistryError::Duplicate(name.clone()).to_string());
                false
            }
            _ => true,
        });
        let before: BTreeSet<String> = self.current().keys().cloned().collect();
        for name in &before {
            if !entries.contains_key(name) {
                claims.remove(name);
                change.removed.push(name.clone());
            }
        }
        for name in entries.keys() {
            if !before.contains(name) {
                claims.insert(name.clone(), Some(self.id));
                change.added.push(name.clone());
            }
        }
        *self.tools.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(entries);
        change
    }
}

impl ToolRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tool, compiling its input schema.
    pub fn register(&mut self, tool: Arc<dyn Tool>) -> Result<(), RegistryError> {
        let entry = Entry::new(tool)?;
        let name = entry.tool.spec().name.clone();
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        if claims.contains_key(&name) {
            return Err(RegistryError::Duplicate(name));
        }
        claims.insert(name.clone(), None);
        self.tools.insert(name, entry);
        Ok(())
    }

    /// Adds a group of tools that may change later through the returned [`ToolSet`]. Fails,
    /// adding nothing, when one of `tools` cannot be registered (a name taken, an invalid schema).
    pub fn register_set(
        &mut self,
        label: impl Into<String>,
        tools: Vec<Arc<dyn Tool>>,
    ) -> Result<Arc<ToolSet>, RegistryError> {
        let mut entries = BTreeMap::new();
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        for tool in tools {
            let entry = Entry::new(tool)?;
            let name = entry.tool.spec().name.clone();
            if claims.contains_key(&name) || entries.contains_key(&name) {
                return Err(RegistryError::Duplicate(name));
            }
            entries.insert(name, entry);
        }
        let id = self.sets.len();
        for name in entries.keys() {
            claims.insert(name.clone(), Some(id));
        }
        let set = Arc::new(ToolSet {
            id,
            label: label.into(),
            tools: RwLock::new(Arc::new(entries)),
            claims: Arc::clone(&self.claims),
            unreachable: RwLock::new(None),
        });
        drop(claims);
        self.sets.push(Arc::clone(&set));
        Ok(set)
    }

    /// The sources whose tools may change while the server runs (remote servers), as health
    /// reports them, in the order they were registered.
    pub fn sources(&self) -> Vec<SourceHealth> {
        self.sets.iter().map(|set| set.health()).collect()
    }

    /// The specs of every tool now, sorted by name.
    pub fn specs(&self) -> Vec<ToolSpec> {
        let mut specs: BTreeMap<String, ToolSpec> = self
            .tools
            .iter()
            .map(|(name, entry)| (name.clone(), entry.tool.spec().clone()))
            .collect();
        for set in &self.sets {
            for (name, entry) in set.current().iter() {
                specs
                    .entry(name.clone())
                    .or_insert_with(|| entry.tool.spec().clone());
            }
        }
        specs.into_values().collect()
    }

    /// The spec of one tool.
    pub fn spec(&self, name: &str) -> Option<ToolSpec> {
        self.find(name, |entry| entry.tool.spec().clone())
    }

    /// Whether a tool of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.find(name, |_| ()).is_some()
    }

    /// Applies `with` to the entry of `name`: a fixed tool without taking any lock, else the
    /// tool of a set.
    fn find<T>(&self, name: &str, with: impl Fn(&Entry) -> T) -> Option<T> {
        if let Some(entry) = self.tools.get(name) {
            return Some(with(entry));
        }
        self.sets
            .iter()
            .find_map(|set| set.current().get(name).map(&with))
    }

    /// Finds a tool and checks `arguments` against its input schema. `None` arguments mean the
    /// empty object.
    pub fn prepare(
        &self,
        name: &str,
        arguments: Option<Value>,
    ) -> Result<(Arc<dyn Tool>, Value), LookupError> {
        let arguments = arguments.unwrap_or_else(|| Value::Object(Default::default()));
        let (tool, checked) = self
            .find(name, |entry| {
                (
                    Arc::clone(&entry.tool),
                    Self::check(entry, name, &arguments),
                )
            })
            .ok_or_else(|| LookupError::UnknownTool(name.to_owned()))?;
        checked?;
        Ok((tool, arguments))
    }

    /// Checks `arguments` (an object) against the input schema of `entry`.
    fn check(entry: &Entry, name: &str, arguments: &Value) -> Result<(), LookupError> {
        if !arguments.is_object() {
            return Err(LookupError::InvalidArguments {
                tool: name.to_owned(),
                reason: "arguments must be a JSON object".to_owned(),
            });
        }
        let problems = schema_problems(&entry.validator, arguments);
        if !problems.is_empty() {
            return Err(LookupError::InvalidArguments {
                tool: name.to_owned(),
                reason: problems.join("; "),
            });
        }
        Ok(())
    }
}

/// Why `value` fails the schema of `validator`, in words naming each field (`field a.b: ...`),
/// at most five reasons; empty when it satisfies it. Used for a tool's arguments and for the
/// answers to a run's input requests.
pub fn schema_problems(validator: &jsonschema::Validator, value: &Value) -> Vec<String> {
    validator
        .iter_errors(value)
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
        .collect()
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

    /// A tool named `name` that is never run.
    fn named(name: &str) -> Arc<dyn Tool> {
        use crate::tools::native::tool_fn;
        #[derive(serde::Deserialize, schemars::JsonSchema)]
        struct NoArgs {}
        Arc::new(tool_fn(
            name.to_owned(),
            "A test tool.",
            |_: NoArgs, _| async { Ok::<_, crate::tools::ToolError>(()) },
        ))
    }

    fn names(registry: &ToolRegistry) -> Vec<String> {
        registry.specs().into_iter().map(|spec| spec.name).collect()
    }

    #[test]
    fn a_set_changes_its_tools_and_keeps_names_unique() {
        let mut registry = registry();
        let set = registry
            .register_set("remote", vec![named("r.a"), named("r.b")])
            .unwrap();
        assert_eq!(names(&registry), ["r.a", "r.b", "ticks"]);
        assert!(registry.prepare("r.a", None).is_ok());

        let change = set.replace(vec![named("r.b"), named("r.c"), named("ticks")]);
        assert_eq!(change.added, ["r.c"]);
        assert_eq!(change.removed, ["r.a"]);
        assert_eq!(change.refused.len(), 1, "{change:?}");
        assert!(change.refused[0].contains("\"ticks\""), "{change:?}");
        assert_eq!(names(&registry), ["r.b", "r.c", "ticks"]);
        assert_eq!(registry.spec("ticks").unwrap().kind.as_str(), "native");
        assert!(matches!(
            registry.prepare("r.a", None).err(),
            Some(LookupError::UnknownTool(_))
        ));
        assert!(registry.contains("r.c"));

        assert!(set.replace(vec![named("r.b"), named("r.c")]).is_empty());
    }

    #[test]
    fn a_set_cannot_take_a_name_at_start_up_and_another_set_cannot_take_its_names() {
        let mut registry = registry();
        assert!(matches!(
            registry.register_set("clash", vec![named("ticks")]),
            Err(RegistryError::Duplicate(_))
        ));
        let first = registry.register_set("first", vec![named("x")]).unwrap();
        let second = registry.register_set("second", vec![]).unwrap();
        let change = second.replace(vec![named("x"), named("y")]);
        assert_eq!(change.added, ["y"]);
        assert_eq!(change.refused.len(), 1);
        // Once the first set lets go of the name, the second may take it.
        first.replace(vec![]);
        assert_eq!(second.replace(vec![named("x"), named("y")]).added, ["x"]);
        assert!(matches!(
            registry.register(named("y")),
            Err(RegistryError::Duplicate(_))
        ));
    }

    #[test]
    fn unknown_tool_is_reported() {
        let err = registry().prepare("nope", None).err().unwrap();
        assert!(matches!(err, LookupError::UnknownTool(name) if name == "nope"));
    }
}

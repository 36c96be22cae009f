//! `describe = true`: a command tool says its own description and schemas at start-up, so its
//! `[[tools]]` entry needs none; a command that cannot describe itself stops `serve` naming it.

use crate::common::{TestServer, list_tools, registry_with};
use serde_json::json;
use toolstream::config::Limits;

async fn load(entry: &str) -> Result<TestServer, String> {
    let root = std::env::current_dir().unwrap();
    let entry: toml::Table = toml::from_str(entry).unwrap();
    let mut registry = registry_with(&root, vec![]);
    toolstream::configured_tools::load_entries(&[entry], &root, &Limits::default(), &mut registry)
        .await
        .map_err(|e| e.to_string())?;
    Ok(TestServer::start_with(registry, Limits::default()).await)
}

#[tokio::test]
async fn the_python_helper_describes_the_seeds_quick_start_tool() {
    let manifest = env!("CARGO_MANIFEST_DIR");
    let server = load(&format!(
        "kind = \"command\"\nname = \"process_files\"\ndescribe = true\n\
         command = [\"python3\", \"examples/process_files.py\"]\ncwd = \"{manifest}\"\n\
         env = {{ PYTHONPATH = \"python\" }}\n"
    ))
    .await
    .unwrap();
    let tools = list_tools(&server).await;
    let tool = tools.iter().find(|t| t.name == "process_files").unwrap();
    assert_eq!(
        tool.description,
        "Process multiple files with progress updates."
    );
    let schema = toolstream::json_proto::struct_to_json(tool.input_schema.clone().unwrap());
    assert_eq!(
        serde_json::Value::Object(schema),
        json!({
            "type": "object",
            "properties": {"files": {"type": "array", "items": {"type": "string"}}},
            "required": ["files"],
            "additionalProperties": false,
        })
    );
    let output = toolstream::json_proto::struct_to_json(tool.output_schema.clone().unwrap());
    assert_eq!(serde_json::Value::Object(output), json!({"type": "string"}));
}

#[tokio::test]
async fn any_command_can_describe_itself_and_the_entry_wins() {
    let script = r#"[ "$0" = "--describe" ] && echo '{"description": "Said by the tool.", "input_schema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}, "output_schema": {"type": "number"}}'"#;
    let server = load(&format!(
        "kind = \"command\"\nname = \"sh\"\ndescribe = true\ncommand = [\"sh\", \"-c\", {script:?}]\n\
         output_schema = {{ type = \"integer\" }}\n"
    ))
    .await
    .unwrap();
    let tools = list_tools(&server).await;
    let tool = tools.iter().find(|t| t.name == "sh").unwrap();
    assert_eq!(tool.description, "Said by the tool.");
    let schema = toolstream::json_proto::struct_to_json(tool.input_schema.clone().unwrap());
    assert_eq!(schema["required"], json!(["n"]));
    let output = toolstream::json_proto::struct_to_json(tool.output_schema.clone().unwrap());
    assert_eq!(
        serde_json::Value::Object(output),
        json!({"type": "integer"})
    );
}

#[tokio::test]
async fn a_command_that_cannot_describe_itself_stops_start_up_naming_it() {
    for (command, expected) in [
        ("[\"false\"]", "`false --describe` exited with code 1"),
        ("[\"/no/such/program\"]", "cannot start"),
        ("[\"echo\", \"hello\"]", "did not print one JSON object"),
        (
            "[\"sh\", \"-c\", \"echo '{}'\"]",
            "printed a description without `input_schema`",
        ),
    ] {
        let error = load(&format!(
            "kind = \"command\"\nname = \"t\"\ndescribe = true\ncommand = {command}\n"
        ))
        .await
        .err()
        .expect("start-up must fail");
        assert!(error.contains("[[tools]] entry 1 (\"t\")"), "{error}");
        assert!(error.contains(expected), "{command}: {error}");
    }
}

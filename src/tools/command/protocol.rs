//! The JSON-lines protocol a command tool speaks on stdout: one JSON object per line.
//!
//! - `{"result": ...}`: the tool's result (the last line);
//! - `{"error": "..."}`: the tool failed with that message (the last line);
//! - any other object: progress, `{"progress": 0.4, "status": "...", ...extra}`.
//!
//! A `result` key makes a line the result and an `error` key the error, whatever else it holds;
//! so progress data cannot use those two keys.

use serde_json::Value;

use crate::tools::ProgressUpdate;

/// One line of a tool's output.
#[derive(Debug, PartialEq)]
pub enum Message {
    /// A progress report.
    Progress(ProgressUpdate),
    /// The result; the run succeeds with it when the tool then exits cleanly.
    Result(Value),
    /// The tool's own error message.
    Error(String),
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
    Ok(Message::Progress(ProgressUpdate::from_object(object)))
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
        let Ok(Message::Progress(update)) = parse(br#"{"progress":0.5,"status":"half","n":3}"#)
        else {
            panic!("not progress");
        };
        assert_eq!(update.fraction, Some(0.5));
        assert_eq!(update.status.as_deref(), Some("half"));
        assert_eq!(update.data.get("n"), Some(&json!(3)));
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

//! A tool's stderr: every line goes to the log, and the last few are kept for the error message
//! when the tool fails (a Python traceback ends with the line that matters).

use std::collections::VecDeque;

use tokio::io::AsyncRead;

use crate::tools::lines::{Line, LineReader};

/// Lines of stderr kept for an error message.
const TAIL_LINES: usize = 10;
/// Characters kept of each of those lines.
const TAIL_LINE_CHARS: usize = 300;
/// Longest stderr line read; longer ones are logged as skipped.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// The last lines a tool wrote to stderr.
#[derive(Debug, Default)]
pub struct StderrTail {
    lines: VecDeque<String>,
}

impl StderrTail {
    /// Logs every line of `stderr` under the tool's name and keeps the last ones, until the end
    /// of the stream or a read error (which only ends the logging: stderr is not the protocol).
    pub async fn collect(&mut self, stderr: impl AsyncRead + Unpin, tool: &str) {
        let mut lines = LineReader::new(stderr, MAX_LINE_BYTES);
        loop {
            match lines.next_line().await {
                Ok(Some(Line::Complete(bytes))) => {
                    let text = String::from_utf8_lossy(bytes);
                    let text = text.trim_end();
                    tracing::info!(tool, "stderr: {text}");
                    self.push(text);
                }
                Ok(Some(Line::TooLong)) => {
                    tracing::info!(tool, "stderr: (a line longer than {MAX_LINE_BYTES} bytes)");
                }
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(tool, %error, "cannot read the tool's stderr");
                    return;
                }
            }
        }
    }

    fn push(&mut self, line: &str) {
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        let mut kept: String = line.chars().take(TAIL_LINE_CHARS).collect();
        if kept.len() < line.len() {
            kept.push('…');
        }
        self.lines.push_back(kept);
    }

    /// `"; stderr ends with:\n..."`, or nothing when the tool wrote nothing there; appended to an
    /// error message.
    pub fn as_suffix(&self) -> String {
        if self.lines.iter().all(|line| line.is_empty()) {
            return String::new();
        }
        let mut suffix = String::from("; stderr ends with:");
        for line in &self.lines {
            suffix.push('\n');
            suffix.push_str(line);
        }
        suffix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_the_last_lines_only() {
        let input: String = (1..=15).map(|i| format!("line {i}\n")).collect();
        let mut tail = StderrTail::default();
        tail.collect(input.as_bytes(), "t").await;
        let suffix = tail.as_suffix();
        assert!(
            suffix.starts_with("; stderr ends with:\nline 6\n"),
            "{suffix}"
        );
        assert!(suffix.ends_with("line 15"), "{suffix}");
    }

    #[tokio::test]
    async fn nothing_is_added_when_stderr_was_empty() {
        let mut tail = StderrTail::default();
        tail.collect(&b""[..], "t").await;
        assert_eq!(tail.as_suffix(), "");
    }
}

//! Reading a pipe line by line, fast and with a cap on line length.
//!
//! A tool may print hundreds of thousands of progress lines a second, so a line that fits in the
//! read buffer is handed out as a slice of that buffer, without a copy; only a line split across
//! two reads is assembled in a side buffer. A line longer than the cap is reported as such instead
//! of growing memory without bound.

use std::io;
use std::pin::Pin;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};

/// Bytes read from the pipe at a time: big enough that a burst of progress lines costs few reads.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// One line, without its `\n`.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A whole line (a last line without `\n` at the end of the stream counts).
    Complete(&'a [u8]),
    /// A line longer than the cap; the reader skips the rest of it on the next call.
    TooLong,
}

/// Splits a byte stream into lines of at most `max_len` bytes.
pub struct LineReader<R> {
    reader: BufReader<R>,
    max_len: usize,
    /// Bytes of the read buffer handed out as the last line, consumed on the next call (so the
    /// slice could point into the buffer).
    pending_consume: usize,
    /// A line split across reads, assembled here.
    partial: Vec<u8>,
    /// `partial` was handed out and must be cleared on the next call.
    partial_returned: bool,
    /// Skipping the rest of a line that was too long.
    skipping: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// A reader of `inner` that refuses lines longer than `max_len` bytes.
    pub fn new(inner: R, max_len: usize) -> Self {
        LineReader {
            reader: BufReader::with_capacity(READ_BUFFER_BYTES, inner),
            max_len,
            pending_consume: 0,
            partial: Vec::new(),
            partial_returned: false,
            skipping: false,
        }
    }

    /// The next line, or `None` at the end of the stream.
    ///
    /// Cancel-safe: all state lives in `self`, so dropping the future between reads loses nothing
    /// (the caller polls it inside `select!`).
    pub async fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        if self.pending_consume > 0 {
            Pin::new(&mut self.reader).consume(self.pending_consume);
            self.pending_consume = 0;
        }
        if self.partial_returned {
            self.partial.clear();
            self.partial_returned = false;
        }
        loop {
            let (available, newline) = {
                let buffer = self.reader.fill_buf().await?;
                (buffer.len(), memchr::memchr(b'\n', buffer))
            };
            if available == 0 {
                self.skipping = false;
                if self.partial.is_empty() {
                    return Ok(None);
                }
                self.partial_returned = true;
                return Ok(Some(Line::Complete(&self.partial)));
            }
            let Some(end) = newline else {
                // No line end in what was read: keep the bytes (unless skipping) and read on.
                if !self.skipping {
                    if self.partial.len() + available > self.max_len {
                        self.start_skipping();
                        Pin::new(&mut self.reader).consume(available);
                        return Ok(Some(Line::TooLong));
                    }
                    self.partial
                        .extend_from_slice(&self.reader.buffer()[..available]);
                }
                Pin::new(&mut self.reader).consume(available);
                continue;
            };
            if self.skipping {
                self.skipping = false;
                Pin::new(&mut self.reader).consume(end + 1);
                continue;
            }
            if self.partial.len() + end > self.max_len {
                // The line ends inside this buffer: skip it and be done with it.
                self.partial.clear();
                Pin::new(&mut self.reader).consume(end + 1);
                return Ok(Some(Line::TooLong));
            }
            if self.partial.is_empty() {
                // The common case: the whole line is in the buffer.
                self.pending_consume = end + 1;
                return Ok(Some(Line::Complete(&self.reader.buffer()[..end])));
            }
            self.partial.extend_from_slice(&self.reader.buffer()[..end]);
            Pin::new(&mut self.reader).consume(end + 1);
            self.partial_returned = true;
            return Ok(Some(Line::Complete(&self.partial)));
        }
    }

    fn start_skipping(&mut self) {
        self.partial.clear();
        self.skipping = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads every line of `input`, fed in chunks of `chunk` bytes, as strings ("<too long>" for
    /// refused lines).
    async fn lines(input: &[u8], chunk: usize, max_len: usize) -> Vec<String> {
        let mut builder = tokio_test_reader(input, chunk);
        let mut reader = LineReader::new(&mut builder, max_len);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().await.unwrap() {
            out.push(match line {
                Line::Complete(bytes) => String::from_utf8(bytes.to_vec()).unwrap(),
                Line::TooLong => "<too long>".to_owned(),
            });
        }
        out
    }

    /// A reader that returns at most `chunk` bytes per read, to split lines across reads.
    struct Chunked {
        input: Vec<u8>,
        at: usize,
        chunk: usize,
    }

    impl AsyncRead for Chunked {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            let end = (self.at + self.chunk)
                .min(self.input.len())
                .min(self.at + buf.remaining());
            buf.put_slice(&self.input[self.at..end]);
            self.at = end;
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn tokio_test_reader(input: &[u8], chunk: usize) -> Chunked {
        Chunked {
            input: input.to_vec(),
            at: 0,
            chunk,
        }
    }

    #[tokio::test]
    async fn splits_lines_whatever_the_read_sizes() {
        let input = b"{\"a\":1}\n\n{\"b\":22}\nlast";
        for chunk in [1, 2, 3, 5, 100] {
            assert_eq!(
                lines(input, chunk, 100).await,
                ["{\"a\":1}", "", "{\"b\":22}", "last"],
                "chunk {chunk}"
            );
        }
    }

    #[tokio::test]
    async fn refuses_long_lines_and_goes_on_after_them() {
        let input = b"short\n0123456789abcdef\nok\n";
        for chunk in [1, 4, 100] {
            assert_eq!(
                lines(input, chunk, 8).await,
                ["short", "<too long>", "ok"],
                "chunk {chunk}"
            );
        }
    }

    #[tokio::test]
    async fn a_line_of_exactly_the_cap_is_accepted() {
        assert_eq!(lines(b"12345678\n", 3, 8).await, ["12345678"]);
    }
}

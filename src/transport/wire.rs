//! Events on the wire, encoded once: a run's event is encoded to protobuf bytes by the first
//! stream that sends it (cached on the event, see [`RunEvent::wire`]) and every other stream of
//! the run sends the same bytes. The codec of the server-streaming methods writes those bytes as
//! they are; requests are decoded by prost as usual.

use std::marker::PhantomData;

use std::sync::Arc;

use bytes::BufMut;
use tonic::Status;
use tonic::codec::{Codec, EncodeBuf, Encoder};

use super::convert::timestamp;
use crate::engine::{EventKind, RunEvent, WireBytes};
use crate::pb;

/// A run's event on its way to the wire: the event itself (shared with the log and every other
/// stream), whose encoding is made once and written as it is.
#[derive(Debug, Clone)]
pub struct EncodedEvent(Arc<RunEvent>);

impl EncodedEvent {
    /// The event, to be sent in its one encoding.
    pub fn of(event: Arc<RunEvent>) -> Self {
        EncodedEvent(event)
    }

    /// The event's encoding, made by the first stream that sends it.
    pub fn bytes(&self) -> &[u8] {
        self.0.wire(encode)
    }
}

/// The event's protobuf encoding: progress straight from the engine's event (the hot path), any
/// other event through the generated message.
fn encode(event: &RunEvent) -> WireBytes {
    encode_progress(event)
        .or_else(|| encode_partial(event))
        .unwrap_or_else(|| {
            WireBytes::from(prost::Message::encode_to_vec(&pb::RunEvent::from(event)))
        })
}

/// A progress event without extra data, encoded straight from the engine's event: the fields in
/// the order and the form prost writes them (a test holds the two to the same bytes), into
/// [`WireBytes`] of the exact size (inside the event when small: no allocation), with no message
/// built first (so no copy of the run id, the call's tag or the status). `None` for other events
/// and for progress with extra data.
fn encode_progress(event: &RunEvent) -> Option<WireBytes> {
    let EventKind::Progress {
        call,
        update,
        eta_seconds,
    } = &event.kind
    else {
        return None;
    };
    if !update.data.is_empty() {
        return None;
    }
    let head = Head::of(event);
    let texts = [
        (4, &*call.call_id),
        (5, &*call.tool),
        (6, &*call.parent_call_id),
    ];
    let progress_len = update.fraction.map_or(0, |_| DOUBLE_LEN)
        + update.status.as_deref().map_or(0, str_len)
        + texts.iter().map(|(_, text)| text_len(text)).sum::<usize>()
        + eta_seconds.map_or(0, |_| DOUBLE_LEN);
    let len = head.len + nested_len(progress_len);

    Some(WireBytes::written(len, |mut buf| {
        // Writing past `len` would panic: the length computed is the length written (a test
        // holds every shape of progress to prost's bytes).
        let buf = &mut buf;
        head.put(buf, event);
        put_nested(buf, 11, progress_len);
        if let Some(fraction) = update.fraction {
            put_double(buf, 1, fraction);
        }
        if let Some(status) = &update.status {
            put_str(buf, 2, status);
        }
        for (tag, text) in texts {
            put_text(buf, tag, text);
        }
        if let Some(eta) = eta_seconds {
            put_double(buf, 7, *eta);
        }
        debug_assert!(buf.is_empty(), "the length computed is the length written");
    }))
}

/// The fields every event starts with, as the fast paths write them: the run id, the sequence,
/// the timestamp.
struct Head {
    seconds: u64,
    nanos: u64,
    /// The timestamp message's length.
    time_len: usize,
    /// The three fields' length.
    len: usize,
}

impl Head {
    fn of(event: &RunEvent) -> Head {
        let time = timestamp(event.timestamp);
        let (seconds, nanos) = (time.seconds as u64, i64::from(time.nanos) as u64);
        let time_len = uint_len(seconds) + uint_len(nanos);
        Head {
            seconds,
            nanos,
            time_len,
            len: text_len(&event.run_id) + uint_len(event.sequence) + nested_len(time_len),
        }
    }

    fn put(&self, buf: &mut impl BufMut, event: &RunEvent) {
        put_text(buf, 1, &event.run_id);
        put_uint(buf, 2, event.sequence);
        put_nested(buf, 3, self.time_len);
        put_uint(buf, 1, self.seconds);
        put_uint(buf, 2, self.nanos);
    }
}

/// A partial result, encoded straight from the engine's event as [`encode_progress`] does
/// progress: its value's bytes as the log holds them (encoded once, see
/// [`HeldPartial`](crate::engine::HeldPartial)), no copy of the key or the call's tag, into
/// [`WireBytes`] of the exact size. `None` for other events.
fn encode_partial(event: &RunEvent) -> Option<WireBytes> {
    let EventKind::PartialResult { call, output } = &event.kind else {
        return None;
    };
    let head = Head::of(event);
    let texts = [
        (1, &*call.call_id),
        (2, &*call.tool),
        (3, &*call.parent_call_id),
        (4, output.key.as_str()),
    ];
    let value_len = output.value_bytes().len();
    let partial_len = texts.iter().map(|(_, text)| text_len(text)).sum::<usize>()
        + nested_len(value_len)
        + if output.append { 2 } else { 0 };
    let len = head.len + PARTIAL_RESULT_KEY.len() + varint_len(partial_len as u64) + partial_len;

    Some(WireBytes::written(len, |mut buf| {
        // As in `encode_progress`: writing past `len` would panic, and a test holds every shape
        // of partial result to prost's bytes.
        let buf = &mut buf;
        head.put(buf, event);
        buf.put_slice(&PARTIAL_RESULT_KEY);
        put_varint(buf, partial_len as u64);
        for (tag, text) in texts {
            put_text(buf, tag, text);
        }
        put_nested(buf, 5, value_len);
        buf.put_slice(output.value_bytes());
        if output.append {
            put_uint(buf, 6, 1);
        }
        debug_assert!(buf.is_empty(), "the length computed is the length written");
    }))
}

/// The key of `RunEvent.partial_result`, field 20 and length-delimited: 20 << 3 | 2 = 162, two
/// bytes of varint.
const PARTIAL_RESULT_KEY: [u8; 2] = [0xA2, 0x01];

// Protobuf's wire format, for the fields above: every tag is below 16, so each key is one byte.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LENGTH_DELIMITED: u8 = 2;
/// A `double` field: its key and eight bytes.
const DOUBLE_LEN: usize = 9;

fn varint_len(value: u64) -> usize {
    // Seven bits a byte; zero takes one.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(buf: &mut impl BufMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8(value as u8 | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

fn put_key(buf: &mut impl BufMut, tag: u8, wire_type: u8) {
    buf.put_u8(tag << 3 | wire_type);
}

/// An integer field; proto3 leaves out zero.
fn uint_len(value: u64) -> usize {
    if value == 0 { 0 } else { 1 + varint_len(value) }
}

fn put_uint(buf: &mut impl BufMut, tag: u8, value: u64) {
    if value != 0 {
        put_key(buf, tag, VARINT);
        put_varint(buf, value);
    }
}

/// A string field that is written even when empty (an `optional string`).
fn str_len(text: &str) -> usize {
    1 + varint_len(text.len() as u64) + text.len()
}

fn put_str(buf: &mut impl BufMut, tag: u8, text: &str) {
    put_key(buf, tag, LENGTH_DELIMITED);
    put_varint(buf, text.len() as u64);
    buf.put_slice(text.as_bytes());
}

/// A plain string field; proto3 leaves out the empty string.
fn text_len(text: &str) -> usize {
    if text.is_empty() { 0 } else { str_len(text) }
}

fn put_text(buf: &mut impl BufMut, tag: u8, text: &str) {
    if !text.is_empty() {
        put_str(buf, tag, text);
    }
}

/// A message field whose body is `len` bytes long (written even when empty: it is set).
fn nested_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn put_nested(buf: &mut impl BufMut, tag: u8, len: usize) {
    put_key(buf, tag, LENGTH_DELIMITED);
    put_varint(buf, len as u64);
}

fn put_double(buf: &mut impl BufMut, tag: u8, value: f64) {
    put_key(buf, tag, FIXED64);
    buf.put_f64_le(value);
}

/// The codec of server-streaming methods: writes [`EncodedEvent`]s, decodes requests `U`.
pub struct EncodedEventCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for EncodedEventCodec<T, U> {
    fn default() -> Self {
        EncodedEventCodec(PhantomData)
    }
}

impl<U> Codec for EncodedEventCodec<EncodedEvent, U>
where
    U: prost::Message + Default + Send + 'static,
{
    type Encode = EncodedEvent;
    type Decode = U;
    type Encoder = EncodedEventEncoder;
    type Decoder = tonic_prost::ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedEventEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstCodec::<pb::RunEvent, U>::raw_decoder(Default::default())
    }
}

/// Writes pre-encoded events.
#[derive(Debug, Clone, Copy, Default)]
pub struct EncodedEventEncoder;

impl Encoder for EncodedEventEncoder {
    type Item = EncodedEvent;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put_slice(item.bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_event_decodes_as_the_message_and_is_made_once() {
        let event = RunEvent::new(
            "r".into(),
            7,
            std::time::SystemTime::UNIX_EPOCH,
            crate::engine::EventKind::Message("hi".into()),
        );
        let event = Arc::new(event);
        let first = EncodedEvent::of(Arc::clone(&event));
        let second = EncodedEvent::of(event);
        assert_eq!(
            first.bytes().as_ptr(),
            second.bytes().as_ptr(),
            "shared, not re-encoded"
        );
        let decoded: pb::RunEvent = prost::Message::decode(first.bytes()).unwrap();
        assert_eq!(decoded.sequence, 7);
        assert_eq!(decoded.run_id, "r");
    }

    /// Progress events of every shape the fast path takes, and some it leaves to prost.
    fn progress_events() -> Vec<RunEvent> {
        use crate::engine::CallTag;
        use crate::tools::ProgressUpdate;
        let mut events = Vec::new();
        let calls = [
            CallTag::top(),
            CallTag::call("call_1", "search"),
            CallTag {
                call_id: "call_1/2".into(),
                tool: "a label".into(),
                parent_call_id: "call_1".into(),
            },
        ];
        let times = [
            std::time::SystemTime::UNIX_EPOCH,
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(1_700_000_000_123),
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
        ];
        let mut data = serde_json::Map::new();
        data.insert("bytes".into(), serde_json::json!(12));
        for (i, call) in calls.iter().enumerate() {
            for (j, time) in times.iter().enumerate() {
                for (fraction, status, eta) in [
                    (None, None, None),
                    (Some(0.0), Some(String::new()), Some(0.0)),
                    (Some(0.25), Some("tick 1/4".to_owned()), Some(12.5)),
                    (Some(1.0), Some("é".repeat(100)), None),
                ] {
                    for data in [serde_json::Map::new(), data.clone()] {
                        let run_id = if i == 0 { "" } else { "0123456789abcdef" };
                        let sequence = [0, 1, 300, u64::MAX][(i + j) % 4];
                        events.push(RunEvent::new(
                            run_id.into(),
                            sequence,
                            *time,
                            EventKind::Progress {
                                call: Arc::new(call.clone()),
                                update: ProgressUpdate {
                                    fraction,
                                    status: status.clone(),
                                    data,
                                },
                                eta_seconds: eta,
                            },
                        ));
                    }
                }
            }
        }
        events
    }

    #[test]
    fn partial_results_are_encoded_to_the_bytes_prost_writes() {
        use crate::engine::CallTag;
        use crate::engine::HeldPartial;
        use crate::tools::PartialOutput;
        let calls = [
            CallTag::top(),
            CallTag {
                call_id: "call_1/2".into(),
                tool: "a label".into(),
                parent_call_id: "call_1".into(),
            },
        ];
        let values = [
            serde_json::json!(null),
            serde_json::json!({"item": 7}),
            serde_json::json!([1, "two", {"": false, "x": []}]),
            serde_json::json!("é".repeat(200)),
        ];
        let mut shapes = 0;
        for call in &calls {
            for value in &values {
                for (key, append) in [("", false), ("items", true)] {
                    let event = RunEvent::new(
                        "0123456789abcdef".into(),
                        [1, 300, u64::MAX][shapes % 3],
                        std::time::SystemTime::UNIX_EPOCH
                            + std::time::Duration::from_nanos(1_700_000_000_123 * shapes as u64),
                        EventKind::PartialResult {
                            call: Arc::new(call.clone()),
                            output: HeldPartial::new(PartialOutput {
                                key: key.into(),
                                value: value.clone(),
                                append,
                            }),
                        },
                    );
                    let expected = prost::Message::encode_to_vec(&pb::RunEvent::from(&event));
                    let written = encode_partial(&event).expect("a partial result");
                    assert_eq!(written.as_slice(), expected, "{event:?}");
                    shapes += 1;
                }
            }
        }
    }

    #[test]
    fn progress_is_encoded_to_the_bytes_prost_writes() {
        for event in progress_events() {
            let expected = prost::Message::encode_to_vec(&pb::RunEvent::from(&event));
            assert_eq!(encode(&event).as_slice(), expected, "{event:?}");
        }
    }
}

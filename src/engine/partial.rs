//! A partial result as the run's log holds it: the tool's value encoded once, as the
//! `google.protobuf.Value` every face sends, instead of its JSON tree.
//!
//! The log holds every partial result it has not evicted (they are never coalesced), so what one
//! costs to hold is what a busy run costs: a small JSON object such as `{"item": 7}` is a B-tree
//! node of about 640 bytes as a `serde_json::Value`, and 21 bytes encoded. Every face reads it in
//! that form anyway: gRPC writes the bytes as they are, the JSON faces go through the contract's
//! mapping (where numbers are doubles), the Redis store decodes them once per event it writes.

use prost::Message;
use serde_json::Value;

use super::event::InlineBytes;
use crate::json_proto::{encode_value, value_encoded_len, value_to_json};
use crate::tools::PartialOutput;

/// A [`PartialOutput`] with its value encoded (see the module docs).
#[derive(Clone, PartialEq)]
pub struct HeldPartial {
    /// Which output of the call it belongs to; empty for the call's main output.
    pub key: String,
    /// The value, encoded as a `google.protobuf.Value` message body.
    value: InlineBytes<INLINE>,
    /// True: the next item of the output `key`; false: replaces that output.
    pub append: bool,
}

/// Room inside the event for a value's encoding: a number, a boolean, a short string or a small
/// object (`{"item": 7}` is 21 bytes) costs no allocation of its own, and the event is no
/// larger than its other kinds make it.
const INLINE: usize = 38;

impl HeldPartial {
    /// Encodes `output`'s value; the JSON tree is dropped with it.
    pub fn new(output: PartialOutput) -> Self {
        let value = InlineBytes::written(value_encoded_len(&output.value), |mut bytes| {
            encode_value(&output.value, &mut bytes);
        });
        HeldPartial {
            key: output.key,
            value,
            append: output.append,
        }
    }

    /// The value's encoding, a `google.protobuf.Value` message body.
    pub fn value_bytes(&self) -> &[u8] {
        self.value.as_slice()
    }

    /// The value as `google.protobuf.Value`.
    pub fn proto_value(&self) -> prost_types::Value {
        // The bytes were encoded here from a JSON value, so they always decode.
        prost_types::Value::decode(self.value_bytes()).unwrap_or_else(|error| {
            debug_assert!(false, "a held partial result does not decode: {error}");
            prost_types::Value::default()
        })
    }

    /// The value as JSON (numbers as doubles, as the contract carries them).
    pub fn value(&self) -> Value {
        value_to_json(self.proto_value())
    }

    /// The partial result as a tool would send it, for comparing with what one sent.
    #[cfg(test)]
    pub(crate) fn to_output(&self) -> PartialOutput {
        PartialOutput {
            key: self.key.clone(),
            value: self.value(),
            append: self.append,
        }
    }
}

impl std::fmt::Debug for HeldPartial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldPartial")
            .field("key", &self.key)
            .field("value", &self.value())
            .field("append", &self.append)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_held_value_reads_back_as_the_contract_carries_it() {
        for value in [
            json!(null),
            json!({"item": 7, "path": "a/b.txt", "nested": {"ok": true, "list": [1, "two"]}}),
            json!([]),
            json!("é".repeat(300)),
            json!(1.5),
        ] {
            let held = HeldPartial::new(PartialOutput {
                key: "files".into(),
                value: value.clone(),
                append: true,
            });
            assert_eq!(
                held.value(),
                value_to_json(crate::json_proto::json_to_value(value))
            );
            assert_eq!(held.value_bytes().len(), held.proto_value().encoded_len());
            assert_eq!((held.key.as_str(), held.append), ("files", true));
        }
    }

    #[test]
    fn a_small_object_is_held_in_a_few_bytes() {
        let held = HeldPartial::new(PartialOutput {
            value: json!({"item": 7}),
            ..PartialOutput::default()
        });
        // Value.struct_value (a key, a length) → Struct.fields' entry (a key, a length) → the
        // entry's key "item" (2 + 4) and its value, a Value (2) holding a double (9).
        assert_eq!(held.value_bytes().len(), 2 + 2 + 6 + 2 + 9);
    }
}

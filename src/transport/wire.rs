//! Events on the wire, encoded once: a run's event is encoded to protobuf bytes by the first
//! stream that sends it (cached on the event, see [`RunEvent::wire`]) and every other stream of
//! the run sends the same bytes. The codec of the server-streaming methods writes those bytes as
//! they are; requests are decoded by prost as usual.

use std::marker::PhantomData;

use bytes::{BufMut, Bytes};
use tonic::Status;
use tonic::codec::{Codec, EncodeBuf, Encoder};

use crate::engine::RunEvent;
use crate::pb;

/// A `RunEvent` message already encoded.
#[derive(Debug, Clone)]
pub struct EncodedEvent(pub Bytes);

impl EncodedEvent {
    /// The event's encoding, made once per event and shared.
    pub fn of(event: &RunEvent) -> Self {
        EncodedEvent(
            event.wire(|event| {
                Bytes::from(prost::Message::encode_to_vec(&pb::RunEvent::from(event)))
            }),
        )
    }
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
        dst.put_slice(&item.0);
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
        let first = EncodedEvent::of(&event);
        let second = EncodedEvent::of(&event);
        assert_eq!(
            first.0.as_ptr(),
            second.0.as_ptr(),
            "shared, not re-encoded"
        );
        let decoded: pb::RunEvent = prost::Message::decode(first.0).unwrap();
        assert_eq!(decoded.sequence, 7);
        assert_eq!(decoded.run_id, "r");
    }
}

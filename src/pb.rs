//! Code generated from `proto/toolstream/v1` by `build.rs`. Nothing here is written by hand.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("toolstream.v1");

/// The encoded file descriptor set of the contract, served by server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("toolstream_descriptor");

/// The servers the binary runs: the same services, with server-streaming methods sending events
/// encoded once and shared by every stream (see `crate::transport::wire`).
pub mod encoded {
    include!(concat!(env!("OUT_DIR"), "/toolstream.v1.ToolService.rs"));
    include!(concat!(env!("OUT_DIR"), "/toolstream.v1.RunService.rs"));
}

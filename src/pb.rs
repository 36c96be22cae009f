//! Code generated from `proto/toolstream/v1` by `build.rs`. Nothing here is written by hand but
//! the descriptor pool the generated messages name for reflection (and so for JSON).

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

/// The contract's descriptors (and those of the well-known types it imports), decoded once. Every
/// generated message implements `prost_reflect::ReflectMessage` against this pool, which is what
/// [`crate::json_proto`] uses for the canonical proto3 JSON mapping.
pub static DESCRIPTOR_POOL: std::sync::LazyLock<prost_reflect::DescriptorPool> =
    std::sync::LazyLock::new(|| {
        // The set is made by build.rs from the same files this module was generated from.
        prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET)
            .expect("the contract's own file descriptor set decodes")
    });

//! Compiles the public contract in `proto/` with protox (pure Rust, so no system `protoc` is
//! needed) and generates the tonic client and server code from it. The encoded file descriptor
//! set is written next to the generated code for server reflection and for the canonical JSON
//! mapping: every message of the contract derives prost-reflect's `ReflectMessage`, naming its
//! descriptor in `crate::pb::DESCRIPTOR_POOL`.
//!
//! The servers the binary runs are generated a second time, by hand from the same descriptors
//! (`tonic_build::manual`), so that server-streaming methods send events already encoded: a run's
//! event is encoded once and the bytes are shared by every stream that sends it
//! (`src/transport/wire.rs`). The prost-generated servers stay available for embedding.

use std::path::PathBuf;

use prost_types::FileDescriptorSet;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/toolstream/v1/toolstream.proto"];
    println!("cargo:rerun-if-changed=proto");

    let file_descriptors = protox::compile(protos, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("toolstream_descriptor.bin");
    std::fs::write(
        &descriptor_path,
        prost::Message::encode_to_vec(&file_descriptors),
    )?;

    encoded_event_servers(&file_descriptors);

    let mut builder = tonic_prost_build::configure()
        .skip_protoc_run()
        .file_descriptor_set_path(&descriptor_path);
    for file in &file_descriptors.file {
        if file.package() != "toolstream.v1" {
            continue;
        }
        let mut names = Vec::new();
        collect_messages(file.package(), &file.message_type, &mut names);
        for name in names {
            builder = builder.message_attribute(
                format!(".{name}"),
                format!(
                    "#[derive(::prost_reflect::ReflectMessage)]\n\
                     #[prost_reflect(descriptor_pool = \"crate::pb::DESCRIPTOR_POOL\", \
                     message_name = \"{name}\")]"
                ),
            );
        }
    }
    builder.compile_fds(file_descriptors)?;
    Ok(())
}

/// Generates `toolstream.v1.<Service>.rs` for every service of the contract: unary methods as
/// prost would, server-streaming methods with pre-encoded events as their output.
fn encoded_event_servers(descriptors: &FileDescriptorSet) {
    let rust_type = |proto: &str| {
        let name = proto.rsplit('.').next().unwrap_or(proto);
        format!("crate::pb::{name}")
    };
    let mut services = Vec::new();
    for file in descriptors
        .file
        .iter()
        .filter(|f| f.package() == "toolstream.v1")
    {
        for service in &file.service {
            let mut builder = tonic_build::manual::Service::builder()
                .name(service.name())
                .package(file.package());
            for method in &service.method {
                let streaming = method.server_streaming();
                let mut generated = tonic_build::manual::Method::builder()
                    .name(snake_case(method.name()))
                    .route_name(method.name())
                    .input_type(rust_type(method.input_type()));
                generated = if streaming {
                    generated
                        .output_type("crate::transport::wire::EncodedEvent")
                        .codec_path("crate::transport::wire::EncodedEventCodec")
                        .server_streaming()
                } else {
                    generated
                        .output_type(rust_type(method.output_type()))
                        .codec_path("tonic_prost::ProstCodec")
                };
                builder = builder.method(generated.build());
            }
            services.push(builder.build());
        }
    }
    tonic_build::manual::Builder::new()
        .build_client(false)
        .compile(&services);
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The full names of `messages` and of the messages nested in them.
fn collect_messages(
    scope: &str,
    messages: &[prost_types::DescriptorProto],
    names: &mut Vec<String>,
) {
    for message in messages {
        let name = format!("{scope}.{}", message.name());
        collect_messages(&name, &message.nested_type, names);
        names.push(name);
    }
}

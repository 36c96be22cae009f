//! Compiles the public contract in `proto/` with protox (pure Rust, so no system `protoc` is
//! needed) and generates the tonic client and server code from it. The encoded file descriptor
//! set is written next to the generated code for server reflection and for the canonical JSON
//! mapping: every message of the contract derives prost-reflect's `ReflectMessage`, naming its
//! descriptor in `crate::pb::DESCRIPTOR_POOL`.

use std::path::PathBuf;

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

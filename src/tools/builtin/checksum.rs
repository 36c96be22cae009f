//! `checksum`: SHA-256 (or SHA-512) of files, with progress by bytes and each file's digest as a
//! partial result as soon as it is known, confined to a root directory
//! (see [`super::confinement`] for how a file is opened: no symlink followed, one hard link only).

use std::fmt::Write as _;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, json};
use sha2::Digest;
use tokio::io::AsyncReadExt;

use super::confinement::{ConfinedFile, Confinement};
use crate::tools::native::tool_fn;
use crate::tools::{Progress, ProgressUpdate, Tool, ToolError};

/// Hash algorithms `checksum` offers.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// SHA-256 (the default).
    #[default]
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }
}

/// Arguments of `checksum`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChecksumArgs {
    /// Files to hash, relative to the server's root directory (or absolute, inside it): regular
    /// files with one link, named by a path with no symlink on it.
    #[schemars(length(min = 1, max = 10_000))]
    pub paths: Vec<String>,
    /// Hash algorithm: "sha256" (default) or "sha512".
    #[serde(default)]
    pub algorithm: Algorithm,
}

/// One hashed file in the result; the digest's key is the algorithm's name.
#[derive(Debug, Serialize)]
struct FileDigest {
    path: String,
    #[serde(flatten)]
    digest: Map<String, serde_json::Value>,
    bytes: u64,
}

/// Read size: large enough to keep system calls rare, small enough for frequent progress.
const CHUNK: usize = 256 * 1024;

/// The `checksum` tool, reading only inside `root`.
pub fn checksum(root: Confinement) -> impl Tool {
    tool_fn(
        "checksum",
        "Computes the SHA-256 (or SHA-512) of files under the server's root directory, reporting \
         progress by bytes, each file as a sub-task, and each file's entry as a partial result \
         (appended to the output \"files\") as soon as it is hashed. Returns {\"files\": [{\"path\", \"sha256\", \"bytes\"}], \"total_bytes\"}. \
         Reads regular files only, named by their own path: a symlink is not followed (even one \
         inside the root) and a file with more than one hard link is refused.",
        move |args: ChecksumArgs, progress: Progress| {
            let root = root.clone();
            async move { hash_files(&root, args, &progress).await }
        },
    )
}

/// A file to hash: the path as given and its size when it was measured.
struct File {
    path: String,
    len: u64,
}

/// Every path opened inside the root and measured, with the total size of the files. The files
/// are closed again (there may be thousands): each is opened anew, just as safely, when its turn
/// comes.
fn measure_all(root: &Confinement, paths: &[String]) -> Result<(Vec<File>, u64), ToolError> {
    let mut files = Vec::with_capacity(paths.len());
    let mut total: u64 = 0;
    for path in paths {
        let len = root.open_file(path)?.len;
        total += len;
        files.push(File {
            path: path.clone(),
            len,
        });
    }
    Ok((files, total))
}

/// Opens `path` beneath the root on a blocking thread (opening blocks on the file system).
async fn open(root: &Confinement, path: &str) -> Result<ConfinedFile, ToolError> {
    let root = root.clone();
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || root.open_file(&path))
        .await
        .map_err(|e| ToolError::Internal(format!("opening a file failed: {e}")))?
}

/// Hashes the files one after the other. Each file is a sub-task of the run, weighted by its
/// share of the bytes (an equal share when every file is empty), reporting the bytes it has
/// read; the run's own fraction is theirs rolled up, and its status names the file being read.
async fn hash_files(
    root: &Confinement,
    args: ChecksumArgs,
    progress: &Progress,
) -> Result<serde_json::Value, ToolError> {
    // Check every path before reading any, so a bad path fails the run at once, and measure the
    // files for the weights. Opening blocks on the file system: it runs on a blocking thread,
    // never on the runtime's. What is read later is what each later open finds, checked again
    // by that open: a path swapped for a symlink meanwhile fails the run then.
    let (files, total) = {
        let root = root.clone();
        let paths = args.paths.clone();
        tokio::task::spawn_blocking(move || measure_all(&root, &paths))
            .await
            .map_err(|e| ToolError::Internal(format!("checking the paths failed: {e}")))??
    };

    let count = files.len();
    let mut done: u64 = 0;
    let mut results = Vec::with_capacity(count);
    let mut buf = vec![0u8; CHUNK];
    for (index, file) in files.iter().enumerate() {
        let path = &file.path;
        let weight = if total == 0 {
            1.0 / count as f64
        } else {
            file.len as f64 / total as f64
        };
        let file_progress = progress.child(path.clone(), weight);
        report(
            progress,
            None,
            Some(format!("hashing {path} ({}/{count})", index + 1)),
            done,
            total,
        );
        let mut reader = tokio::fs::File::from_std(open(root, path).await?.file);
        let mut hasher = Hasher::new(args.algorithm);
        let mut bytes: u64 = 0;
        loop {
            let n = reader
                .read(&mut buf)
                .await
                .map_err(|e| ToolError::Failed(format!("cannot read {path:?}: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            bytes += n as u64;
            done += n as u64;
            // A file that grew since it was measured stays at 1.0 until it is read.
            let fraction = (bytes as f64 / file.len.max(1) as f64).min(1.0);
            report(&file_progress, Some(fraction), None, bytes, file.len);
        }
        file_progress.finish();
        let mut digest = Map::new();
        digest.insert(args.algorithm.name().to_owned(), json!(hasher.hex()));
        let file_digest = FileDigest {
            path: path.clone(),
            digest,
            bytes,
        };
        // Each digest goes out as soon as it is known, as the next item of the output "files"
        // (the result's list, assembled as it is made); a file's entry is far below any message
        // limit, but a refusal still fails the run rather than being lost.
        progress.partial_append("files", json!(file_digest))?;
        results.push(file_digest);
    }
    report(
        progress,
        None,
        Some(format!(
            "hashed {count} {}",
            if count == 1 { "file" } else { "files" }
        )),
        done,
        total,
    );
    Ok(json!({ "files": results, "total_bytes": done }))
}

/// Reports bytes read out of bytes to read. The run's own reports give no fraction: theirs is
/// the files' rolled up.
fn report(
    progress: &Progress,
    fraction: Option<f64>,
    status: Option<String>,
    done: u64,
    total: u64,
) {
    let mut data = Map::new();
    data.insert("bytes_done".into(), json!(done));
    data.insert("bytes_total".into(), json!(total));
    progress.update(ProgressUpdate {
        fraction,
        status,
        data,
    });
}

enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    fn hex(self) -> String {
        let digest: Vec<u8> = match self {
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
        };
        let mut out = String::with_capacity(digest.len() * 2);
        for byte in digest {
            let _ = write!(out, "{byte:02x}");
        }
        out
    }
}

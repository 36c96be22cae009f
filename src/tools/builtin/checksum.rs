//! `checksum`: SHA-256 (or SHA-512) of files, with progress by bytes, confined to a root directory.

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, json};
use sha2::Digest;
use tokio::io::AsyncReadExt;

use crate::tools::native::tool_fn;
use crate::tools::{Progress, ProgressUpdate, Tool, ToolError};

/// The directory file tools may read from. Every path is resolved (symlinks and `..` included)
/// before it is used, and a path that lands outside the root is refused.
#[derive(Debug, Clone)]
pub struct Confinement {
    root: Arc<PathBuf>,
}

impl Confinement {
    /// Confines file tools to `root`, which must be an existing directory.
    pub fn new(root: PathBuf) -> std::io::Result<Self> {
        let canonical = root.canonicalize().map_err(|e| {
            std::io::Error::new(e.kind(), format!("root directory {}: {e}", root.display()))
        })?;
        if !canonical.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("root {} is not a directory", root.display()),
            ));
        }
        Ok(Confinement {
            root: Arc::new(canonical),
        })
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves a path given by a client (relative to the root, or absolute) to a file inside the
    /// root.
    pub fn resolve_file(&self, path: &str) -> Result<PathBuf, ToolError> {
        if path.is_empty() {
            return Err(ToolError::InvalidArguments("a path is empty".into()));
        }
        let requested = Path::new(path);
        let joined = if requested.is_absolute() {
            requested.to_path_buf()
        } else {
            self.root.join(requested)
        };
        let outside = || {
            ToolError::PermissionDenied(format!(
                "{path:?} is outside the root directory {}",
                self.root.display()
            ))
        };
        match joined.canonicalize() {
            Ok(canonical) => {
                if !canonical.starts_with(self.root.as_path()) {
                    return Err(outside());
                }
                if !canonical.is_file() {
                    return Err(ToolError::InvalidArguments(format!(
                        "{path:?} is not a regular file"
                    )));
                }
                Ok(canonical)
            }
            // A path that does not exist may still point outside the root; say so first.
            Err(_) if !lexically_normal(&joined).starts_with(self.root.as_path()) => Err(outside()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ToolError::NotFound(format!("no such file: {path:?}")))
            }
            Err(e) => Err(ToolError::Failed(format!("cannot open {path:?}: {e}"))),
        }
    }
}

/// Removes `.` and resolves `..` without touching the file system.
fn lexically_normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

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
    /// Files to hash, relative to the server's root directory (or absolute, inside it).
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
         progress by bytes, each file as a sub-task. Returns {\"files\": [{\"path\", \"sha256\", \"bytes\"}], \"total_bytes\"}.",
        move |args: ChecksumArgs, progress: Progress| {
            let root = root.clone();
            async move { hash_files(&root, args, &progress).await }
        },
    )
}

/// A file to hash: the path as given, where it resolved, and its size.
struct File {
    path: String,
    resolved: PathBuf,
    len: u64,
}

/// Every path resolved inside the root, with the total size of the files.
fn resolve_all(root: &Confinement, paths: &[String]) -> Result<(Vec<File>, u64), ToolError> {
    let mut files = Vec::with_capacity(paths.len());
    let mut total: u64 = 0;
    for path in paths {
        let resolved = root.resolve_file(path)?;
        let len = std::fs::metadata(&resolved)
            .map_err(|e| ToolError::Failed(format!("cannot read {path:?}: {e}")))?
            .len();
        total += len;
        files.push(File {
            path: path.clone(),
            resolved,
            len,
        });
    }
    Ok((files, total))
}

/// Hashes the files one after the other. Each file is a sub-task of the run, weighted by its
/// share of the bytes (an equal share when every file is empty), reporting the bytes it has
/// read; the run's own fraction is theirs rolled up, and its status names the file being read.
async fn hash_files(
    root: &Confinement,
    args: ChecksumArgs,
    progress: &Progress,
) -> Result<serde_json::Value, ToolError> {
    // Check every path before reading any, so a bad path fails the run at once. Resolving
    // (canonicalize, metadata) blocks on the file system: it runs on a blocking thread, never on
    // the runtime's.
    let (files, total) = {
        let root = root.clone();
        let paths = args.paths.clone();
        tokio::task::spawn_blocking(move || resolve_all(&root, &paths))
            .await
            .map_err(|e| ToolError::Internal(format!("resolving the paths failed: {e}")))??
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
        let mut reader = tokio::fs::File::open(&file.resolved)
            .await
            .map_err(|e| ToolError::Failed(format!("cannot open {path:?}: {e}")))?;
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
        results.push(FileDigest {
            path: path.clone(),
            digest,
            bytes,
        });
    }
    report(
        progress,
        None,
        Some(format!("hashed {count} files")),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_the_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("inside")).unwrap();
        std::fs::write(dir.path().join("inside/a.txt"), b"a").unwrap();
        std::fs::write(dir.path().join("secret.txt"), b"s").unwrap();
        let root = Confinement::new(dir.path().join("inside")).unwrap();

        assert!(root.resolve_file("a.txt").is_ok());
        for bad in ["../secret.txt", "../missing.txt", "/etc/passwd"] {
            assert!(
                matches!(root.resolve_file(bad), Err(ToolError::PermissionDenied(_))),
                "{bad} should be refused"
            );
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(
                dir.path().join("secret.txt"),
                dir.path().join("inside/link"),
            )
            .unwrap();
            assert!(matches!(
                root.resolve_file("link"),
                Err(ToolError::PermissionDenied(_))
            ));
        }
        assert!(matches!(
            root.resolve_file("missing.txt"),
            Err(ToolError::NotFound(_))
        ));
    }
}

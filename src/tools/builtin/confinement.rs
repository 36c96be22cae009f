//! The root directory file tools may read from, and the one way they open a file in it.
//!
//! A path is never checked first and opened later by name: between the two, a file could be
//! swapped for a symlink to anything the server may read. Instead the check and the open are one
//! system call, made relative to a handle on the root held since start-up:
//!
//! - `openat2(root, path, O_NOFOLLOW…, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (Linux 5.6 and
//!   later): the kernel refuses any symlink on the way (ELOOP) and any step out of the root
//!   (EXDEV) while it resolves the path;
//! - where `openat2` is missing (older kernels, or a seccomp filter that refuses it), the same
//!   walk by hand ([`walk_beneath`]): one `openat(…, O_NOFOLLOW | O_DIRECTORY)` per directory,
//!   each from the handle of the one before, then `openat(…, O_NOFOLLOW)` for the file.
//!
//! Either way no symlink is followed, not even one that points inside the root, and `..` is
//! resolved by name before anything is opened (a path that climbs above the root is refused without
//! touching the file system). What was opened is then checked on the handle itself (`fstat`): it
//! must be a regular file with a single link. A hard link is a second name for the same file, and
//! nothing on the file tells which of its names is inside the root: a link made inside the root to
//! a file outside it would otherwise be read. So a file with more than one link is refused (copy
//! it into the root to hash it).

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::tools::ToolError;

/// How a file is opened: read only, no symlink followed, and no blocking on a FIFO or a device
/// before `fstat` has refused it.
const FILE_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NOCTTY)
    .union(OFlags::NONBLOCK);

/// How [`walk_beneath`] opens each directory on the way: a symlink in its place fails (ENOTDIR).
const DIRECTORY_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::DIRECTORY);

/// `openat2` answers EAGAIN when a rename elsewhere raced its lookup; after this many tries the
/// walk by hand (which has no such retry) is used.
const OPENAT2_ATTEMPTS: usize = 8;

/// Set once `openat2` answered ENOSYS: the kernel has none, so it is not tried again.
static OPENAT2_MISSING: AtomicBool = AtomicBool::new(false);

/// The directory file tools may read from, and a handle on it held for the server's life (so a
/// root renamed or replaced later does not move where tools read).
#[derive(Debug, Clone)]
pub struct Confinement {
    root: Arc<Root>,
}

#[derive(Debug)]
struct Root {
    /// The canonical path: absolute paths from clients must start with it.
    path: PathBuf,
    /// An `O_PATH` handle on the directory, the start of every open.
    dir: OwnedFd,
}

/// A regular file opened beneath the root.
#[derive(Debug)]
pub struct ConfinedFile {
    /// Open for reading.
    pub file: File,
    /// Its size when it was opened.
    pub len: u64,
}

impl Confinement {
    /// Confines file tools to `root`, which must be an existing directory.
    pub fn new(root: PathBuf) -> io::Result<Self> {
        let canonical = root.canonicalize().map_err(|e| {
            io::Error::new(e.kind(), format!("root directory {}: {e}", root.display()))
        })?;
        let dir = rustix::fs::open(
            &canonical,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::NOTDIR => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("root {} is not a directory", root.display()),
            ),
            e => io::Error::new(
                io::Error::from(e).kind(),
                format!("root directory {}: {e}", root.display()),
            ),
        })?;
        Ok(Confinement {
            root: Arc::new(Root {
                path: canonical,
                dir,
            }),
        })
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root.path
    }

    /// Opens the regular file `path` names (relative to the root, or absolute and inside it) for
    /// reading, refusing any path that leaves the root or goes through a symlink, and any file with
    /// more than one hard link. Blocks on the file system: call it from a blocking thread.
    pub fn open_file(&self, path: &str) -> Result<ConfinedFile, ToolError> {
        let relative = self.relative(path)?;
        if relative.as_os_str().is_empty() {
            return Err(ToolError::InvalidArguments(format!(
                "{path:?} is the root directory, not a regular file"
            )));
        }
        let fd = open_beneath(self.root.dir.as_fd(), &relative)
            .map_err(|errno| self.open_error(path, errno))?;
        let stat = rustix::fs::fstat(&fd)
            .map_err(|e| ToolError::Failed(format!("cannot read {path:?}: {e}")))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(ToolError::InvalidArguments(format!(
                "{path:?} is not a regular file"
            )));
        }
        if stat.st_nlink > 1 {
            return Err(ToolError::PermissionDenied(format!(
                "{path:?} has {} hard links, and file tools read only files with one: another \
                 link could be outside the root directory {} (copy the file to read it)",
                stat.st_nlink,
                self.root.path.display()
            )));
        }
        Ok(ConfinedFile {
            file: File::from(fd),
            len: u64::try_from(stat.st_size).unwrap_or(0),
        })
    }

    /// The path below the root that `path` names, with `.` and `..` resolved by name; an error if
    /// it is absolute outside the root or climbs above it.
    fn relative(&self, path: &str) -> Result<PathBuf, ToolError> {
        if path.is_empty() {
            return Err(ToolError::InvalidArguments("a path is empty".into()));
        }
        let requested = Path::new(path);
        let inside = if requested.is_absolute() {
            requested
                .strip_prefix(&self.root.path)
                .map_err(|_| self.outside(path))?
        } else {
            requested
        };
        let mut relative = PathBuf::new();
        for component in inside.components() {
            match component {
                Component::CurDir => {}
                Component::ParentDir => {
                    if !relative.pop() {
                        return Err(self.outside(path));
                    }
                }
                Component::Normal(name) => relative.push(name),
                Component::RootDir | Component::Prefix(_) => return Err(self.outside(path)),
            }
        }
        Ok(relative)
    }

    fn outside(&self, path: &str) -> ToolError {
        ToolError::PermissionDenied(format!(
            "{path:?} is outside the root directory {}",
            self.root.path.display()
        ))
    }

    fn open_error(&self, path: &str, errno: Errno) -> ToolError {
        match errno {
            Errno::LOOP => ToolError::PermissionDenied(format!(
                "{path:?} is or goes through a symbolic link, and file tools follow none (a link \
                 could lead outside the root directory {}): name the file itself",
                self.root.path.display()
            )),
            Errno::XDEV => self.outside(path),
            Errno::NOENT | Errno::NOTDIR => ToolError::NotFound(format!("no such file: {path:?}")),
            errno => ToolError::Failed(format!("cannot open {path:?}: {errno}")),
        }
    }
}

/// Opens `relative` (plain names only) beneath `root` with no symlink followed: `openat2` where
/// the kernel has it, else [`walk_beneath`].
fn open_beneath(root: BorrowedFd<'_>, relative: &Path) -> rustix::io::Result<OwnedFd> {
    if !OPENAT2_MISSING.load(Ordering::Relaxed) {
        for _ in 0..OPENAT2_ATTEMPTS {
            match rustix::fs::openat2(
                root,
                relative,
                FILE_FLAGS,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
            ) {
                Err(Errno::AGAIN) => continue,
                Err(Errno::NOSYS) => {
                    OPENAT2_MISSING.store(true, Ordering::Relaxed);
                    break;
                }
                // A seccomp filter may refuse the call itself; the walk needs only `openat`.
                Err(Errno::PERM) => break,
                opened => return opened,
            }
        }
    }
    walk_beneath(root, relative)
}

/// Opens `relative` beneath `root` one name at a time: each directory with `O_NOFOLLOW |
/// O_DIRECTORY` from the handle of the one before, the file with `O_NOFOLLOW`. A symlink anywhere
/// fails with ELOOP; a component that is not a plain name (`..`, `/`) with EXDEV, as `openat2`
/// with RESOLVE_BENEATH would.
pub(super) fn walk_beneath(root: BorrowedFd<'_>, relative: &Path) -> rustix::io::Result<OwnedFd> {
    let names = relative
        .components()
        .map(|component| match component {
            Component::Normal(name) => Ok(name),
            _ => Err(Errno::XDEV),
        })
        .collect::<Result<Vec<&OsStr>, Errno>>()?;
    let Some((file, directories)) = names.split_last() else {
        return Err(Errno::NOENT);
    };
    let mut directory: Option<OwnedFd> = None;
    for name in directories {
        let parent = directory.as_ref().map_or(root, AsFd::as_fd);
        directory = Some(
            match rustix::fs::openat(parent, *name, DIRECTORY_FLAGS, Mode::empty()) {
                // A symlink in a directory's place is refused as not a directory; say what it is
                // (the answer only names the error: nothing is opened through it).
                Err(Errno::NOTDIR) if is_symlink(parent, name) => Err(Errno::LOOP),
                opened => opened,
            }?,
        );
    }
    let parent = directory.as_ref().map_or(root, AsFd::as_fd);
    rustix::fs::openat(parent, *file, FILE_FLAGS, Mode::empty())
}

/// Whether `name` in `directory` is a symlink itself.
fn is_symlink(directory: BorrowedFd<'_>, name: &OsStr) -> bool {
    rustix::fs::statat(directory, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode) == FileType::Symlink)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::fs::symlink;

    use super::*;

    /// A root `inside/` (with `a.txt`, `sub/b.txt`, symlinks to a file and a directory inside it,
    /// and one to `secret.txt` beside it), in a temporary directory.
    fn layout() -> (tempfile::TempDir, Confinement) {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("inside");
        std::fs::create_dir_all(inside.join("sub")).unwrap();
        std::fs::write(inside.join("a.txt"), b"a").unwrap();
        std::fs::write(inside.join("sub/b.txt"), b"b").unwrap();
        std::fs::write(dir.path().join("secret.txt"), b"s").unwrap();
        symlink(dir.path().join("secret.txt"), inside.join("out")).unwrap();
        symlink("a.txt", inside.join("in")).unwrap();
        symlink("sub", inside.join("sublink")).unwrap();
        let root = Confinement::new(inside).unwrap();
        (dir, root)
    }

    fn contents(opened: OwnedFd) -> String {
        let mut text = String::new();
        File::from(opened).read_to_string(&mut text).unwrap();
        text
    }

    #[test]
    fn paths_outside_the_root_are_refused() {
        let (dir, root) = layout();
        assert!(root.open_file("a.txt").is_ok());
        let absolute = dir.path().join("inside/sub/b.txt");
        assert!(root.open_file(absolute.to_str().unwrap()).is_ok());
        assert!(root.open_file("sub/../a.txt").is_ok());
        for bad in [
            "../secret.txt",
            "../missing.txt",
            "/etc/passwd",
            "sub/../../x",
        ] {
            assert!(
                matches!(root.open_file(bad), Err(ToolError::PermissionDenied(_))),
                "{bad} should be refused"
            );
        }
        assert!(matches!(
            root.open_file("missing.txt"),
            Err(ToolError::NotFound(_))
        ));
        assert!(matches!(
            root.open_file("sub"),
            Err(ToolError::InvalidArguments(_))
        ));
    }

    #[test]
    fn symlinks_are_refused_even_inside_the_root() {
        let (_dir, root) = layout();
        for link in ["out", "in", "sublink/b.txt"] {
            assert_denied(&root, link, "symbolic link");
        }
    }

    #[test]
    fn files_with_more_than_one_hard_link_are_refused() {
        let (dir, root) = layout();
        std::fs::hard_link(
            dir.path().join("secret.txt"),
            dir.path().join("inside/hard.txt"),
        )
        .unwrap();
        assert_denied(&root, "hard.txt", "2 hard links");
    }

    fn assert_denied(root: &Confinement, path: &str, why: &str) {
        match root.open_file(path) {
            Err(ToolError::PermissionDenied(message)) => {
                assert!(message.contains(why), "{path}: {message}")
            }
            other => panic!("{path} should be refused: {other:?}"),
        }
    }

    /// The walk used where `openat2` is missing gives what `openat2` gives, case by case.
    #[test]
    fn the_walk_by_hand_opens_and_refuses_like_openat2() {
        let (_dir, root) = layout();
        let fd = root.root.dir.as_fd();
        let walked = |path: &str| walk_beneath(fd, Path::new(path));
        assert_eq!(contents(walked("a.txt").unwrap()), "a");
        assert_eq!(contents(walked("sub/b.txt").unwrap()), "b");
        for (path, errno) in [
            ("out", Errno::LOOP),
            ("in", Errno::LOOP),
            ("sublink/b.txt", Errno::LOOP),
            ("missing.txt", Errno::NOENT),
            ("a.txt/x", Errno::NOTDIR),
            ("../secret.txt", Errno::XDEV),
            ("", Errno::NOENT),
        ] {
            assert_eq!(walked(path).map(drop), Err(errno), "walk {path:?}");
            if path.is_empty() {
                continue;
            }
            let kernel = rustix::fs::openat2(
                fd,
                path,
                FILE_FLAGS,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
            );
            match kernel {
                Err(Errno::NOSYS | Errno::PERM) => {} // no openat2 here to compare with
                kernel => assert_eq!(kernel.map(drop), Err(errno), "openat2 {path:?}"),
            }
        }
    }
}

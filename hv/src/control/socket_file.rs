//! The control socket's file: owner-only from its first moment, a stale one replaced,
//! anything else left alone, and removed when hv is done with it.
//!
//! Whoever can connect to the socket controls the VM, so the file must never be open
//! to others, not even for an instant. `bind(2)` creates it with mode `0777 & ~umask`,
//! and changing the umask around it would change it for every thread of hv at once (a
//! trace file created meanwhile would get it too). So hv **binds inside a private
//! directory and then links the socket to its name**:
//!
//! ```text
//! mkdir  DIR/.hv-control-PID-N          mode 0700: nobody else can even reach what is inside
//! bind   DIR/.hv-control-PID-N/s        mode whatever the umask gives; unreachable anyway
//! chmod  DIR/.hv-control-PID-N/s 0600
//! link   DIR/.hv-control-PID-N/s → PATH fails if PATH exists: never replaces a file
//! unlink DIR/.hv-control-PID-N/s, rmdir DIR/.hv-control-PID-N
//! ```
//!
//! A Unix socket is found through its inode, so the second name works like the first.
//! `link` either creates PATH or fails, so a file that appears at PATH after hv looked
//! is refused too, never overwritten.
//!
//! What may already be at PATH: nothing (fine); a socket nobody listens on, left by an
//! hv that was killed (replaced: connecting to it is refused); a socket something
//! listens on, or anything that is not a socket (refused, with an error naming it).
//! At the end hv removes PATH only if it is still the socket it created (same inode).

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Longest path a Unix socket address holds (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;
/// Owner-only: read and write (connecting needs write permission).
const SOCKET_MODE: u32 = 0o600;
/// Owner-only directory.
const PRIVATE_DIR_MODE: u32 = 0o700;

/// Why the control socket could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SocketFileError {
    /// Something that is not a socket is at the path.
    #[error("{path} exists and is {what}, not a stale control socket: hv will not replace it")]
    NotASocket {
        /// The path.
        path: PathBuf,
        /// What is there.
        what: &'static str,
    },
    /// A live socket is at the path.
    #[error("{path} is in use: a program is listening on it (another hv?)")]
    InUse {
        /// The path.
        path: PathBuf,
    },
    /// The path is too long for a Unix socket.
    #[error("{path} is too long for a Unix socket ({len} bytes; at most {MAX_SOCKET_PATH}, with hv's temporary name in its directory)")]
    TooLong {
        /// The path.
        path: PathBuf,
        /// Its length, or the temporary name's.
        len: usize,
    },
    /// The path names no file (it ends in `/` or `..`).
    #[error("{0} does not name a file")]
    NoFileName(PathBuf),
    /// A system call failed.
    #[error("cannot {what} {path}: {source}")]
    Io {
        /// What hv tried.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
}

fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SocketFileError + 'a {
    move |source| SocketFileError::Io { what, path: path.to_path_buf(), source }
}

/// The control socket's file, removed on drop if it is still the one hv made.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    /// Device and inode of the socket hv created.
    id: (u64, u64),
}

/// The private directory and the socket's first name in it, removed on drop (whether
/// creating the socket worked or not).
struct PrivateDir {
    dir: PathBuf,
    socket: PathBuf,
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

impl SocketFile {
    /// Creates the socket at `path` (see the module comment) and listens on it.
    pub fn create(path: &Path) -> Result<(UnixListener, SocketFile), SocketFileError> {
        let len = path.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(SocketFileError::TooLong { path: path.to_path_buf(), len });
        }
        if path.file_name().is_none() {
            return Err(SocketFileError::NoFileName(path.to_path_buf()));
        }
        remove_if_stale(path)?;

        let private = private_dir(path)?;
        let listener = UnixListener::bind(&private.socket).map_err(io_error("create a socket at", &private.socket))?;
        std::fs::set_permissions(&private.socket, std::fs::Permissions::from_mode(SOCKET_MODE))
            .map_err(io_error("set the mode of", &private.socket))?;
        let meta = std::fs::symlink_metadata(&private.socket).map_err(io_error("look at", &private.socket))?;
        std::fs::hard_link(&private.socket, path).map_err(|source| match source.kind() {
            // Something took the name after `remove_if_stale` looked.
            io::ErrorKind::AlreadyExists => SocketFileError::NotASocket { path: path.to_path_buf(), what: "a file created meanwhile" },
            _ => SocketFileError::Io { what: "give the socket its name", path: path.to_path_buf(), source },
        })?;
        Ok((listener, SocketFile { path: path.to_path_buf(), id: (meta.dev(), meta.ino()) }))
    }

    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file now if it is still the socket hv created (someone may have
    /// replaced it meanwhile); dropping does the same.
    pub fn remove(&self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.id {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Makes the private directory next to `path` (same file system, so `link` works).
fn private_dir(path: &Path) -> Result<PrivateDir, SocketFileError> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = parent.join(format!(".hv-control-{}-{n}", std::process::id()));
    let socket = dir.join("s");
    let len = socket.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(SocketFileError::TooLong { path: path.to_path_buf(), len });
    }
    std::fs::DirBuilder::new().mode(PRIVATE_DIR_MODE).create(&dir).map_err(io_error("create the directory", &dir))?;
    let private = PrivateDir { dir, socket };
    // The umask can only have removed bits from 0700; put the owner's back in case it
    // removed those too.
    std::fs::set_permissions(&private.dir, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))
        .map_err(io_error("set the mode of", &private.dir))?;
    Ok(private)
}

/// Removes a stale socket at `path`; refuses anything else that is there.
fn remove_if_stale(path: &Path) -> Result<(), SocketFileError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(SocketFileError::Io { what: "look at", path: path.to_path_buf(), source }),
    };
    let kind = meta.file_type();
    if !kind.is_socket() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_symlink() {
            "a symbolic link"
        } else if kind.is_file() {
            "a regular file"
        } else {
            "a special file"
        };
        return Err(SocketFileError::NotASocket { path: path.to_path_buf(), what });
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(SocketFileError::InUse { path: path.to_path_buf() }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(SocketFileError::Io { what: "remove the stale socket", path: path.to_path_buf(), source }),
        },
        Err(source) => Err(SocketFileError::Io { what: "tell whether a program listens on", path: path.to_path_buf(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hv-sockfile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        dir
    }

    #[test]
    fn the_socket_is_owner_only_and_removed_at_the_end() {
        let dir = temp("mode");
        let path = dir.join("ctl.sock");
        let (listener, file) = SocketFile::create(&path).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, SOCKET_MODE);
        UnixStream::connect(&path).expect("the linked name reaches the listener");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "the private directory is gone");
        drop(file);
        drop(listener);
        assert!(!path.exists());
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let dir = temp("stale");
        let path = dir.join("ctl.sock");
        drop(UnixListener::bind(&path).unwrap()); // leaves a socket file nobody listens on
        let (_listener, _file) = SocketFile::create(&path).expect("stale socket replaced");
        let again = SocketFile::create(&path).unwrap_err();
        assert!(matches!(again, SocketFileError::InUse { .. }), "{again}");
        drop(_file);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hostile_files_at_the_path_are_left_alone() {
        let dir = temp("files");
        let file = dir.join("a-file");
        std::fs::write(&file, b"precious").unwrap();
        let e = SocketFile::create(&file).unwrap_err();
        assert!(e.to_string().contains("is a regular file"), "{e}");
        assert_eq!(std::fs::read(&file).unwrap(), b"precious");
        let link = dir.join("a-link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(SocketFile::create(&link).unwrap_err().to_string().contains("symbolic link"));
        assert!(SocketFile::create(&dir).unwrap_err().to_string().contains("directory"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hostile_path_too_long() {
        let long = PathBuf::from(format!("/tmp/{}", "x".repeat(200)));
        assert!(matches!(SocketFile::create(&long), Err(SocketFileError::TooLong { .. })));
    }

    #[test]
    fn a_file_removed_by_someone_else_is_not_our_business() {
        let dir = temp("replaced");
        let path = dir.join("ctl.sock");
        let (_listener, file) = SocketFile::create(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"someone else's").unwrap();
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), b"someone else's");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! From a batch of (path, key) pairs to the work an upload needs: every
//! file stat'ed once, every key checked, single PUT or multipart decided,
//! part sizes chosen.
//!
//! Everything that can be known to be wrong before a byte moves is found
//! here — a missing file, a directory, an unreadable file, an empty, invalid,
//! over-long or duplicate key, a file too large for S3 — so a bad batch fails
//! before it costs anything, with an error that names the file or the key.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{File, FileType, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::config::{Config, MAX_KEY_LEN, MAX_PARTS, MAX_PART_SIZE};

/// The largest object S3 stores.
pub(crate) const MAX_OBJECT_SIZE: u64 = 5 << 40;
use crate::error::{Error, Result};

/// One file of a planned batch.
#[derive(Debug, Clone)]
pub(crate) struct FilePlan {
    pub path: PathBuf,
    pub key: String,
    pub size: u64,
    pub mtime: Option<SystemTime>,
    /// Whether the file goes up in parts; a single PUT otherwise.
    pub multipart: bool,
    /// Bytes per part (every part but the last); the file size for a single PUT.
    pub part_size: u64,
    /// Number of parts (1 for a single PUT).
    pub parts: u32,
    /// A download's source: the object it fetches (its `path` is the
    /// destination). `None` for an upload.
    pub object: Option<std::sync::Arc<crate::engine::RemoteObject>>,
}

impl FilePlan {
    /// Byte range of 1-based part `n`.
    pub fn part_range(&self, n: u32) -> (u64, u64) {
        let start = (n as u64 - 1) * self.part_size;
        let len = self.part_size.min(self.size - start);
        (start, len)
    }
}

/// Checks a key the way S3 will: not empty, at most 1024 bytes of UTF-8, no
/// control characters (S3 cannot list them back in XML 1.0), and no `.` or
/// `..` path segment (HTTP clients and servers normalise those away, so the
/// object would land under another key).
pub(crate) fn check_key(key: &str) -> Result<()> {
    let bad = |why: &str| Error::input(format!("invalid key '{}': {why}", key.escape_debug()));
    if key.is_empty() {
        return Err(Error::input("invalid key '': a key must not be empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(bad(&format!(
            "{} bytes long, S3 allows at most {MAX_KEY_LEN}",
            key.len()
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(bad("contains a control character"));
    }
    if key.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(bad("contains a '.' or '..' path segment"));
    }
    Ok(())
}

/// The part size for a file: the configured size, grown to a whole MiB that
/// keeps the file within 10,000 parts.
pub(crate) fn part_size_for(size: u64, configured: u64) -> Option<u64> {
    const MIB: u64 = 1 << 20;
    if size > MAX_OBJECT_SIZE {
        return None;
    }
    let needed = size.div_ceil(MAX_PARTS as u64).div_ceil(MIB) * MIB;
    let part = configured.max(needed);
    (part <= MAX_PART_SIZE).then_some(part)
}

/// Validates and plans a batch. `files` are (path, key) pairs in upload order.
pub(crate) fn plan(files: &[(PathBuf, String)], cfg: &Config) -> Result<Vec<FilePlan>> {
    if files.is_empty() {
        return Err(Error::input("the batch is empty: add at least one file"));
    }
    let mut seen: HashMap<&str, &Path> = HashMap::with_capacity(files.len());
    let mut plans = Vec::with_capacity(files.len());
    for (path, key) in files {
        check_key(key).map_err(|e| e.with_path(path.clone()))?;
        if let Some(first) = seen.insert(key.as_str(), path.as_path()) {
            return Err(Error::input(format!(
                "duplicate key '{key}': both {} and {} would upload to it",
                first.display(),
                path.display()
            ))
            .with_key(key.clone()));
        }
        let meta = std::fs::metadata(path).map_err(|e| Error::local_io("read", path, &e))?;
        if meta.is_dir() {
            return Err(
                Error::input(format!("{} is a directory, not a file", path.display()))
                    .with_path(path.clone()),
            );
        }
        if !meta.is_file() {
            return Err(not_regular(path, meta.file_type()));
        }
        check_readable(path)?;
        let size = meta.len();
        if size == 0 {
            check_really_empty(path)?;
        }
        let multipart = size > 0 && size >= cfg.multipart_threshold;
        let (part_size, parts) = if multipart {
            let part = part_size_for(size, cfg.part_size).ok_or_else(|| {
                Error::input(format!(
                    "{} is {size} bytes: larger than S3's 5 TiB object limit",
                    path.display()
                ))
                .with_path(path.clone())
            })?;
            (part, size.div_ceil(part) as u32)
        } else {
            (size, 1)
        };
        plans.push(FilePlan {
            path: path.clone(),
            key: key.clone(),
            size,
            mtime: meta.modified().ok(),
            multipart,
            part_size,
            parts,
            object: None,
        });
    }
    Ok(plans)
}

/// What a file that is not a regular one is, for messages.
pub(crate) fn kind_name(kind: FileType) -> &'static str {
    if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else {
        "a special file"
    }
}

fn not_regular(path: &Path, kind: FileType) -> Error {
    Error::input(format!(
        "{} is {}, not a regular file",
        path.display(),
        kind_name(kind)
    ))
    .with_path(path)
}

/// Opens a source file for reading without ever blocking, and only if it is
/// a regular file.
///
/// `O_NONBLOCK` makes the open of a FIFO return at once instead of waiting
/// for a writer (which no stop, stall timer or signal could interrupt), and
/// of a device without waiting for carrier; `O_NOCTTY` keeps a terminal from
/// becoming the host's controlling one. The descriptor is then checked with
/// fstat, which is what it really is whatever the path said at planning
/// time, and `O_NONBLOCK` is cleared: reads of a regular file do not heed it,
/// but nothing later should inherit the surprise.
pub(crate) fn open_regular(path: &Path) -> Result<(File, Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::local_io("open", path, &e))?;
    let meta = file
        .metadata()
        .map_err(|e| Error::local_io("stat", path, &e))?;
    if !meta.is_file() {
        return Err(not_regular(path, meta.file_type()));
    }
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    let cleared = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) == 0
    };
    if !cleared {
        let err = std::io::Error::last_os_error();
        return Err(Error::local_io("open", path, &err));
    }
    Ok((file, meta))
}

/// A file that says it is empty must read empty. Files of pseudo
/// filesystems (/proc, /sys) report a size of 0 and generate their
/// content when read: uploading them by their size would store an empty
/// object and report success.
fn check_really_empty(path: &Path) -> Result<()> {
    let (mut file, _) = open_regular(path)?;
    let mut probe = [0u8; 1];
    let got = file
        .read(&mut probe)
        .map_err(|e| Error::local_io("read", path, &e))?;
    if got > 0 {
        return Err(Error::input(format!(
            "{} reports a size of 0 bytes but has content (a file of a pseudo \
             filesystem such as /proc or /sys?): copy it to a regular file to upload it",
            path.display()
        ))
        .with_path(path));
    }
    Ok(())
}

/// Whether this process may read `path`, without opening it (the open-file
/// budget applies to the upload, and a stat-only check keeps validation
/// cheap for thousands of files).
fn check_readable(path: &Path) -> Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::input(format!("{} contains a NUL byte", path.display())))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::access(c.as_ptr(), libc::R_OK) } != 0 {
        let err = std::io::Error::last_os_error();
        return Err(Error::local_io("read", path, &err));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn part_size_grows_to_stay_within_ten_thousand_parts() {
        let mib = 1 << 20;
        assert_eq!(part_size_for(100 * mib, 8 * mib), Some(8 * mib));
        // 1 TiB at 8 MiB would be 131,072 parts.
        let tib = 1u64 << 40;
        let p = part_size_for(tib, 8 * mib).unwrap();
        assert!(tib.div_ceil(p) <= 10_000, "{p}");
        assert_eq!(p % mib, 0);
        assert_eq!(part_size_for(6 * tib, 8 * mib), None);
    }

    #[test]
    fn keys_are_checked() {
        assert!(check_key("a/b c+d.txt").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key(&"k".repeat(1025))
            .unwrap_err()
            .to_string()
            .contains("1025 bytes"));
        assert!(check_key(&"é".repeat(512)).is_ok());
        assert!(check_key(&"é".repeat(513)).is_err());
        assert!(check_key("a\nb").is_err());
        assert!(check_key("a/../b").is_err());
        assert!(check_key("./b").is_err());
        assert!(check_key("a..b/.c").is_ok());
    }

    #[test]
    fn plan_splits_and_rejects() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        let big = dir.path().join("big");
        let empty = dir.path().join("empty");
        std::fs::write(&small, vec![1u8; 100]).unwrap();
        std::fs::write(&big, vec![2u8; 11 << 20]).unwrap();
        std::fs::write(&empty, b"").unwrap();
        let cfg = Config::new().part_size(5 << 20).multipart_threshold(100);
        let p = plan(
            &[
                (small.clone(), "s".into()),
                (big.clone(), "b".into()),
                (empty.clone(), "e".into()),
            ],
            &cfg,
        )
        .unwrap();
        assert!(p[0].multipart, "exactly at the threshold goes in parts");
        assert_eq!(p[0].parts, 1);
        assert!(p[1].multipart);
        assert_eq!(p[1].parts, 3);
        assert_eq!(p[1].part_range(3), (10 << 20, 1 << 20));
        assert!(!p[2].multipart, "an empty file is one empty PUT");

        let dup = plan(
            &[(small.clone(), "k".into()), (big.clone(), "k".into())],
            &cfg,
        );
        let e = dup.unwrap_err().to_string();
        assert!(
            e.contains("duplicate key 'k'") && e.contains("small") && e.contains("big"),
            "{e}"
        );
        let e = plan(&[(dir.path().to_path_buf(), "d".into())], &cfg).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        let missing = dir.path().join("missing");
        let e = plan(&[(missing, "m".into())], &cfg).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LocalIo);
        assert!(e.to_string().contains("no such file"), "{e}");
        assert!(plan(&[], &cfg).unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn special_files_are_refused_by_what_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let cfg = Config::new();
        let e = plan(&[(fifo.clone(), "f".into())], &cfg).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{} is a FIFO, not a regular file", fifo.display())
        );
        // Opening never waits for a writer, and says the same.
        let e = open_regular(&fifo).unwrap_err();
        assert!(
            e.to_string().contains("is a FIFO, not a regular file"),
            "{e}"
        );
        let e = open_regular(Path::new("/dev/null")).unwrap_err();
        assert!(e.to_string().contains("is a character device"), "{e}");
    }

    #[test]
    fn a_pseudo_file_that_says_empty_but_is_not_is_refused() {
        let status = PathBuf::from("/proc/self/status");
        if std::fs::metadata(&status).ok().map(|m| m.len()) != Some(0) {
            return; // no procfs here
        }
        let e = plan(&[(status, "s".into())], &Config::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(
            e.to_string()
                .contains("/proc/self/status reports a size of 0 bytes but has content"),
            "{e}"
        );
    }
}

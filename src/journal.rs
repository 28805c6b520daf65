//! The durable record of a job, for pause and resume after a crash.
//!
//! A journal is an append-only text file, one record per line:
//! `<fields separated by tabs>\t<crc32c of the fields, hex>\n`. Paths and
//! keys are percent-encoded (so any byte, tab and newline included, is
//! safe), and a line's checksum tells a torn last write from a whole one.
//!
//! ```text
//! H  batchput-journal 1 <created unix ms> <bucket> [<endpoint>]
//! F  <idx> <size> <mtime ns|-> <multipart 0|1> <part size> <parts> <path> <key>
//! G  <idx> <size> <part size> <parts> <split> <etag> <path> <key>
//!                                  split: 0 ranges, 1 by part number, 2 ranges
//!                                  along the guessed part size
//!                                  a download: object <key> (as planned) to <path>
//! B  <files>                       the batch is fully recorded
//! N  <idx> <size> <mtime ns|-> <multipart> <part size> <parts>
//!                                  file idx changed and was planned anew
//! I  <idx>                         about to create an upload for file idx
//! U  <idx> <upload id>             the upload exists
//! P  <idx> <part> <etag> <md5|-> <crc32c|->   a part was acknowledged
//! D  <idx> <etag>                  the file is a complete object
//! X  <idx> <upload id>             the upload was aborted
//! R  <unix ms>                     a resume began
//! E  <succeeded|failed|stopped|paused>
//! ```
//!
//! ## Ordering and syncs
//! The batch (H, F, B) is synced before the job starts. `I` is synced
//! before CreateMultipartUpload is sent, and `U` before the first part of
//! that upload is sent: after a crash, resume knows every upload that may
//! exist. `D` of a multipart file is synced at once (there is one per big
//! file). Everything else — `P`, and `D` of small files — is group-committed:
//! written every coordinator round and synced at most every
//! [`SYNC_EVERY`], so 2,000 small files cost a handful of fsyncs, not 2,000.
//! A record lost that way costs nothing but a check: resume asks the server
//! (ListParts, HeadObject), which is the truth.
//!
//! ## A system file
//! Source paths are recorded absolute and canonical, so a journal resumes
//! from any working directory, and from another host where the same paths
//! hold the same files. The journal is created with `O_CREAT|O_EXCL|
//! O_NOFOLLOW`, mode 0600: an existing file or a symbolic link at its path is
//! refused, never followed or truncated. On resume nothing in it is trusted:
//! every record is checked (keys as a batch's keys are, part counts and
//! sizes against each other and S3's limits, part numbers in range) before
//! anything is sized by it, and a bad record is an error naming its line.
//!
//! ## Locking
//! A journal is locked (an fcntl write lock, and a registry for this
//! process, since fcntl locks do not exclude threads of the lock's own
//! process) for as long as a job uses it. A second user gets
//! [`JournalLocked`](crate::ErrorKind::JournalLocked), "in use by pid N".

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::error::{Error, ErrorKind, Result};
use crate::job::JobState;
use crate::plan::FilePlan;

mod records;
use records::{encode, parse};
pub(crate) use records::{Recorded, RecordedFile};

/// The longest a group-committed record waits for its fsync.
pub(crate) const SYNC_EVERY: Duration = Duration::from_millis(250);

const MAGIC: &str = "batchput-journal";
const VERSION: &str = "1";

/// Journals locked by this process, by (device, inode).
static LOCKED_HERE: Mutex<Option<HashSet<(u64, u64)>>> = Mutex::new(None);

/// An open, locked journal being appended to.
#[derive(Debug)]
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    id: (u64, u64),
    pending: Vec<u8>,
    unsynced: bool,
    last_sync: Instant,
    /// The first write error; later appends are skipped and the job is
    /// told once.
    failed: Option<Error>,
}

/// What a journal says about its batch, read without resuming it: where it
/// was going and which keys it holds. A command resuming a journal takes
/// its destination from here unless told otherwise.
#[derive(Debug, Clone)]
pub struct JournalInfo {
    /// The bucket the batch uploads to.
    pub bucket: String,
    /// The endpoint URL(s) the batch was started with, comma-separated;
    /// `None` in journals written before it was recorded.
    pub endpoint: Option<String>,
    /// The batch's keys, in batch order.
    pub keys: Vec<String>,
    /// The batch's size in bytes.
    pub bytes_total: u64,
    /// A download's journal: the files are destinations of objects.
    pub download: bool,
}

impl JournalInfo {
    /// Reads the journal at `path`. It takes the journal's lock for the
    /// read, so a journal another process is running gives
    /// [`JournalLocked`](crate::ErrorKind::JournalLocked).
    pub fn read(path: &Path) -> Result<JournalInfo> {
        let (_journal, recorded) = Journal::open(path)?;
        Ok(JournalInfo {
            bucket: recorded.bucket,
            endpoint: recorded.endpoint,
            keys: recorded.files.iter().map(|f| f.plan.key.clone()).collect(),
            bytes_total: recorded.files.iter().map(|f| f.plan.size).sum(),
            download: recorded.download,
        })
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.flush(true);
        if let Some(set) = LOCKED_HERE.lock().as_mut() {
            set.remove(&self.id);
        }
        // The fcntl lock goes with the descriptor.
    }
}

fn journal_error(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Journal,
        format!("journal {}: {what}", path.display()),
    )
    .with_path(path)
}

/// The message for a path that is refused as a journal (something is there
/// already, or it is a symbolic link); `None` for other failures.
fn refusal(path: &Path, err: &std::io::Error) -> Option<Error> {
    let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if link {
        return Some(journal_error(
            path,
            "is a symbolic link: a journal is never opened through one (give the real path)",
        ));
    }
    (err.kind() == std::io::ErrorKind::AlreadyExists).then(|| {
        journal_error(
            path,
            "already exists: resume it, or remove it to start over",
        )
    })
}

/// Takes the journal's lock or says who holds it.
fn lock(file: &File, path: &Path) -> Result<(u64, u64)> {
    let meta = file.metadata().map_err(|e| journal_error(path, e))?;
    let id = (meta.dev(), meta.ino());
    {
        let mut here = LOCKED_HERE.lock();
        let set = here.get_or_insert_with(HashSet::new);
        if set.contains(&id) {
            return Err(Error::new(
                ErrorKind::JournalLocked,
                format!(
                    "journal {} is in use by pid {} (this process)",
                    path.display(),
                    std::process::id()
                ),
            )
            .with_path(path));
        }
        set.insert(id);
    }
    // SAFETY: an all-zero flock is a valid value; the calls only read and
    // write the struct we own and the descriptor we hold.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as _;
    fl.l_whence = libc::SEEK_SET as _;
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if let Some(set) = LOCKED_HERE.lock().as_mut() {
            set.remove(&id);
        }
        let mut probe: libc::flock = unsafe { std::mem::zeroed() };
        probe.l_type = libc::F_WRLCK as _;
        probe.l_whence = libc::SEEK_SET as _;
        let holder = if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut probe) } == 0
            && probe.l_type != libc::F_UNLCK as libc::c_short
        {
            format!("pid {}", probe.l_pid)
        } else {
            "another process".to_string()
        };
        return Err(Error::new(
            ErrorKind::JournalLocked,
            format!("journal {} is in use by {holder} ({err})", path.display()),
        )
        .with_path(path));
    }
    Ok(id)
}

impl Journal {
    /// [`create_for`](Journal::create_for) with no endpoint recorded.
    #[cfg(test)]
    pub fn create(path: &Path, bucket: &str, plans: &[FilePlan]) -> Result<Journal> {
        Journal::create_for(path, bucket, "", plans)
    }

    /// Creates a journal for a new batch, locks it and makes the batch
    /// durable. Whatever is at `path` already — a journal, an empty file, a
    /// symbolic link — is refused, never overwritten or followed. The
    /// endpoint(s) are recorded so that a resume can default to them (see
    /// [`JournalInfo`]).
    pub fn create_for(
        path: &Path,
        bucket: &str,
        endpoint: &str,
        plans: &[FilePlan],
    ) -> Result<Journal> {
        // Absolute and canonical: resume may run from anywhere. (A
        // download's destination does not exist yet: its plan made it
        // absolute.)
        let sources = plans
            .iter()
            .map(|p| match p.object {
                Some(_) => Ok(p.path.clone()),
                None => {
                    std::fs::canonicalize(&p.path).map_err(|e| Error::local_io("read", &p.path, &e))
                }
            })
            .collect::<Result<Vec<PathBuf>>>()?;
        // One atomic step: no check-then-open race.
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| {
                refusal(path, &e).unwrap_or_else(|| {
                    journal_error(
                        path,
                        format!("cannot create: {}", crate::error::io_reason(&e)),
                    )
                })
            })?;
        // From here the file is ours: a failure removes it, so the same
        // start can be tried again.
        Journal::fill(file, path, bucket, endpoint, plans, &sources).inspect_err(|_| {
            let _ = std::fs::remove_file(path);
        })
    }

    fn fill(
        file: File,
        path: &Path,
        bucket: &str,
        endpoint: &str,
        plans: &[FilePlan],
        sources: &[PathBuf],
    ) -> Result<Journal> {
        let id = lock(&file, path)?;
        let mut j = Journal {
            file,
            path: path.to_path_buf(),
            id,
            pending: Vec::new(),
            unsynced: false,
            last_sync: Instant::now(),
            failed: None,
        };
        let created = unix_ms(SystemTime::now()).to_string();
        let mut header = vec!["H", MAGIC, VERSION, &created, bucket];
        let encoded = encode(endpoint.as_bytes());
        if !endpoint.is_empty() {
            header.push(&encoded);
        }
        j.record(&header);
        for (i, (p, source)) in plans.iter().zip(sources).enumerate() {
            if let Some(object) = &p.object {
                j.record(&[
                    "G",
                    &i.to_string(),
                    &p.size.to_string(),
                    &p.part_size.to_string(),
                    &p.parts.to_string(),
                    &match (object.crc32c, object.by_part_number, object.aligned) {
                        (Some(crc), _, _) => format!("c{crc:08x}"),
                        (None, true, _) => "1".into(),
                        (None, false, true) => "2".into(),
                        (None, false, false) => "0".into(),
                    },
                    &encode(object.etag.as_bytes()),
                    &encode(source.as_os_str().as_bytes()),
                    &encode(p.key.as_bytes()),
                ]);
                continue;
            }
            let shape = shape(p);
            let mut fields = vec!["F", &i.to_string()]
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>();
            fields.extend(shape);
            fields.push(encode(source.as_os_str().as_bytes()));
            fields.push(encode(p.key.as_bytes()));
            j.record(&fields.iter().map(String::as_str).collect::<Vec<_>>());
        }
        j.record(&["B", &plans.len().to_string()]);
        j.flush(true)?;
        // Make the new file's name durable too.
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(j)
    }

    /// Opens and locks an existing journal and reads what it recorded.
    pub fn open(path: &Path) -> Result<(Journal, Recorded)> {
        // Not through a symbolic link, and never blocking on a FIFO.
        let mut file = OpenOptions::new()
            .append(true)
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(|e| {
                refusal(path, &e).unwrap_or_else(|| {
                    journal_error(
                        path,
                        format!("cannot open: {}", crate::error::io_reason(&e)),
                    )
                })
            })?;
        let meta = file.metadata().map_err(|e| journal_error(path, e))?;
        if !meta.is_file() {
            return Err(journal_error(
                path,
                format!(
                    "is {}, not a regular file",
                    crate::plan::kind_name(meta.file_type())
                ),
            ));
        }
        // SAFETY: fcntl on a descriptor we own, with integer arguments only.
        unsafe {
            let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
            }
        }
        let id = lock(&file, path)?;
        let mut text = Vec::new();
        let read = file.read_to_end(&mut text);
        let j = Journal {
            file,
            path: path.to_path_buf(),
            id,
            pending: Vec::new(),
            unsynced: false,
            last_sync: Instant::now(),
            failed: None,
        };
        read.map_err(|e| journal_error(path, e))?;
        let recorded = parse(&text).map_err(|why| journal_error(path, why))?;
        Ok((j, recorded))
    }

    fn record(&mut self, fields: &[&str]) {
        let line = fields.join("\t");
        let crc = crc32c::crc32c(line.as_bytes());
        self.pending.extend_from_slice(line.as_bytes());
        self.pending
            .extend_from_slice(format!("\t{crc:08x}\n").as_bytes());
    }

    /// Writes what is pending; syncs when `sync` or when the group commit
    /// is due. The first failure is returned once and remembered.
    pub fn flush(&mut self, sync: bool) -> Result<()> {
        if self.failed.is_some() {
            return Ok(());
        }
        let result = (|| -> std::io::Result<()> {
            if !self.pending.is_empty() {
                self.file.write_all(&self.pending)?;
                self.pending.clear();
                self.unsynced = true;
            }
            if self.unsynced && (sync || self.last_sync.elapsed() >= SYNC_EVERY) {
                self.file.sync_data()?;
                self.unsynced = false;
                self.last_sync = Instant::now();
            }
            Ok(())
        })();
        result.map_err(|e| {
            let e = journal_error(
                &self.path,
                format!("cannot write: {}", crate::error::io_reason(&e)),
            );
            self.failed = Some(e.clone());
            e
        })
    }

    /// A file is about to be sent, synced at once (before a
    /// CreateMultipartUpload).
    pub fn intent(&mut self, file: usize) -> Result<()> {
        self.record_intent(file);
        self.flush(true)
    }

    /// The same, group-committed (before a small file's PUT).
    pub fn record_intent(&mut self, file: usize) {
        self.record(&["I", &file.to_string()]);
    }

    pub fn upload(&mut self, file: usize, upload_id: &str) -> Result<()> {
        self.record(&["U", &file.to_string(), &encode(upload_id.as_bytes())]);
        self.flush(true)
    }

    pub fn part(
        &mut self,
        file: usize,
        part: u32,
        etag: &str,
        md5: Option<[u8; 16]>,
        crc: Option<u32>,
    ) {
        self.record(&[
            "P",
            &file.to_string(),
            &part.to_string(),
            &encode(etag.as_bytes()),
            &md5.map_or("-".into(), |m| crate::engine::hex(&m)),
            &crc.map_or("-".into(), |c| format!("{c:08x}")),
        ]);
    }

    /// A completed file; `sync` for multipart files (see the module doc).
    pub fn done(&mut self, file: usize, etag: &str, sync: bool) -> Result<()> {
        self.record(&["D", &file.to_string(), &encode(etag.as_bytes())]);
        self.flush(sync)
    }

    /// File `file` changed since it was recorded and is planned anew.
    pub fn replanned(&mut self, file: usize, plan: &FilePlan) {
        let mut fields = vec!["N".to_string(), file.to_string()];
        fields.extend(shape(plan));
        self.record(&fields.iter().map(String::as_str).collect::<Vec<_>>());
    }

    pub fn aborted(&mut self, file: usize, upload_id: &str) {
        self.record(&["X", &file.to_string(), &encode(upload_id.as_bytes())]);
    }

    pub fn resumed(&mut self) -> Result<()> {
        self.record(&["R", &unix_ms(SystemTime::now()).to_string()]);
        self.flush(true)
    }

    pub fn ended(&mut self, state: JobState) -> Result<()> {
        let s = match state {
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Stopped => "stopped",
            JobState::Paused => "paused",
            JobState::Queued | JobState::Running => return Ok(()),
        };
        self.record(&["E", s]);
        self.flush(true)
    }
}

/// Size, mtime, multipart, part size and parts of a plan, as fields.
fn shape(p: &FilePlan) -> [String; 5] {
    [
        p.size.to_string(),
        p.mtime.map(unix_ns).map_or("-".into(), |n| n.to_string()),
        if p.multipart { "1" } else { "0" }.to_string(),
        p.part_size.to_string(),
        p.parts.to_string(),
    ]
}

fn unix_ms(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()
}

fn unix_ns(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos()
}

/// Whether `path` looks as the journal recorded it (size and mtime).
pub(crate) fn unchanged(plan: &FilePlan) -> std::result::Result<bool, Error> {
    let meta =
        std::fs::metadata(&plan.path).map_err(|e| Error::local_io("read", &plan.path, &e))?;
    Ok(meta.len() == plan.size && (plan.mtime.is_none() || meta.modified().ok() == plan.mtime))
}

#[cfg(test)]
mod tests;

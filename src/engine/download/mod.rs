//! Downloads: the objects of a job fetched into files, with the upload
//! engine's guarantees.
//!
//! ## Overview
//! A download job runs on the same coordinator, pool, journal and report
//! as an upload (a file's plan carries the [`RemoteObject`] it comes from).
//! Each object is fetched into a temporary file beside its destination
//! (`.NAME.batchput-partial`, preallocated so a full disk fails at the
//! first byte): every range or part by its own GET, written with pwrite at
//! its offset. Only when every byte is there and checked is the file
//! fsync'd and renamed into place: a destination path never holds a
//! partial or unchecked file.
//!
//! ## Checks
//! Every GET carries `If-Match` with the ETag the job planned with, and the
//! ETag of every answer is compared too (some stores ignore `If-Match`): an
//! object replaced mid-download fails its file instead of mixing versions.
//! The bytes are then checked against the ETag ([`Verification`]): a
//! single-part object's MD5, or a multipart object's `md5(part md5s)-N`,
//! with parts fetched along the object's own part boundaries (`GET
//! ?partNumber=N`) where the store serves them, or recomputed from the file
//! for the usual part sizes where it does not. An object whose ETag cannot
//! be recomputed along any ranges (multipart, or not an MD5) but that has a
//! stored full-object CRC32C is checked by that instead, with no part
//! boundaries needed.

pub(crate) mod plan;
pub(crate) mod resume;
mod verify;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::messages::{Msg, Task};
use super::retry::retrying;
use super::worker::JobContext;
use crate::error::{Error, ErrorKind, Result};
use crate::store::{GetHead, GetSpec, ObjectSink, CANCELLED};

pub use verify::Verification;

/// The object a download plan fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteObject {
    /// Its ETag when planned (quotes removed): every GET must still see it.
    /// Empty when the listing did not say (s3s-fs lists none) and the object
    /// is one GET: that GET's answer tells it.
    pub etag: String,
    /// Fetched part by part (`?partNumber=N`) along the boundaries it was
    /// uploaded with; by byte ranges otherwise.
    pub by_part_number: bool,
    /// Fetched by byte ranges that are, as far as can be guessed (the
    /// configured part size gives the ETag's part count), the object's own
    /// parts: their MD5s, taken while fetching, should give its multipart
    /// ETag without reading the file again.
    pub aligned: bool,
    /// The CRC32C of all its bytes as the store keeps it (a `FULL_OBJECT`
    /// checksum), when it is what the object is checked by: each range's
    /// CRC32C is taken as it streams, and the ranges' combine into the
    /// object's. Such an object is fetched by byte ranges.
    pub crc32c: Option<u32>,
}

/// Where an object is fetched to before it is complete and checked.
pub(crate) fn temp_path(dest: &Path) -> PathBuf {
    let name = dest.file_name().unwrap_or_default();
    let mut temp = std::ffi::OsString::from(".");
    temp.push(name);
    temp.push(".batchput-partial");
    dest.with_file_name(temp)
}

/// Opens the temporary file of `dest` for writing: made anew (its parent
/// directories too) and preallocated to `size`, or, when `keep` (a resumed
/// download whose finished parts are in it), opened as it is, which must
/// then be a regular file of `size` bytes.
pub(crate) fn open_temp(dest: &Path, size: u64, keep: bool) -> Result<File> {
    let temp = temp_path(dest);
    let fail = |verb: &str, e: &io::Error| Error::local_io(verb, &temp, e).with_path(dest);
    if let Ok(meta) = std::fs::symlink_metadata(dest) {
        if meta.is_dir() {
            return Err(Error::input(format!(
                "{} is a directory: an object cannot be downloaded over it",
                dest.display()
            ))
            .with_path(dest));
        }
    }
    let mut options = OpenOptions::new();
    options
        .read(true)
        .write(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK);
    if keep {
        let file = options.open(&temp).map_err(|e| fail("open", &e))?;
        let meta = file.metadata().map_err(|e| fail("read", &e))?;
        if !meta.is_file() || meta.len() != size {
            return Err(Error::new(
                ErrorKind::FileChanged,
                format!(
                    "{} is not the partial download it was ({} bytes expected)",
                    temp.display(),
                    size
                ),
            )
            .with_path(dest));
        }
        return Ok(file);
    }
    // Created exclusively; a leftover of an earlier attempt (or anything
    // else at that name) is replaced, never followed; missing directories
    // are made. Asked in that order, the usual case is one system call.
    options.create_new(true);
    let file = match options.open(&temp) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(&temp).map_err(|e| fail("replace", &e))?;
            options.open(&temp)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| {
                    Error::local_io("create the directory", parent, &e).with_path(dest)
                })?;
            }
            options.open(&temp)
        }
        opened => opened,
    }
    .map_err(|e| fail("create", &e))?;
    preallocate(&file, size).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        fail("make room for", &e)
    })?;
    Ok(file)
}

/// Reserves `size` bytes for `file`, so a full disk fails now rather than
/// mid-download. Where the file system cannot reserve (no fallocate), the
/// file is only sized.
fn preallocate(file: &File, size: u64) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    if size > 0 {
        // SAFETY: a valid descriptor and integer arguments.
        let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, size as libc::off_t) };
        match r {
            0 => return Ok(()),
            libc::EOPNOTSUPP | libc::EINVAL => {}
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
    file.set_len(size)
}

/// Removes the temporary file of `dest`, if there is one.
pub(crate) fn remove_temp(dest: &Path) {
    let temp = temp_path(dest);
    match std::fs::remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log::warn!(
            "cannot remove {}: {}",
            temp.display(),
            crate::error::io_reason(&e)
        ),
    }
}

/// How one GET task fetches its bytes.
pub(crate) struct Fetch {
    pub part: u32,
    pub parts: u32,
    pub object_size: u64,
    pub object: Arc<RemoteObject>,
    /// Whether the MD5 of these bytes is needed (see `verify`).
    pub hash: bool,
}

/// Fetches one range or part into the temporary file, with retries.
pub(crate) fn fetch(ctx: &JobContext, task: &Task, how: &Fetch) -> Result<Msg> {
    let (source, offset, len) = task.data.as_ref().expect("a fetch has its range");
    let (etag, md5, crc32c) = fetch_range(ctx, task, &source.file, (*offset, *len), how)?;
    Ok(Msg::PartDone {
        file: task.file,
        part: how.part,
        // The ETag this answer had: what an object planned without one is
        // checked against.
        etag,
        md5,
        crc32c,
    })
}

/// An object fetched by one GET, from start to finish in one task: its
/// temporary file made here, its bytes fetched and checked, the file
/// renamed into place. For the many-small-files case this saves a round
/// trip through the coordinator per file (it would otherwise make the
/// temporary file itself, then hand out the check as a task of its own).
/// Whatever goes wrong, the temporary file is removed before the task
/// reports: the coordinator's cleanup may already have run.
pub(crate) fn fetch_whole(
    ctx: &JobContext,
    task: &Task,
    how: &Fetch,
    finishing: &Finish,
) -> Result<Msg> {
    let size = finishing.size;
    let file = open_temp(&task.path, size, false).map_err(|e| e.with_key(&*task.key))?;
    let fetched = (|| {
        if ctx.uploads.lock().closed {
            // The job's cleanup has begun, and may have looked for this
            // file's temporary file before it existed.
            return Err(Error::new(ErrorKind::Stopped, "stopped"));
        }
        let file = Arc::new(file);
        let (etag, md5, crc) = fetch_range(ctx, task, &file, (0, size), how)?;
        let object = match &finishing.object.etag {
            // Planned without an ETag (s3s-fs lists none): the one its GET saw.
            e if e.is_empty() => Arc::new(RemoteObject {
                etag,
                ..(*finishing.object).clone()
            }),
            _ => finishing.object.clone(),
        };
        let finishing = Finish {
            object,
            md5s: vec![md5],
            crcs: vec![crc],
            ..finishing.clone()
        };
        finish_file(ctx, task, &finishing, &file)
    })();
    if fetched.is_err() {
        remove_temp(&task.path);
    }
    fetched
}

/// Fetches `offset, len` of the object into `file`, with retries: the
/// answer's ETag and, where the check needs them, the bytes' MD5 and
/// CRC32C.
fn fetch_range(
    ctx: &JobContext,
    task: &Task,
    file: &Arc<File>,
    (offset, len): (u64, u64),
    how: &Fetch,
) -> Result<(String, Option<[u8; 16]>, Option<u32>)> {
    let temp = temp_path(&task.path);
    // A range fetched by byte range (where it lands is known before its
    // answer) and long enough is hashed as it is written, beside the other
    // ranges in flight (see `HashHandle::submit_as_written`).
    // With it, how many of its bytes are in the file.
    let streamed = (how.hash && !how.object.by_part_number && len >= HASH_AS_WRITTEN).then(|| {
        let in_file = Arc::new(AtomicU64::new(0));
        let pending = ctx
            .hasher
            .submit_as_written(file.clone(), offset, len, in_file.clone());
        (pending, in_file)
    });
    // Any other range to check is hashed once in the file in full: the
    // MD5 thread is told it will come, and holds back a moment for it the
    // round of ranges that came before (see `hasher`).
    let mut upcoming = (how.hash && streamed.is_none()).then(|| ctx.hasher.expect_range());
    // The ETags the attempts of a streamed range saw: bytes an attempt
    // left in the file count for the next only if they are of the same
    // object.
    let mut etags_seen: Vec<String> = Vec::new();
    let result = retrying(ctx, |_| {
        let mut sink = ToFile {
            ctx,
            file,
            temp: &temp,
            key: &task.key,
            how,
            planned: (offset, len),
            in_file: streamed.as_ref().map(|(_, in_file)| (&**in_file, offset)),
            began: false,
            at: 0,
            end: 0,
            written: 0,
            seen_etag: None,
            failure: None,
            crc: how.object.crc32c.map(|_| 0),
        };
        let spec = GetSpec {
            range: (!how.object.by_part_number && how.parts > 1).then_some((offset, len)),
            part_number: how.object.by_part_number.then_some(how.part),
            if_match: Some(how.object.etag.as_str()).filter(|e| !e.is_empty()),
        };
        let got = ctx.store.get_into(&task.key, &spec, &mut sink);
        if streamed.is_some() {
            etags_seen.extend(sink.seen_etag.clone());
        }
        // What this attempt counted is taken back if it failed.
        let outcome = match (got, sink.failure.take()) {
            (_, Some(e)) => Err(e),
            (Err(e), None) => Err(changed_if_precondition(e, &task.key)),
            (Ok(_), None) if !sink.began || sink.at != sink.end => Err(Error::new(
                ErrorKind::Network,
                format!(
                    "the answer for '{}' ended after {} of its bytes",
                    task.key, sink.written
                ),
            )
            .with_key(&*task.key)),
            (Ok(_), None) => Ok((
                sink.seen_etag.take().unwrap_or_default(),
                sink.end - sink.written,
                sink.written,
                sink.crc,
            )),
        };
        if outcome.is_err() {
            ctx.bytes_sent.fetch_sub(sink.written, Ordering::Relaxed);
        }
        outcome
    });
    let result = result.and_then(|(etag, start, fetched, crc)| {
        if !how.hash {
            return Ok((etag, None, crc));
        }
        // The MD5 thread reads the range back from the page cache, beside
        // other workers' ranges (see `hasher`): what is checked is what the
        // file holds. The range is fetched: a pause that came meanwhile
        // still records it, so its MD5 is waited for whatever the stop says.
        let pending = match streamed {
            // Where the bytes landed is where they were expected (byte
            // ranges are placed as planned or refused), and every attempt
            // wrote the same object's bytes (one planned without an ETag
            // may have been replaced between attempts).
            Some((p, _))
                if (start, fetched) == (offset, len) && etags_seen.iter().all(|e| *e == etag) =>
            {
                p
            }
            _ => ctx.hasher.submit(file.clone(), start, fetched),
        };
        // Handed over: nothing more to wait for on its account.
        drop(upcoming.take());
        let md5 = pending.wait().map_err(|e| read_back_failed(&temp, &e))?;
        Ok((etag, Some(md5), crc))
    });
    result.map_err(|e| e.with_part(how.part).with_path(&*task.path))
}

/// A range of a temporary file that could not be read back for its check.
pub(super) fn read_back_failed(temp: &Path, e: &io::Error) -> Error {
    if e.kind() == io::ErrorKind::Interrupted {
        Error::new(ErrorKind::Stopped, "stopped")
    } else {
        Error::new(
            ErrorKind::LocalIo,
            format!(
                "cannot read back {}: {}",
                temp.display(),
                crate::error::io_reason(e)
            ),
        )
    }
}

/// A 412 answer (`If-Match` failed), or a 416 (the planned range is past
/// the object's end): the object is no longer the one planned.
fn changed_if_precondition(e: Error, key: &str) -> Error {
    if matches!(e.status(), Some(412 | 416)) {
        object_changed(key, None)
    } else {
        e
    }
}

fn object_changed(key: &str, now: Option<&str>) -> Error {
    let now = now
        .map(|e| format!(" (its ETag is now {e})"))
        .unwrap_or_default();
    Error::new(
        ErrorKind::FileChanged,
        format!("'{key}' was replaced on the server during the download{now}"),
    )
    .with_key(key)
}

/// Ranges at least this long are hashed as they are written (two lanes'
/// pieces: shorter ones are written before the MD5 thread would start).
const HASH_AS_WRITTEN: u64 = 2 * 128 * 1024;

/// Writes a GET's bytes into the temporary file at their offset.
struct ToFile<'a> {
    ctx: &'a JobContext,
    file: &'a File,
    temp: &'a Path,
    key: &'a str,
    how: &'a Fetch,
    /// (offset, length) the plan expects.
    planned: (u64, u64),
    /// The answer's head came and was accepted.
    began: bool,
    /// Where the next byte goes, and where the answer's bytes end.
    at: u64,
    end: u64,
    written: u64,
    /// The answer's ETag.
    seen_etag: Option<String>,
    /// Why the sink refused the answer, in the job's terms.
    failure: Option<Error>,
    /// The CRC32C of the bytes so far, when the object is checked by one.
    crc: Option<u32>,
    /// Where to say how many bytes from the range's start are in the file
    /// (for the MD5 thread hashing them as they come), and that start.
    in_file: Option<(&'a AtomicU64, u64)>,
}

impl ToFile<'_> {
    fn refuse(&mut self, e: Error) -> io::Error {
        let io = io::Error::other(e.to_string());
        self.failure = Some(e);
        io
    }

    /// Where the answer's bytes belong, from what was asked and what the
    /// answer says.
    fn place(&self, head: &GetHead) -> std::result::Result<(u64, u64), String> {
        let size = self.how.object_size;
        let whole = !self.how.object.by_part_number && self.how.parts == 1;
        match head.range {
            Some(r) if r.total.is_some_and(|t| t != size) => Err(format!(
                "the object is {} bytes, not {size}",
                r.total.unwrap_or_default()
            )),
            Some(r) if self.how.object.by_part_number || whole => Ok((r.start, r.len())),
            Some(r) if (r.start, r.len()) == self.planned => Ok(self.planned),
            Some(r) => Err(format!(
                "asked for {} bytes at {}, the answer holds {} at {}",
                self.planned.1,
                self.planned.0,
                r.len(),
                r.start
            )),
            // No range: the whole object (an empty one cannot have a range).
            None if head.status == 200
                && (whole || (self.how.parts == 1 && self.how.part == 1))
                && head.length.is_none_or(|n| n == size) =>
            {
                Ok((0, size))
            }
            None if self.how.object.by_part_number => {
                Err("the store ignored the part number".to_string())
            }
            None => Err(format!("status {} without a Content-Range", head.status)),
        }
    }
}

impl ObjectSink for ToFile<'_> {
    fn begin(&mut self, head: &GetHead) -> io::Result<()> {
        if let Some(etag) = &head.etag {
            let planned = &self.how.object.etag;
            if !planned.is_empty() && etag != planned {
                return Err(self.refuse(object_changed(self.key, Some(etag))));
            }
            self.seen_etag = Some(etag.clone());
        }
        match self.place(head) {
            Ok((start, len))
                if start
                    .checked_add(len)
                    .is_some_and(|e| e <= self.how.object_size) =>
            {
                if head.length.is_some_and(|n| n != len) {
                    let e = Error::new(
                        ErrorKind::Server,
                        format!(
                            "malformed answer for '{}': Content-Length {} for a range of {len} bytes",
                            self.key,
                            head.length.unwrap_or_default()
                        ),
                    );
                    return Err(self.refuse(e.with_key(self.key)));
                }
                self.at = start;
                self.end = start + len;
                self.began = true;
                Ok(())
            }
            Ok(_) | Err(_) => {
                let why = self
                    .place(head)
                    .err()
                    .unwrap_or_else(|| "a range past the object's end".to_string());
                let e = Error::new(
                    ErrorKind::Server,
                    format!("unexpected answer for '{}': {why}", self.key),
                )
                .with_key(self.key)
                .with_operation("GetObject");
                Err(self.refuse(e))
            }
        }
    }

    fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.ctx.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other(CANCELLED));
        }
        let n = bytes.len() as u64;
        if self.at + n > self.end {
            let e = Error::new(
                ErrorKind::Server,
                format!(
                    "the answer for '{}' holds more bytes than it said",
                    self.key
                ),
            )
            .with_key(self.key);
            return Err(self.refuse(e));
        }
        if let Some(rate) = &self.ctx.rate {
            if !rate.take(n, &self.ctx.cancel) {
                return Err(io::Error::other(CANCELLED));
            }
        }
        if let Err(e) = self.file.write_all_at(bytes, self.at) {
            let e = Error::local_io("write", self.temp, &e);
            return Err(self.refuse(e));
        }
        if let Some(crc) = &mut self.crc {
            // Hardware CRC over bytes still in the cache: ~0.1 s/GiB.
            *crc = crc32c::crc32c_append(*crc, bytes);
        }
        self.at += n;
        if let Some((in_file, start)) = self.in_file {
            // A retry writes the same bytes again from the start: what was
            // in the file stays counted (see `fetch_range` for an object
            // replaced between attempts).
            in_file.fetch_max(self.at.saturating_sub(start), Ordering::Release);
        }
        self.written += n;
        self.ctx.note_sent(n);
        Ok(())
    }
}

/// The last step of a download: check the bytes, make them durable, give
/// the file its name.
#[derive(Clone)]
pub(crate) struct Finish {
    pub size: u64,
    pub object: Arc<RemoteObject>,
    /// Per part, the MD5 of its bytes when the fetch computed it.
    pub md5s: Vec<Option<[u8; 16]>>,
    /// Per part, the CRC32C of its bytes when the fetch computed it.
    pub crcs: Vec<Option<u32>>,
    /// The plan's part size: where each range lies (objects checked by
    /// CRC32C are fetched by byte ranges).
    pub part_size: u64,
    /// The configured part size: the first guess at another uploader's.
    pub part_size_hint: u64,
}

pub(crate) fn finish(ctx: &JobContext, task: &Task, how: &Finish) -> Result<Msg> {
    let temp = temp_path(&task.path);
    let file =
        File::open(&temp).map_err(|e| Error::local_io("open", &temp, &e).with_path(&*task.path))?;
    finish_file(ctx, task, how, &file)
}

/// [`finish`] with the temporary file open.
fn finish_file(ctx: &JobContext, task: &Task, how: &Finish, file: &File) -> Result<Msg> {
    let dest = &*task.path;
    let temp = temp_path(dest);
    let len = file
        .metadata()
        .map_err(|e| Error::local_io("read", &temp, &e))?
        .len();
    if len != how.size {
        return Err(Error::new(
            ErrorKind::LocalIo,
            format!(
                "{} holds {len} bytes, {} expected: it was changed by someone else",
                temp.display(),
                how.size
            ),
        )
        .with_path(dest));
    }
    let verified = verify::check(ctx, file, &temp, &task.key, how)?;
    file.sync_all()
        .map_err(|e| Error::local_io("sync", &temp, &e).with_path(dest))?;
    {
        // Under the registry's lock: once cleanup closed it, no file takes
        // its final name, so the report never says "aborted" for a file
        // that is in place.
        let mut reg = ctx.uploads.lock();
        if reg.closed {
            return Err(Error::new(ErrorKind::Stopped, "stopped"));
        }
        std::fs::rename(&temp, dest)
            .map_err(|e| Error::local_io("rename", &temp, &e).with_path(dest))?;
        reg.renamed
            .push((task.file, how.object.etag.clone(), verified));
    }
    if let Some(dir) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        // The new name is durable too.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(Msg::Fetched {
        file: task.file,
        etag: how.object.etag.clone(),
        verified,
    })
}

/// Whether a download of this object needs each part's MD5 while fetching.
pub(crate) fn hash_while_fetching(object: &RemoteObject, parts: u32) -> bool {
    verify::hash_while_fetching(object, parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_files_sit_beside_their_destination() {
        assert_eq!(
            temp_path(Path::new("/d/x/a b.txt")),
            Path::new("/d/x/.a b.txt.batchput-partial")
        );
        assert_eq!(temp_path(Path::new("f")), Path::new(".f.batchput-partial"));
    }
}

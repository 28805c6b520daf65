//! What a pool thread does with one [`Task`]: send a part or a whole file
//! from the shared descriptor (the kernel reads the pages: `Body::File`),
//! while the uploader's MD5 thread hashes the same range beside others
//! (`hasher`); create or complete an upload; retry with backoff (`retry`);
//! report exactly one [`Msg`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use md5::{Digest, Md5};
use parking_lot::Mutex;

use super::abort::{abort_and_verify, abort_strays, cleanup_scope};
use super::etag::{hex, is_md5_hex, is_multipart_etag};
use super::hasher::{HashHandle, PendingDigest};
use super::messages::{Msg, Source, Task, Unsettled, Work};
use super::rate::{sleep_unless_cancelled, TokenBucket};
use super::retry::retrying;
use crate::config::Integrity;
use crate::error::{Error, ErrorKind, Result};
use crate::store::interrupt::{in_scope, Interrupt, Scope};
use crate::store::{page_aligned, Body, SentChecksum, Store, CANCELLED};

/// Bytes read per pread when a checksum is computed before sending; the
/// send path reads in the HTTP client's pieces (`store::http::WRITE_CHUNK`).
pub(crate) const CHUNK: usize = 256 * 1024;

/// Ranges up to this size are read once into the worker's memory, their
/// checksum computed there, and sent from it in the same write as the
/// request head. For them, handing the range to the MD5 thread (two thread
/// wake-ups and a read of its own) and sendfile's SIGPIPE guard (four
/// system calls) cost more than hashing here: MD5 takes about 1.9 µs per
/// KiB on one thread (bench/NOTES.md, which also has the measurement on
/// 20,000 files of 1 KiB).
const INLINE_BODY: u64 = 16 * 1024;

/// How long a CreateMultipartUpload retried after an unanswered attempt
/// waits before it looks for the upload that attempt may have made.
const STRAY_SETTLE: Duration = Duration::from_millis(500);

/// CompleteMultipartUpload's idle timeout grows by this much per part: the
/// server assembles the object before it answers, which takes minutes for
/// thousands of parts (S3 streams whitespace meanwhile; some stores send
/// nothing at all).
const COMPLETE_WAIT_PER_PART: Duration = Duration::from_millis(250);

/// The idle timeout of a CompleteMultipartUpload of `parts` parts: the
/// request timeout plus [`COMPLETE_WAIT_PER_PART`] per part (384 parts and
/// the default 30 s: 126 s; 10,000 parts: 42 minutes).
pub(crate) fn complete_timeout(request_timeout: Duration, parts: usize) -> Duration {
    request_timeout + COMPLETE_WAIT_PER_PART * parts.min(10_000) as u32
}

/// Multipart uploads created and not yet completed, by file index: the
/// airtight hand-off between workers that create uploads and the
/// coordinator that aborts them. Once cleanup closes the registry, a worker
/// whose CreateMultipartUpload answers late aborts that upload itself, so no
/// upload can slip between the two.
#[derive(Default)]
pub(crate) struct OpenUploads {
    pub closed: bool,
    pub open: BTreeMap<usize, (Arc<str>, String)>,
    /// Downloads renamed into place (file, ETag, check), recorded under
    /// the same lock: a file that took its final name is reported
    /// complete even if its message comes after cleanup began.
    pub renamed: Vec<(usize, String, super::download::Verification)>,
}

/// What every task of one job shares.
pub(crate) struct JobContext {
    pub store: Store,
    /// The job's mode; never `Auto`, which the coordinator resolves before
    /// the first task.
    pub integrity: Integrity,
    /// Attempts per request (the `retries` option, at least 1).
    pub attempts: u32,
    pub cancel: Arc<AtomicBool>,
    /// What every request of the job obeys: the job's interrupt, which a
    /// stop, pause or failure cancels.
    pub scope: Scope,
    /// The request timeout, which CompleteMultipartUpload stretches.
    pub request_timeout: Duration,
    /// Bytes written to the network and not taken back: acknowledged ones
    /// plus those of requests in flight. An attempt that fails subtracts
    /// what it had sent.
    pub bytes_sent: AtomicU64,
    /// Bytes ever handed to the network, never decreasing: the stall
    /// detector's sign of life while a big part is on the wire.
    pub activity: AtomicU64,
    pub rate: Option<Arc<TokenBucket>>,
    /// Attempts that failed in a way that says "fewer requests, please"
    /// (throttling, a broken or refused connection, a timeout): what
    /// `workers=auto` backs off on.
    pub pressure: AtomicU64,
    /// A task failed in a way that ends the job (fail-fast), and the
    /// coordinator may not have heard yet: a task queued behind others
    /// (see `Pool::spawn_behind`) that starts now sends nothing.
    pub failing: AtomicBool,
    pub tx: Sender<Msg>,
    pub uploads: Mutex<OpenUploads>,
    /// The uploader's MD5 thread (see `hasher`).
    pub hasher: HashHandle,
}

impl JobContext {
    pub(super) fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Counts `n` bytes handed to the network.
    pub(crate) fn note_sent(&self, n: u64) {
        self.bytes_sent.fetch_add(n, Ordering::Relaxed);
        self.activity.fetch_add(n, Ordering::Relaxed);
    }
}

/// Runs one task and reports its one message, whatever happens.
pub(crate) fn run(ctx: &JobContext, task: Task) {
    let file = task.file;
    let part = match &task.work {
        Work::Part { part, .. } => Some(*part),
        Work::Get(how) => Some(how.part),
        _ => None,
    };
    if ctx.failing.load(Ordering::Relaxed) {
        // The coordinator takes it for a task its stop cut short.
        let _ = ctx.tx.send(Msg::Failed {
            file,
            part,
            error: stopped(),
        });
        return;
    }
    let msg = match catch_unwind(AssertUnwindSafe(|| {
        in_scope(&ctx.scope, || execute(ctx, &task))
    })) {
        Ok(Ok(msg)) => msg,
        Ok(Err(error)) => Msg::Failed { file, part, error },
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Msg::Failed {
                file,
                part,
                error: Error::internal(format!(
                    "worker panicked during {} of '{}': {what}",
                    task.work.name(),
                    task.key
                ))
                .with_key(&*task.key),
            }
        }
    };
    if let Msg::Failed { error, .. } | Msg::Unsettled { error, .. } = &msg {
        // Every such failure ends the job (the coordinator's `fail`).
        if error.kind() != ErrorKind::Stopped {
            ctx.failing.store(true, Ordering::Relaxed);
        }
    }
    // The coordinator may be gone (job over); then nobody needs the message.
    let _ = ctx.tx.send(msg);
}

pub(super) fn stopped() -> Error {
    Error::new(ErrorKind::Stopped, "stopped")
}

fn execute(ctx: &JobContext, task: &Task) -> Result<Msg> {
    let hint = super::pool::current_index().unwrap_or(0);
    let key = &*task.key;
    let file = task.file;
    match &task.work {
        Work::Put => {
            let mut unsettled = None;
            let sent = send_data(ctx, task, None, &mut unsettled, |body, checksum| {
                ctx.store.put_object(key, body, checksum, hint)
            });
            match (sent, unsettled) {
                (Ok((etag, _, _)), _) => Ok(Msg::PutDone {
                    file,
                    etag,
                    endpoint: ctx.store.last_endpoint_url(),
                }),
                // An attempt went out in full and got no answer: the
                // object may exist whatever the last attempt said.
                (Err(error), Some(md5)) => Ok(Msg::Unsettled {
                    file,
                    error,
                    what: Unsettled::Put { md5 },
                }),
                (Err(e), None) => Err(e),
            }
        }
        Work::Create => create(ctx, task, hint),
        Work::Part { part, upload_id } => {
            let mut unsettled = None;
            let (etag, md5, crc32c) =
                send_data(ctx, task, Some(*part), &mut unsettled, |body, checksum| {
                    ctx.store
                        .upload_part(key, upload_id, *part, body, checksum, hint)
                })?;
            Ok(Msg::PartDone {
                file,
                part: *part,
                etag,
                md5,
                crc32c,
            })
        }
        Work::Complete {
            upload_id,
            parts,
            expected_etag,
        } => complete(ctx, task, upload_id, parts, expected_etag.as_deref(), hint),
        Work::Get(how) => super::download::fetch(ctx, task, how),
        Work::Finish(how) => super::download::finish(ctx, task, how),
        Work::GetWhole { fetch, finish } => super::download::fetch_whole(ctx, task, fetch, finish),
    }
}

/// CreateMultipartUpload, with retries. An attempt that went out and got
/// no answer may have created an upload we never learn the id of: once a
/// later attempt succeeds, uploads of the exact key initiated since are
/// looked for and aborted (where the store lists uploads).
fn create(ctx: &JobContext, task: &Task, hint: usize) -> Result<Msg> {
    let key = &*task.key;
    let file = task.file;
    let started = std::time::SystemTime::now();
    let mut unclear = false;
    // The upload declares CRC32C exactly when its parts will carry one.
    let crc32c = ctx.integrity == Integrity::Crc32c;
    // Gentle: a stop lets an answer already on its way arrive (a moment),
    // so the upload it made is known and aborted rather than orphaned.
    let gentle = ctx.scope.gentle();
    let result = retrying(ctx, |_| {
        in_scope(&gentle, || {
            ctx.store.create_multipart_upload_with(key, crc32c, hint)
        })
        .inspect_err(|e| unclear |= e.outcome_unknown())
    });
    let upload_id = match result {
        Ok(id) => id,
        Err(error) if unclear => {
            return Ok(Msg::Unsettled {
                file,
                error,
                what: Unsettled::Create,
            })
        }
        Err(e) => return Err(e),
    };
    if unclear {
        // The unanswered create may still be settling on the server (a
        // cluster replicates it to the node we list through): give it a
        // moment first. Best effort: the warning says where a stray can
        // still be found.
        sleep_unless_cancelled(STRAY_SETTLE, &ctx.cancel);
        let _ = abort_strays(&ctx.store, key, Some(&upload_id), started);
    }
    let mut reg = ctx.uploads.lock();
    if reg.closed {
        drop(reg);
        // Cleanup already ran: nobody else will abort this one. The job's
        // own requests are cut off by now, so this gets a scope of its own.
        let scope = cleanup_scope(Arc::new(Interrupt::new()), ctx.request_timeout);
        if let Err(e) = in_scope(&scope, || abort_and_verify(&ctx.store, key, &upload_id)) {
            log::error!("{e}");
        }
        return Err(stopped());
    }
    reg.open.insert(file, (task.key.clone(), upload_id.clone()));
    Ok(Msg::Created { file, upload_id })
}

/// CompleteMultipartUpload, patiently (its idle timeout grows with the part
/// count) and idempotently: after an attempt that got no answer, the next
/// one first looks for the object, and a 403 or 404 for an upload that such
/// an attempt may have completed is not taken as the server's verdict.
fn complete(
    ctx: &JobContext,
    task: &Task,
    upload_id: &str,
    parts: &[crate::store::CompletedPart],
    expected_etag: Option<&str>,
    hint: usize,
) -> Result<Msg> {
    let key = &*task.key;
    let file = task.file;
    let scope = ctx
        .scope
        .with_io_timeout(complete_timeout(ctx.request_timeout, parts.len()));
    let mut unclear = false;
    let result = retrying(ctx, |_| {
        if unclear {
            // The earlier attempt may have completed it and lost the answer.
            if let Some(etag) = completed_object(&ctx.store, key, parts.len(), expected_etag)? {
                return Ok(etag);
            }
        }
        match in_scope(&scope, || {
            ctx.store
                .complete_multipart_upload(key, upload_id, parts, hint)
        }) {
            Err(e) if e.outcome_unknown() => {
                unclear = true;
                Err(e)
            }
            // The upload is unknown to the server. After an unanswered
            // attempt of ours, or a previous process's (a pause or kill cut
            // its Complete, which the server then finished), the object may
            // be there: ours if its ETag is the one our parts make (with no
            // MD5s, only after our own unanswered attempt). Never taken as
            // the server's verdict on the first attempt.
            Err(e)
                if (unclear || expected_etag.is_some())
                    && (e.code() == Some("NoSuchUpload")
                        || matches!(e.status(), Some(403) | Some(404))) =>
            {
                match completed_object(&ctx.store, key, parts.len(), expected_etag)? {
                    Some(etag) => Ok(etag),
                    None if unclear => Err(Error::new(
                        ErrorKind::Server,
                        format!(
                            "an earlier attempt got no answer, and now the server answers HTTP {} {} \
                             for upload {upload_id}: the upload is gone and no object of ours is at the key",
                            e.status().unwrap_or(0),
                            e.code().unwrap_or("")
                        ),
                    )
                    .with_operation("CompleteMultipartUpload")
                    .with_key(key)),
                    None => Err(e),
                }
            }
            other => other,
        }
    });
    let etag = match result {
        Ok(etag) => etag,
        Err(error) if unclear => {
            return Ok(Msg::Unsettled {
                file,
                error,
                what: Unsettled::Complete {
                    expected_etag: expected_etag.map(str::to_string),
                },
            })
        }
        Err(e) => return Err(e),
    };
    let endpoint = ctx.store.last_endpoint_url();
    ctx.uploads.lock().open.remove(&file);
    if let Some(expected) = expected_etag {
        if is_multipart_etag(&etag) && etag != *expected {
            // The server assembled other bytes than we sent: the object
            // must not pretend to be complete.
            let _ = ctx.store.delete_object(key);
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "the completed object's ETag {etag} differs from {expected}, \
                     computed from the parts sent; the object was deleted"
                ),
            )
            .with_operation("CompleteMultipartUpload")
            .with_key(key));
        }
    }
    Ok(Msg::Completed {
        file,
        etag,
        endpoint,
    })
}

/// The ETag of the object at `key` if it is the one a CompleteMultipartUpload
/// of `parts` parts made: its ETag is the one expected, or (when no MD5 was
/// computed) has the multipart shape with that part count.
pub(crate) fn completed_object(
    store: &Store,
    key: &str,
    parts: usize,
    expected_etag: Option<&str>,
) -> Result<Option<String>> {
    Ok(store.head_object(key)?.and_then(|obj| {
        let ours = match expected_etag {
            Some(x) => obj.etag == x,
            None => obj.etag.ends_with(&format!("-{parts}")),
        };
        ours.then_some(obj.etag)
    }))
}

/// Sends a byte range with retries. Returns the ETag, the MD5 of the range
/// (when the integrity mode computes it) and the CRC32C (crc32c mode).
///
/// `unsettled` becomes `Some(md5 of the range, when computed)` when an
/// attempt went out in full and its answer never came.
fn send_data(
    ctx: &JobContext,
    task: &Task,
    part: Option<u32>,
    unsettled: &mut Option<Option<[u8; 16]>>,
    send: impl Fn(Body<'_>, SentChecksum) -> Result<String>,
) -> Result<(String, Option<[u8; 16]>, Option<u32>)> {
    let (source, offset, len) = task
        .data
        .as_ref()
        .ok_or_else(|| Error::internal("data task without data"))?;
    let local = |e: Error| {
        let e = e.with_key(&*task.key).with_path(&*task.path);
        match part {
            Some(p) => e.with_part(p),
            None => e,
        }
    };
    // A small range: its bytes, read once.
    let mut inline_buf = Vec::new();
    let inline: Option<&[u8]> = if *len <= INLINE_BODY {
        inline_buf.resize(*len as usize, 0);
        source
            .file
            .read_exact_at(&mut inline_buf, *offset)
            .map_err(|e| local(read_failed(source, &task.path, &e)))?;
        Some(&inline_buf)
    } else {
        None
    };
    // The MD5 modes hand a bigger range to the uploader's MD5 thread, which
    // hashes it beside other ranges while this one is sent (etag-md5) or
    // before (content-md5, whose header needs it).
    let mut md5 =
        matches!(ctx.integrity, Integrity::EtagMd5 | Integrity::ContentMd5).then(|| match inline {
            Some(bytes) => RangeMd5::Known(Md5::digest(bytes).into()),
            None => RangeMd5::Pending(ctx.hasher.submit(source.file.clone(), *offset, *len)),
        });
    // `answered`: the server holds the bytes, so their MD5 is wanted even if
    // the job stopped meanwhile (a paused job records the part, a stopped
    // one reports it truthfully). Before that, a stop ends the wait.
    let mut md5_of_range = |answered: bool| -> Result<Option<[u8; 16]>> {
        let stop = (!answered).then_some(&*ctx.cancel);
        md5.as_mut()
            .map(|m| m.get(stop, source, &task.path))
            .transpose()
    };
    retrying(ctx, |_| {
        let (checksum, crc) = match ctx.integrity {
            Integrity::ContentMd5 => {
                let md5 = md5_of_range(false)
                    .map_err(local)?
                    .expect("content-md5 hashes");
                (SentChecksum::ContentMd5(md5), None)
            }
            Integrity::Crc32c => {
                let crc = match inline {
                    Some(bytes) => Ok(crc32c::crc32c(bytes)),
                    None => BUFFER.with(|cell| {
                        // No bigger than the data needs (see `body::send_streamed`).
                        let mut guard = cell.borrow_mut();
                        let buf = page_aligned(
                            &mut guard,
                            (*len as usize).clamp(1, CHUNK).div_ceil(4096) * 4096,
                        );
                        let mut crc = 0u32;
                        read_range(source, *offset, *len, buf, &task.path, |c| {
                            crc = crc32c::crc32c_append(crc, c)
                        })
                        .map(|()| crc)
                    }),
                };
                let crc = crc.map_err(local)?;
                (SentChecksum::Crc32c(crc), Some(crc))
            }
            // `Auto` never reaches a worker: the coordinator resolves it
            // before the first task (see `probe`).
            Integrity::EtagMd5 | Integrity::None | Integrity::Auto => (SentChecksum::None, None),
        };
        // What this attempt sent, taken back from `bytes_sent` if it fails.
        let sent = std::cell::Cell::new(0u64);
        // Nothing to hash while sending: the kernel sends the pages.
        let mut pace = |n: u64| -> std::io::Result<()> {
            if ctx.cancelled() {
                return Err(std::io::Error::other(CANCELLED));
            }
            if let Some(rate) = &ctx.rate {
                if !rate.take(n, &ctx.cancel) {
                    return Err(std::io::Error::other(CANCELLED));
                }
            }
            ctx.note_sent(n);
            sent.set(sent.get() + n);
            Ok(())
        };
        let result = match inline {
            // Paced once, whole: the only refusal is a stop.
            Some(bytes) => match pace(*len) {
                Ok(()) => send(Body::Bytes(bytes), checksum),
                Err(_) => Err(stopped()),
            },
            None => send(
                Body::File {
                    file: &source.file,
                    offset: *offset,
                    len: *len,
                    pace: &mut pace,
                },
                checksum,
            ),
        };
        if result.is_err() {
            ctx.bytes_sent.fetch_sub(sent.get(), Ordering::Relaxed);
        }
        // A file that shrank shows as a body that ended early: report
        // the real cause, which no retry can fix.
        if let Err(e) = &result {
            if e.kind() == ErrorKind::Network {
                check_unchanged(source, &task.path).map_err(local)?;
            }
        }
        let etag = match result {
            Ok(etag) => etag,
            Err(e) => {
                if e.outcome_unknown() {
                    *unsettled = Some(md5_of_range(true).ok().flatten());
                }
                return Err(e);
            }
        };
        check_unchanged(source, &task.path).map_err(local)?;
        let md5 = md5_of_range(true).map_err(local)?;
        if let (Integrity::EtagMd5, Some(md5)) = (ctx.integrity, md5) {
            let ours = hex(&md5);
            if is_md5_hex(&etag) && !etag.eq_ignore_ascii_case(&ours) {
                return Err(local(Error::new(
                    ErrorKind::Integrity,
                    format!(
                        "the server's ETag {etag} differs from the MD5 {ours} of the file's bytes"
                    ),
                )));
            }
        }
        Ok((etag, md5, crc))
    })
}

/// The MD5 of the range a task sends: asked of the uploader's MD5 thread
/// once, kept for the task's retries.
enum RangeMd5 {
    Pending(PendingDigest),
    Known([u8; 16]),
}

impl RangeMd5 {
    /// The digest; with `stop`, `Stopped` soon after it is set.
    fn get(&mut self, stop: Option<&AtomicBool>, source: &Source, path: &Path) -> Result<[u8; 16]> {
        let p = match self {
            RangeMd5::Known(md5) => return Ok(*md5),
            RangeMd5::Pending(p) => p,
        };
        let got = match stop {
            Some(stop) => p.wait_unless(stop),
            None => p.wait(),
        };
        let md5 = got.map_err(|e| match e.kind() {
            std::io::ErrorKind::Interrupted => stopped(),
            _ => read_failed(source, path, &e),
        })?;
        *self = RangeMd5::Known(md5);
        Ok(md5)
    }
}

thread_local! {
    /// One chunk buffer per pool thread, for the CRC32C computed before
    /// sending.
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A read of the file being uploaded that failed; one that met the end of
/// the file early means the file shrank, a change rather than an EOF.
fn read_failed(source: &Source, path: &Path, e: &std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        Error::new(
            ErrorKind::FileChanged,
            format!(
                "{} changed while uploading: it shrank below {} bytes",
                path.display(),
                source.size
            ),
        )
    } else {
        Error::local_io("read", path, e)
    }
}

/// Reads a range chunk by chunk for a checksum computed before sending.
fn read_range(
    source: &Source,
    mut offset: u64,
    len: u64,
    buf: &mut [u8],
    path: &Path,
    mut each: impl FnMut(&[u8]),
) -> Result<()> {
    let end = offset + len;
    while offset < end {
        let n = ((end - offset) as usize).min(buf.len());
        source
            .file
            .read_exact_at(&mut buf[..n], offset)
            .map_err(|e| read_failed(source, path, &e))?;
        each(&buf[..n]);
        offset += n as u64;
    }
    Ok(())
}

/// A file whose size or modification time moved since it was planned is
/// no longer the file the caller asked for.
fn check_unchanged(source: &Source, path: &Path) -> Result<()> {
    let meta = source
        .file
        .metadata()
        .map_err(|e| Error::local_io("stat", path, &e))?;
    if meta.len() != source.size {
        return Err(Error::new(
            ErrorKind::FileChanged,
            format!(
                "{} changed while uploading: its size went from {} to {} bytes",
                path.display(),
                source.size,
                meta.len()
            ),
        ));
    }
    if source.mtime.is_some() && meta.modified().ok() != source.mtime {
        return Err(Error::new(
            ErrorKind::FileChanged,
            format!(
                "{} changed while uploading: it was modified",
                path.display()
            ),
        ));
    }
    Ok(())
}

//! A running batch as its caller sees it: [`Job`], the [`Progress`]
//! snapshot, per-file [`FileReport`]s, and their states.
//!
//! The coordinator owns the live state; it publishes copies here after each
//! round of messages. A caller's `progress()` or `files()` copies the
//! published snapshot out under a short lock: it never blocks on the
//! upload and never sees a reference into live state.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::Error;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Waiting for earlier jobs of the same uploader to finish.
    Queued,
    /// Uploading.
    Running,
    /// Every file is a complete object at its key.
    Succeeded,
    /// A fatal error stopped the job; see [`Progress::error`].
    Failed,
    /// The caller stopped the job; open uploads were aborted.
    Stopped,
    /// The caller paused the job; uploads were kept for resume.
    Paused,
}

impl JobState {
    /// Whether the job has ended (it will not change again).
    pub fn is_finished(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileState {
    /// Never started (the job ended first); nothing of it was sent.
    NotStarted,
    /// Uploading.
    Running,
    /// A complete object at its key.
    Completed,
    /// This file's error failed the job (see [`FileReport::error`]).
    Failed,
    /// Started, then cut off by the job's end: its multipart upload was
    /// aborted, or its single PUT interrupted. No object was made.
    Aborted,
    /// Started, then paused: its upload id and finished parts are kept in
    /// the journal for resume.
    Paused,
    /// Started, then cut off by the job's end, and its multipart upload
    /// could not be aborted within the cleanup budget: the upload (see
    /// [`FileReport::upload_id`]) is still open on the server and billed
    /// until `cleanup` or a resume of the journal aborts it.
    AbortFailed,
    /// Cut off while the server may have been acting on it (a PutObject or
    /// CompleteMultipartUpload without an answer), and the server could not
    /// be asked afterwards: the object may or may not exist.
    Unknown,
}

/// A snapshot of a job's progress. Bytes count only what the server
/// acknowledged (a download: what was received whole and written), never
/// what was merely buffered or sent.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The job's state.
    pub state: JobState,
    /// Files in the batch.
    pub files_total: u64,
    /// Files that are complete objects (a download: complete, checked
    /// files under their final names).
    pub files_done: u64,
    /// Files whose error failed the job.
    pub files_failed: u64,
    /// Requests carrying data: one per single-PUT file plus every part.
    pub parts_total: u64,
    /// Of those, acknowledged by the server.
    pub parts_done: u64,
    /// Bytes in the batch.
    pub bytes_total: u64,
    /// Bytes acknowledged by the server.
    pub bytes_done: u64,
    /// Bytes written to the network (a download: received), acknowledged
    /// or not: runs ahead of `bytes_done` while parts are on the wire, and
    /// is rolled back when a part is retried.
    pub bytes_sent: u64,
    /// Of `bytes_done`, what a resumed job found already on the server
    /// (complete files and kept parts) and did not send: 0 for a new job.
    pub bytes_resumed: u64,
    /// Current speed, bytes per second, smoothed over the last seconds.
    pub speed_bps: f64,
    /// Average speed since the job started running.
    pub avg_speed_bps: f64,
    /// Highest smoothed speed seen.
    pub peak_speed_bps: f64,
    /// Time since the job started running.
    pub elapsed: Duration,
    /// The first fatal error (or the stop/pause reason), if any.
    pub error: Option<Error>,
    /// How this job's data is checked: the configured mode, or what
    /// `integrity=auto` chose for this store (`Crc32c` or `EtagMd5`). `None`
    /// while the job is queued or probing, and for a job that ended before
    /// it had data to send.
    pub integrity_used: Option<crate::Integrity>,
}

/// What happened to one file of a job.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// The local file.
    pub path: PathBuf,
    /// The destination key.
    pub key: String,
    /// Size in bytes, as planned.
    pub size: u64,
    /// Bytes acknowledged by the server.
    pub bytes_done: u64,
    /// Average speed while the file uploaded.
    pub avg_speed_bps: f64,
    /// Highest speed seen for the file.
    pub peak_speed_bps: f64,
    /// Its state.
    pub state: FileState,
    /// The object's ETag once complete (quotes removed).
    pub etag: Option<String>,
    /// The multipart upload id, while one exists (kept after a pause).
    pub upload_id: Option<String>,
    /// The endpoint that completed it.
    pub endpoint: Option<String>,
    /// The file's own error, if it failed.
    pub error: Option<Error>,
    /// A completed download: how its bytes were checked against the
    /// object. `None` for uploads and unfinished downloads.
    pub verified: Option<crate::Verification>,
}

/// The changing part of a file report, published by the coordinator.
#[derive(Debug, Clone)]
pub(crate) struct FileStatus {
    pub bytes_done: u64,
    pub avg_speed_bps: f64,
    pub peak_speed_bps: f64,
    pub state: FileState,
    pub etag: Option<String>,
    pub upload_id: Option<String>,
    pub endpoint: Option<String>,
    pub error: Option<Error>,
    pub verified: Option<crate::Verification>,
}

impl Default for FileStatus {
    fn default() -> Self {
        FileStatus {
            bytes_done: 0,
            avg_speed_bps: 0.0,
            peak_speed_bps: 0.0,
            state: FileState::NotStarted,
            etag: None,
            upload_id: None,
            endpoint: None,
            error: None,
            verified: None,
        }
    }
}

/// The parts of a file that never change.
#[derive(Debug)]
pub(crate) struct FileIdentity {
    pub path: PathBuf,
    pub key: String,
    pub size: u64,
}

/// Everything published about a job.
pub(crate) struct Published {
    pub progress: Progress,
    pub files: Vec<FileStatus>,
}

/// A stop or pause request, from the caller to the coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Halt {
    Stop,
    Pause,
}

/// What the job handle, the coordinator and the workers share.
pub(crate) struct JobShared {
    pub identities: Vec<FileIdentity>,
    pub published: Mutex<Published>,
    pub finished: Condvar,
    /// Set once by stop/pause or a fatal error: workers check it between
    /// chunks and before each attempt.
    pub cancel: Arc<AtomicBool>,
    /// Sets `cancel` and shuts down the socket of every request in flight,
    /// so none of them waits for its server.
    pub interrupt: Arc<crate::store::interrupt::Interrupt>,
    /// The caller's request, read by the coordinator.
    pub halt: Mutex<Option<Halt>>,
    /// Whether a journal records the job (pause needs one).
    pub has_journal: bool,
}

impl JobShared {
    pub fn new(
        identities: Vec<FileIdentity>,
        bytes_total: u64,
        parts_total: u64,
        has_journal: bool,
    ) -> JobShared {
        let files = (0..identities.len())
            .map(|_| FileStatus::default())
            .collect();
        let cancel = Arc::new(AtomicBool::new(false));
        JobShared {
            published: Mutex::new(Published {
                progress: Progress {
                    state: JobState::Queued,
                    files_total: identities.len() as u64,
                    files_done: 0,
                    files_failed: 0,
                    parts_total,
                    parts_done: 0,
                    bytes_total,
                    bytes_done: 0,
                    bytes_sent: 0,
                    bytes_resumed: 0,
                    speed_bps: 0.0,
                    avg_speed_bps: 0.0,
                    peak_speed_bps: 0.0,
                    elapsed: Duration::ZERO,
                    error: None,
                    integrity_used: None,
                },
                files,
            }),
            identities,
            finished: Condvar::new(),
            cancel: cancel.clone(),
            interrupt: Arc::new(crate::store::interrupt::Interrupt::with_flag(cancel)),
            halt: Mutex::new(None),
            has_journal,
        }
    }

    /// Asks the coordinator to halt; the first request wins.
    pub fn request_halt(&self, halt: Halt) {
        let mut h = self.halt.lock();
        if h.is_none() && !self.published.lock().progress.state.is_finished() {
            *h = Some(halt);
            // Cut what is in flight now, not at the coordinator's next tick
            // (which cuts the gentle rest: see `Interrupt::cancel_gently`).
            self.interrupt.cancel_gently();
        }
    }
}

/// A batch submitted to an [`Uploader`](crate::Uploader).
///
/// A `Job` may be polled, waited on, stopped and paused from any thread.
/// Dropping the handle does not stop the job; dropping the uploader does.
#[derive(Clone)]
pub struct Job {
    pub(crate) shared: Arc<JobShared>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("state", &self.state())
            .field("files", &self.shared.identities.len())
            .finish()
    }
}

impl Job {
    /// A copy of the current progress. Never blocks on the upload.
    pub fn progress(&self) -> Progress {
        self.shared.published.lock().progress.clone()
    }

    /// The job's state.
    pub fn state(&self) -> JobState {
        self.shared.published.lock().progress.state
    }

    /// The first fatal error, or the stop/pause reason.
    pub fn error(&self) -> Option<Error> {
        self.shared.published.lock().progress.error.clone()
    }

    /// Number of files in the batch.
    pub fn file_count(&self) -> usize {
        self.shared.identities.len()
    }

    /// The report of file `index` (batch order).
    pub fn file(&self, index: usize) -> Option<FileReport> {
        let id = self.shared.identities.get(index)?;
        let status = self.shared.published.lock().files[index].clone();
        Some(report(id, status))
    }

    /// Reports of every file, in batch order.
    pub fn files(&self) -> Vec<FileReport> {
        let statuses = self.shared.published.lock().files.clone();
        self.shared
            .identities
            .iter()
            .zip(statuses)
            .map(|(id, s)| report(id, s))
            .collect()
    }

    /// Waits until the job finishes or `timeout` passes (`None`: forever).
    /// Returns whether it finished.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut p = self.shared.published.lock();
        while !p.progress.state.is_finished() {
            match deadline {
                None => self.shared.finished.wait(&mut p),
                Some(d) => {
                    if self.shared.finished.wait_until(&mut p, d).timed_out() {
                        return p.progress.state.is_finished();
                    }
                }
            }
        }
        true
    }

    /// Stops the job: in-flight requests are cut, every open multipart
    /// upload is aborted and checked gone, files not started never start,
    /// completed objects stay. Returns at once; `wait` for the end.
    /// Idempotent, and a no-op on a finished job.
    pub fn stop(&self) {
        self.shared.request_halt(Halt::Stop);
    }

    /// Pauses the job: like `stop`, but open uploads and their finished
    /// parts are kept, and the journal records them for
    /// [`Uploader::resume`](crate::Uploader::resume). Needs a journal.
    ///
    /// Returns a [`Misuse`](crate::ErrorKind::Misuse) error when the job
    /// has no journal: without one, nothing could resume it.
    pub fn pause(&self) -> crate::Result<()> {
        if !self.shared.has_journal {
            return Err(Error::new(
                crate::ErrorKind::Misuse,
                "pause needs a journal: set one on the batch (Batch::journal) before starting it",
            ));
        }
        self.shared.request_halt(Halt::Pause);
        Ok(())
    }
}

fn report(id: &FileIdentity, s: FileStatus) -> FileReport {
    FileReport {
        path: id.path.clone(),
        key: id.key.clone(),
        size: id.size,
        bytes_done: s.bytes_done,
        avg_speed_bps: s.avg_speed_bps,
        peak_speed_bps: s.peak_speed_bps,
        state: s.state,
        etag: s.etag,
        upload_id: s.upload_id,
        endpoint: s.endpoint,
        error: s.error,
        verified: s.verified,
    }
}

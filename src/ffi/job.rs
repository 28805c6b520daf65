//! `bp_job`: a started batch, its progress snapshot and file reports.

use std::ffi::{c_char, CString};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use super::error::{bp_status, copy_message, invalid_argument};
use super::handle::{take_box, try_ref as handle_ref, Castable};
use super::panic::{check_out, ffi_panic_boundary, try_ref};
use crate::{FileState, Job, JobState};

/// A batch started on an uploader: bp_start or bp_resume make one.
///
/// Methods: bp_job_poll, bp_job_wait, bp_job_stop, bp_job_pause,
/// bp_job_file_count, bp_job_file, bp_job_last_error, bp_job_free. Owned by
/// the caller; it stays valid after its uploader is freed (the job has ended
/// by then).
///
/// Thread safety: every method but bp_job_free may be called from any thread,
/// at the same time as the others: a job may be polled and stopped from one
/// thread while another waits on it. bp_job_free must be the last call.
pub struct bp_job {
    _private: [u8; 0],
}

/// What a `bp_job` points to: the job, and the C strings its file reports
/// lend out, made once so the pointers stay valid until `bp_job_free`.
pub(crate) struct JobHandle {
    pub job: Job,
    names: Vec<(CString, CString)>,
}

impl JobHandle {
    pub fn new(job: Job) -> JobHandle {
        let names = job
            .files()
            .into_iter()
            .map(|f| {
                (
                    c_string(f.path.as_os_str().as_bytes()),
                    c_string(f.key.as_bytes()),
                )
            })
            .collect();
        JobHandle { job, names }
    }
}

/// A C string of `bytes`. Paths and keys came in as C strings, so they hold
/// no NUL; a journal written by hand might, and then the name is cut there.
fn c_string(bytes: &[u8]) -> CString {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    CString::new(&bytes[..end]).expect("cut at the first NUL")
}

impl Castable for bp_job {
    type RustType = JobHandle;
}

/// Where a job is in its life.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum bp_job_state {
    /// Waiting for earlier jobs of the same uploader to finish.
    BP_JOB_QUEUED = 0,
    /// Uploading.
    BP_JOB_RUNNING = 1,
    /// Every file is a complete object at its key.
    BP_JOB_SUCCEEDED = 2,
    /// A fatal error ended the job (bp_progress.error, bp_job_last_error).
    BP_JOB_FAILED = 3,
    /// Stopped by the caller: open uploads were aborted.
    BP_JOB_STOPPED = 4,
    /// Paused by the caller: uploads kept for bp_resume.
    BP_JOB_PAUSED = 5,
}

impl From<JobState> for bp_job_state {
    fn from(s: JobState) -> Self {
        match s {
            JobState::Queued => bp_job_state::BP_JOB_QUEUED,
            JobState::Running => bp_job_state::BP_JOB_RUNNING,
            JobState::Succeeded => bp_job_state::BP_JOB_SUCCEEDED,
            JobState::Failed => bp_job_state::BP_JOB_FAILED,
            JobState::Stopped => bp_job_state::BP_JOB_STOPPED,
            JobState::Paused => bp_job_state::BP_JOB_PAUSED,
        }
    }
}

/// What happened to one file.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum bp_file_state {
    /// Never started (the job ended first): nothing of it was sent.
    BP_FILE_NOT_STARTED = 0,
    /// Uploading.
    BP_FILE_RUNNING = 1,
    /// A complete object at its key.
    BP_FILE_COMPLETED = 2,
    /// This file's error failed the job.
    BP_FILE_FAILED = 3,
    /// Started, then cut off by the job's end: its multipart upload was
    /// aborted (and checked gone), or its single PUT interrupted. No object.
    BP_FILE_ABORTED = 4,
    /// Started, then paused: its upload and finished parts are kept in the
    /// journal for bp_resume.
    BP_FILE_PAUSED = 5,
    /// Started, then cut off, and its multipart upload could not be aborted
    /// within the cleanup budget: the upload is still open on the server
    /// (its id is in bp_job_last_error and the journal); bp_cleanup or
    /// bp_resume will find it.
    BP_FILE_ABORT_FAILED = 6,
    /// Cut off while the server may have been acting on it, and the server
    /// could not be asked afterwards: the object may or may not exist.
    BP_FILE_UNKNOWN = 7,
}

impl From<FileState> for bp_file_state {
    fn from(s: FileState) -> Self {
        match s {
            FileState::NotStarted => bp_file_state::BP_FILE_NOT_STARTED,
            FileState::Running => bp_file_state::BP_FILE_RUNNING,
            FileState::Completed => bp_file_state::BP_FILE_COMPLETED,
            FileState::Failed => bp_file_state::BP_FILE_FAILED,
            FileState::Aborted => bp_file_state::BP_FILE_ABORTED,
            FileState::Paused => bp_file_state::BP_FILE_PAUSED,
            FileState::AbortFailed => bp_file_state::BP_FILE_ABORT_FAILED,
            FileState::Unknown => bp_file_state::BP_FILE_UNKNOWN,
        }
    }
}

/// A snapshot of a job, copied out by bp_job_poll. Bytes and parts count
/// only what the server acknowledged.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct bp_progress {
    /// The job's state.
    pub state: bp_job_state,
    /// Files in the batch.
    pub files_total: u64,
    /// Files that are complete objects.
    pub files_done: u64,
    /// Files whose error failed the job.
    pub files_failed: u64,
    /// Requests carrying data: one per single-PUT file, plus every part.
    pub parts_total: u64,
    /// Of those, acknowledged by the server.
    pub parts_done: u64,
    /// Bytes in the batch.
    pub bytes_total: u64,
    /// Bytes acknowledged by the server.
    pub bytes_done: u64,
    /// Current speed in bytes per second, smoothed over the last seconds.
    pub speed_bps: f64,
    /// Average speed since the job started running.
    pub avg_speed_bps: f64,
    /// Highest smoothed speed seen.
    pub peak_speed_bps: f64,
    /// Milliseconds since the job started running.
    pub elapsed_ms: u64,
    /// The first fatal error (BP_STOPPED or BP_PAUSED when the caller ended
    /// the job); BP_OK if none. bp_job_last_error has its message.
    pub error: bp_status,
}

/// What happened to one file, copied out by bp_job_file.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct bp_file_report {
    /// The local file (UTF-8, NUL-terminated). Owned by the job: valid
    /// until bp_job_free, never to be freed by the caller.
    pub path: *const c_char,
    /// The destination key; owned by the job like `path`.
    pub key: *const c_char,
    /// Size in bytes, as planned.
    pub size: u64,
    /// Bytes acknowledged by the server.
    pub bytes_done: u64,
    /// Average speed while the file uploaded, bytes per second.
    pub avg_speed_bps: f64,
    /// Highest speed seen for the file.
    pub peak_speed_bps: f64,
    /// Its state.
    pub state: bp_file_state,
    /// The object's ETag once complete (quotes removed, NUL-terminated);
    /// empty before.
    pub etag: [c_char; 80],
    /// This file's own error, when it failed; BP_OK otherwise.
    pub error: bp_status,
}

/// Copies a snapshot of the job's progress into `*out`. Never blocks on the
/// upload; a job that has ended gives its final snapshot, as often as asked.
///
/// OUT: `*out`, written only on success.
/// Returns BP_OK, or BP_INVALID_ARGUMENT for a NULL argument.
/// Thread safety: any thread, at any time before bp_job_free.
#[no_mangle]
pub unsafe extern "C" fn bp_job_poll(job: *const bp_job, out: *mut bp_progress) -> bp_status {
    ffi_panic_boundary!("bp_job_poll", {
        let handle = try_ref!(job);
        check_out!(out);
        let p = handle.job.progress();
        let progress = bp_progress {
            state: p.state.into(),
            files_total: p.files_total,
            files_done: p.files_done,
            files_failed: p.files_failed,
            parts_total: p.parts_total,
            parts_done: p.parts_done,
            bytes_total: p.bytes_total,
            bytes_done: p.bytes_done,
            speed_bps: p.speed_bps,
            avg_speed_bps: p.avg_speed_bps,
            peak_speed_bps: p.peak_speed_bps,
            elapsed_ms: u64::try_from(p.elapsed.as_millis()).unwrap_or(u64::MAX),
            error: p
                .error
                .map_or(bp_status::BP_OK, |e| bp_status::from_kind(e.kind())),
        };
        // SAFETY: checked not NULL; writable by the caller's contract.
        unsafe { out.write(progress) };
        bp_status::BP_OK
    })
}

/// `timeout_ms` for bp_job_wait: wait until the job ends, however long.
pub const BP_WAIT_FOREVER: u32 = u32::MAX;

/// Waits until the job ends or `timeout_ms` milliseconds pass
/// (BP_WAIT_FOREVER: no limit; 0: just look).
///
/// Returns BP_OK when the job has ended, whatever its outcome (bp_job_poll
/// tells which); BP_PENDING when it is still queued or running;
/// BP_INVALID_ARGUMENT for NULL.
/// Thread safety: any thread; several threads may wait at once, while others
/// poll or stop.
#[no_mangle]
pub unsafe extern "C" fn bp_job_wait(job: *mut bp_job, timeout_ms: u32) -> bp_status {
    ffi_panic_boundary!("bp_job_wait", {
        let handle = try_ref!(job);
        let timeout =
            (timeout_ms != BP_WAIT_FOREVER).then(|| Duration::from_millis(timeout_ms.into()));
        if handle.job.wait(timeout) {
            bp_status::BP_OK
        } else {
            bp_status::BP_PENDING
        }
    })
}

/// Stops the job: in-flight requests are cut, every open multipart upload is
/// aborted (and checked gone), files not yet started never start, completed
/// objects stay. Returns at once; bp_job_wait for the end, after which every
/// file's report says Completed, Aborted or Not started.
///
/// Idempotent, and a no-op on a job that has ended.
/// Returns BP_OK, or BP_INVALID_ARGUMENT for NULL.
/// Thread safety: any thread, at the same time as bp_job_wait or bp_job_poll.
#[no_mangle]
pub unsafe extern "C" fn bp_job_stop(job: *mut bp_job) -> bp_status {
    ffi_panic_boundary!("bp_job_stop", {
        let handle = try_ref!(job);
        handle.job.stop();
        bp_status::BP_OK
    })
}

/// Pauses the job: like bp_job_stop, but open uploads and their finished
/// parts are kept and recorded in the journal, so bp_resume (in this process
/// or another) continues where it stopped. Returns at once.
///
/// Returns BP_OK (also on a job that has ended: a no-op); BP_MISUSE when the
/// batch had no journal (bp_batch_set_journal): nothing could resume it;
/// BP_INVALID_ARGUMENT for NULL.
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bp_job_pause(job: *mut bp_job) -> bp_status {
    ffi_panic_boundary!("bp_job_pause", {
        let handle = try_ref!(job);
        match handle.job.pause() {
            Ok(()) => bp_status::BP_OK,
            Err(e) => super::error::fail(FUNCTION, &e),
        }
    })
}

/// The number of files in the job (0 for NULL, which also sets the last
/// error). Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bp_job_file_count(job: *const bp_job) -> usize {
    ffi_panic_boundary!("bp_job_file_count", {
        // SAFETY: NULL or a live handle, by the caller's contract.
        match unsafe { handle_ref(job) } {
            Some(handle) => handle.job.file_count(),
            None => {
                super::error::null_argument(FUNCTION, "job");
                0
            }
        }
    })
}

/// Copies the report of file `index` (0-based, batch order) into `*out`.
/// Its `path` and `key` point into the job and stay valid until bp_job_free.
///
/// OUT: `*out`, written only on success.
/// Returns BP_OK; BP_INVALID_ARGUMENT for a NULL argument or an index past
/// the last file. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bp_job_file(
    job: *const bp_job,
    index: usize,
    out: *mut bp_file_report,
) -> bp_status {
    ffi_panic_boundary!("bp_job_file", {
        let handle = try_ref!(job);
        check_out!(out);
        let (Some(f), Some((path, key))) = (handle.job.file(index), handle.names.get(index)) else {
            return invalid_argument(
                FUNCTION,
                format_args!(
                    "argument 'index' is {index}, but the job has {} files",
                    handle.names.len()
                ),
            );
        };
        let mut etag = [0 as c_char; 80];
        if let Some(tag) = &f.etag {
            for (dst, src) in etag.iter_mut().zip(tag.bytes().take(79)) {
                *dst = src as c_char;
            }
        }
        let report = bp_file_report {
            path: path.as_ptr(),
            key: key.as_ptr(),
            size: f.size,
            bytes_done: f.bytes_done,
            avg_speed_bps: f.avg_speed_bps,
            peak_speed_bps: f.peak_speed_bps,
            state: f.state.into(),
            etag,
            error: f
                .error
                .map_or(bp_status::BP_OK, |e| bp_status::from_kind(e.kind())),
        };
        // SAFETY: checked not NULL; writable by the caller's contract.
        unsafe { out.write(report) };
        bp_status::BP_OK
    })
}

/// Copies the message of the job's first fatal error (or "stopped by the
/// caller" / "paused by the caller") into `buf`: one line naming the
/// operation, the key or file, the part, the HTTP status, the S3 error code,
/// the server's words and its request id. Empty while the job has no error.
///
/// Copies like bp_last_error: at most `len - 1` bytes and a NUL; `buf` may be
/// NULL when `len` is 0; OUT: `*written` (when not NULL) is the full length
/// without the NUL, so the text was cut when `*written >= len`.
///
/// Returns BP_OK; BP_INVALID_ARGUMENT for a NULL job, or a NULL `buf` with
/// `len` > 0. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bp_job_last_error(
    job: *const bp_job,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> bp_status {
    ffi_panic_boundary!("bp_job_last_error", {
        let handle = try_ref!(job);
        let message = handle
            .job
            .error()
            .map(|e| e.to_string())
            .unwrap_or_default();
        unsafe { copy_message(FUNCTION, &message, buf, len, written) }
    })
}

/// Frees a job. A job still queued or running is stopped first (as by
/// bp_job_stop), and the call blocks until it has ended, so its uploads are
/// aborted and no thread touches the job afterwards. A queued job ends once
/// the jobs ahead of it on its uploader have. NULL is a no-op; freeing a job
/// twice is undefined behaviour. Pointers from bp_job_file die here.
#[no_mangle]
pub unsafe extern "C" fn bp_job_free(job: *mut bp_job) {
    ffi_panic_boundary!("bp_job_free", {
        // SAFETY: NULL or a live handle, by the caller's contract.
        if let Some(handle) = unsafe { take_box(job) } {
            handle.job.stop();
            handle.job.wait(None);
        }
    })
}

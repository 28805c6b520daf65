//! `bp_job`: a started batch, and the calls that poll, wait on, stop and
//! report it (the structs they fill are in `report.rs`).

use std::ffi::{c_char, CString};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use parking_lot::Mutex;

use super::error::{bp_status, copy_message, invalid_argument};
use super::handle::{take_box, try_ref as handle_ref, Castable};
use super::panic::{check_out, ffi_panic_boundary, try_ref};
use super::report::{
    bp_file_report, bp_progress, fill_size, write_file_report, write_progress,
    FILE_REPORT_MIN_SIZE, PROGRESS_MIN_SIZE,
};
use crate::Job;

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
/// lend out, kept so the pointers stay valid until `bp_job_free`.
pub(crate) struct JobHandle {
    pub job: Job,
    names: Vec<(CString, CString)>,
    /// Per file, every ETag and upload id it has reported so far. A value is
    /// added once and never changed or dropped, so a pointer handed out
    /// stays valid whatever another thread asks later; a file has one ETag
    /// and an upload id per upload, so this stays small.
    lent: Mutex<Vec<Vec<CString>>>,
}

impl JobHandle {
    pub fn new(job: Job) -> JobHandle {
        let names: Vec<(CString, CString)> = job
            .files()
            .into_iter()
            .map(|f| {
                (
                    c_string(f.path.as_os_str().as_bytes()),
                    c_string(f.key.as_bytes()),
                )
            })
            .collect();
        let lent = Mutex::new(vec![Vec::new(); names.len()]);
        JobHandle { job, names, lent }
    }

    /// A C string of `text` that lives as long as the job: the one lent
    /// before for the same file and text, or a new one.
    fn lend(&self, index: usize, text: Option<&str>) -> *const c_char {
        let Some(text) = text else {
            return std::ptr::null();
        };
        let wanted = c_string(text.as_bytes());
        let mut lent = self.lent.lock();
        let strings = &mut lent[index];
        if let Some(s) = strings.iter().find(|s| **s == wanted) {
            return s.as_ptr();
        }
        // The CString's bytes live on the heap: moving it into the Vec (or
        // the Vec growing) does not move them.
        let ptr = wanted.as_ptr();
        strings.push(wanted);
        ptr
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

/// Copies a snapshot of the job's progress into `*out`. Never blocks on the
/// upload; a job that has ended gives its final snapshot, as often as asked.
///
/// IN: `out->struct_size`, sizeof(bp_progress). OUT: `*out`, written only on
/// success, and only as far as struct_size allows.
/// Returns BP_OK; BP_INVALID_ARGUMENT for a NULL argument or a struct_size
/// below the first bp_progress's.
/// Thread safety: any thread, at any time before bp_job_free.
#[no_mangle]
pub unsafe extern "C" fn bp_job_poll(job: *const bp_job, out: *mut bp_progress) -> bp_status {
    ffi_panic_boundary!("bp_job_poll", {
        let handle = try_ref!(job);
        check_out!(out);
        // SAFETY: checked not NULL; a bp_progress by the caller's contract.
        let size = match unsafe { fill_size(FUNCTION, out, PROGRESS_MIN_SIZE, "bp_progress") } {
            Ok(size) => size,
            Err(status) => return status,
        };
        let p = handle.job.progress();
        let progress = bp_progress {
            struct_size: size,
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
            bytes_sent: p.bytes_sent,
            integrity_used: p.integrity_used.into(),
        };
        // SAFETY: size bytes of *out are the caller's, by its struct_size.
        unsafe { write_progress(out, progress, size) };
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
/// Its strings point into the job and stay valid until bp_job_free.
///
/// IN: `out->struct_size`, sizeof(bp_file_report). OUT: `*out`, written only
/// on success, and only as far as struct_size allows.
/// Returns BP_OK; BP_INVALID_ARGUMENT for a NULL argument, a struct_size
/// below the first bp_file_report's, or an index past the last file.
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bp_job_file(
    job: *const bp_job,
    index: usize,
    out: *mut bp_file_report,
) -> bp_status {
    ffi_panic_boundary!("bp_job_file", {
        let handle = try_ref!(job);
        check_out!(out);
        // SAFETY: checked not NULL; a bp_file_report by the caller's contract.
        let size = match unsafe { fill_size(FUNCTION, out, FILE_REPORT_MIN_SIZE, "bp_file_report") }
        {
            Ok(size) => size,
            Err(status) => return status,
        };
        let (Some(f), Some((path, key))) = (handle.job.file(index), handle.names.get(index)) else {
            return invalid_argument(
                FUNCTION,
                format_args!(
                    "argument 'index' is {index}, but the job has {} files",
                    handle.names.len()
                ),
            );
        };
        let report = bp_file_report {
            struct_size: size,
            path: path.as_ptr(),
            key: key.as_ptr(),
            etag: handle.lend(index, f.etag.as_deref()),
            size: f.size,
            bytes_done: f.bytes_done,
            avg_speed_bps: f.avg_speed_bps,
            peak_speed_bps: f.peak_speed_bps,
            state: f.state.into(),
            error: f
                .error
                .map_or(bp_status::BP_OK, |e| bp_status::from_kind(e.kind())),
            upload_id: handle.lend(index, f.upload_id.as_deref()),
            verified: f.verified.into(),
        };
        // SAFETY: size bytes of *out are the caller's, by its struct_size.
        unsafe { write_file_report(out, report, size) };
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

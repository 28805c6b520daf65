//! `bp_uploader`: the client, its worker pool and coordinator; starts,
//! resumes and cleans up jobs.

use std::ffi::c_char;
use std::path::Path;
use std::time::Duration;

use super::batch::bp_batch;
use super::config::bp_config;
use super::error::{bp_status, fail};
use super::handle::{take_box, to_boxed_mut_ptr, Castable};
use super::job::{bp_job, JobHandle};
use super::panic::{check_out, ffi_panic_boundary, try_ref, try_str};
use crate::Uploader;

/// Uploads batches to one bucket: owns the S3 client, a fixed pool of
/// `workers` threads and one coordinator thread. Jobs started on it run one
/// after another, in the order they were started.
///
/// Methods: bp_uploader_new, bp_start, bp_resume, bp_cleanup,
/// bp_download_start, bp_download_prefix, bp_uploader_free. Owned by the caller.
/// Thread safety: bp_start, bp_resume and bp_cleanup may be called from any
/// thread, at the same time; bp_uploader_free must be the last call.
pub struct bp_uploader {
    _private: [u8; 0],
}

impl Castable for bp_uploader {
    type RustType = Uploader;
}

/// Validates `cfg` (copied: it may be freed afterwards) and starts the
/// uploader's threads.
///
/// OUT: `*out`, the uploader, written only on success; free it with
/// bp_uploader_free.
/// Returns BP_OK; BP_INVALID_ARGUMENT for a NULL argument, or a missing or
/// inconsistent option (the message names it); BP_LOCAL_IO when ca_file
/// cannot be read.
#[no_mangle]
pub unsafe extern "C" fn bp_uploader_new(
    cfg: *const bp_config,
    out: *mut *mut bp_uploader,
) -> bp_status {
    ffi_panic_boundary!("bp_uploader_new", {
        let cfg = try_ref!(cfg);
        check_out!(out);
        match Uploader::new(cfg.clone()) {
            Ok(up) => {
                // SAFETY: checked not NULL; writable by the caller's contract.
                unsafe { out.write(to_boxed_mut_ptr(up)) };
                bp_status::BP_OK
            }
            Err(e) => fail(FUNCTION, &e),
        }
    })
}

/// Stops every job of the uploader that has not ended (aborting their open
/// uploads), waits for them to end, joins every thread the uploader started,
/// then frees it. Blocks until then; a worker stuck in a request on a dead
/// connection is waited for at most 2 seconds, then left to end by itself
/// (request_timeout_ms). Job handles stay valid (their jobs have ended) and
/// must still be freed. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn bp_uploader_free(up: *mut bp_uploader) {
    ffi_panic_boundary!("bp_uploader_free", {
        drop(unsafe { take_box(up) });
    })
}

/// Validates and plans `batch` (every file stat'ed once, every key checked),
/// then queues it as a new job. The batch is copied: it may be freed or
/// changed afterwards.
///
/// OUT: `*out`, the job, written only on success; free it with bp_job_free.
/// Returns BP_OK; BP_INVALID_ARGUMENT for a NULL argument; BP_INVALID_INPUT
/// for an empty batch, a duplicate key, a directory; BP_LOCAL_IO for a file
/// that is missing or unreadable; BP_JOURNAL for a journal that cannot be
/// created. Nothing is sent when it fails. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bp_start(
    up: *mut bp_uploader,
    batch: *const bp_batch,
    out: *mut *mut bp_job,
) -> bp_status {
    ffi_panic_boundary!("bp_start", {
        let up = try_ref!(up);
        let batch = try_ref!(batch);
        check_out!(out);
        match up.start(batch) {
            Ok(job) => {
                // SAFETY: checked not NULL; writable by the caller's contract.
                unsafe { out.write(to_boxed_mut_ptr(JobHandle::new(job))) };
                bp_status::BP_OK
            }
            Err(e) => fail(FUNCTION, &e),
        }
    })
}

/// Continues the job recorded in the journal at `journal_path` (UTF-8) —
/// paused, crashed or killed, in this process or another. Files that changed
/// since are restarted (their old upload aborted); the others upload only
/// their missing parts.
///
/// OUT: `*out`, the job, written only on success; free it with bp_job_free.
/// Returns BP_OK; BP_INVALID_ARGUMENT for a NULL argument; BP_INVALID_UTF8;
/// BP_JOURNAL for a journal that is missing, corrupt or not resumable;
/// BP_JOURNAL_LOCKED when another process is running it.
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bp_resume(
    up: *mut bp_uploader,
    journal_path: *const c_char,
    out: *mut *mut bp_job,
) -> bp_status {
    ffi_panic_boundary!("bp_resume", {
        let up = try_ref!(up);
        let journal_path = try_str!(journal_path);
        check_out!(out);
        match up.resume(Path::new(journal_path)) {
            Ok(job) => {
                // SAFETY: checked not NULL; writable by the caller's contract.
                unsafe { out.write(to_boxed_mut_ptr(JobHandle::new(job))) };
                bp_status::BP_OK
            }
            Err(e) => fail(FUNCTION, &e),
        }
    })
}

/// The janitor: aborts every multipart upload in the uploader's bucket under
/// `prefix` (UTF-8; "" for all) initiated at least `older_than_secs` seconds
/// ago — uploads left by crashed processes that kept no journal. Blocks while
/// it lists and aborts.
///
/// OUT: `*aborted`, how many uploads it aborted, written only on success.
/// Returns BP_OK; BP_INVALID_ARGUMENT for a NULL argument; BP_INVALID_UTF8;
/// BP_SERVER, BP_NETWORK or BP_TIMEOUT when listing or aborting failed (the
/// uploads aborted before that stay aborted). Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn bp_cleanup(
    up: *mut bp_uploader,
    prefix: *const c_char,
    older_than_secs: u64,
    aborted: *mut u64,
) -> bp_status {
    ffi_panic_boundary!("bp_cleanup", {
        let up = try_ref!(up);
        let prefix = try_str!(prefix);
        check_out!(aborted);
        match up.cleanup(prefix, Duration::from_secs(older_than_secs)) {
            Ok(n) => {
                // SAFETY: checked not NULL; writable by the caller's contract.
                unsafe { aborted.write(n) };
                bp_status::BP_OK
            }
            Err(e) => fail(FUNCTION, &e),
        }
    })
}

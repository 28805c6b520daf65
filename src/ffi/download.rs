//! Downloads through the C ABI: `bp_download_start` (a batch of
//! destination and key pairs) and `bp_download_prefix` (every object under
//! a prefix, below a directory). Their jobs are `bp_job`s like any other:
//! polled, waited, stopped, paused, resumed (bp_resume) and freed the same
//! way; `bp_file_report.verified` says how each finished file was checked.

use std::ffi::c_char;
use std::path::Path;

use super::batch::bp_batch;
use super::error::{bp_status, fail, invalid_argument};
use super::handle::to_boxed_mut_ptr;
use super::job::{bp_job, JobHandle};
use super::panic::{check_out, ffi_panic_boundary, try_ref, try_str};
use super::uploader::bp_uploader;

/// Downloads `batch`, whose entries are (local destination path, key) pairs
/// — bp_batch_add's `path` is where the object `key` is written — as a new
/// job, with the guarantees of an upload: fail-fast, bounded stop, a
/// truthful report, and pause and bp_resume when the batch has a journal.
/// Checked before any byte moves: every key, every destination (not a
/// directory, no two keys to one path) and every object's size and ETag
/// (HeadObject). Each object is fetched into a temporary file beside its
/// destination (`.NAME.batchput-partial`) and renamed into place only once
/// complete and checked against its ETag (bp_file_report.verified): a
/// destination never holds a partial or unchecked file. The batch is
/// copied: it may be freed or changed afterwards.
///
/// OUT: `*out`, the job, written only on success; free it with bp_job_free.
/// Returns BP_OK; BP_INVALID_ARGUMENT for a NULL argument; BP_INVALID_INPUT
/// for an empty batch, a destination that is a directory, two keys to one
/// path, a missing object; BP_LOCAL_IO for a destination that cannot be
/// written; BP_JOURNAL for a journal that cannot be created; BP_SERVER,
/// BP_NETWORK, BP_TIMEOUT when an object cannot be asked about. Nothing is
/// written when it fails. Thread safety: any thread. (Since 0.3.0.)
#[no_mangle]
pub unsafe extern "C" fn bp_download_start(
    up: *mut bp_uploader,
    batch: *const bp_batch,
    out: *mut *mut bp_job,
) -> bp_status {
    ffi_panic_boundary!("bp_download_start", {
        let up = try_ref!(up);
        let batch = try_ref!(batch);
        check_out!(out);
        match up.download(batch) {
            Ok(job) => {
                // SAFETY: checked not NULL; writable by the caller's contract.
                unsafe { out.write(to_boxed_mut_ptr(JobHandle::new(job))) };
                bp_status::BP_OK
            }
            Err(e) => fail(FUNCTION, &e),
        }
    })
}

/// Lists every object under `prefix` (UTF-8; "" for the whole bucket) and
/// downloads them below the directory `dir` (UTF-8, made if missing) as a
/// new job, like bp_download_start: a key's path below `dir` is what
/// follows the prefix's last '/' ("photos/2024-" puts "photos/2024-01/a"
/// at dir/2024-01/a). Folder markers (keys ending in '/') are skipped. A
/// key that would land outside `dir` — an empty, "." or ".." segment, a
/// leading '/', a backslash — refuses the whole job, naming the key,
/// before anything is written. `journal` (UTF-8) records the job for
/// bp_job_pause and bp_resume; NULL for none. Blocks while it lists.
///
/// OUT: `*out`, the job, written only on success; free it with bp_job_free.
/// Returns BP_OK; BP_INVALID_ARGUMENT for a NULL argument or an empty
/// `dir`; BP_INVALID_UTF8; BP_INVALID_INPUT for no object under the prefix
/// or a key refused; the rest as bp_download_start. Thread safety: any
/// thread. (Since 0.3.0.)
#[no_mangle]
pub unsafe extern "C" fn bp_download_prefix(
    up: *mut bp_uploader,
    prefix: *const c_char,
    dir: *const c_char,
    journal: *const c_char,
    out: *mut *mut bp_job,
) -> bp_status {
    ffi_panic_boundary!("bp_download_prefix", {
        let up = try_ref!(up);
        let prefix = try_str!(prefix);
        let dir = try_str!(dir);
        let journal = if journal.is_null() {
            None
        } else {
            Some(try_str!(journal))
        };
        check_out!(out);
        if dir.is_empty() {
            return invalid_argument(FUNCTION, "argument 'dir' is empty");
        }
        if journal == Some("") {
            return invalid_argument(FUNCTION, "argument 'journal' is empty");
        }
        match up.download_prefix(prefix, Path::new(dir), journal.map(Path::new)) {
            Ok(job) => {
                // SAFETY: checked not NULL; writable by the caller's contract.
                unsafe { out.write(to_boxed_mut_ptr(JobHandle::new(job))) };
                bp_status::BP_OK
            }
            Err(e) => fail(FUNCTION, &e),
        }
    })
}

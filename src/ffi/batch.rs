//! `bp_batch`: the files of one job and their keys.

use std::ffi::c_char;

use super::error::{bp_status, invalid_argument};
use super::handle::{take_box, to_boxed_mut_ptr, Castable};
use super::panic::{ffi_panic_boundary, try_mut, try_str};
use crate::Batch;

/// Files to upload, each with its destination key, in upload order.
///
/// Methods: bp_batch_new, bp_batch_add, bp_batch_set_journal, bp_batch_free;
/// bp_start reads it. Owned by the caller. Not thread-safe: use one from one
/// thread at a time.
pub struct bp_batch {
    _private: [u8; 0],
}

impl Castable for bp_batch {
    type RustType = Batch;
}

/// A new, empty batch. Returns it, which the caller frees with bp_batch_free
/// (NULL only if making it panicked, a bug).
#[no_mangle]
pub extern "C" fn bp_batch_new() -> *mut bp_batch {
    ffi_panic_boundary!("bp_batch_new", { to_boxed_mut_ptr(Batch::new()) })
}

/// Adds the local file `path` to upload to object key `key` (both UTF-8,
/// NUL-terminated, copied). The file itself is checked by bp_start, which
/// stats every file once.
///
/// Returns BP_OK; BP_INVALID_ARGUMENT for a NULL argument, an empty path, or
/// a key S3 cannot take (empty, over 1024 bytes, a control character, a "."
/// or ".." segment); BP_INVALID_UTF8 for a path or key that is not UTF-8.
/// The batch is unchanged on failure.
#[no_mangle]
pub unsafe extern "C" fn bp_batch_add(
    batch: *mut bp_batch,
    path: *const c_char,
    key: *const c_char,
) -> bp_status {
    ffi_panic_boundary!("bp_batch_add", {
        let batch = try_mut!(batch);
        let path = try_str!(path);
        let key = try_str!(key);
        if path.is_empty() {
            return invalid_argument(FUNCTION, "argument 'path' is empty");
        }
        if let Err(e) = crate::plan::check_key(key) {
            return invalid_argument(FUNCTION, format_args!("argument 'key': {}", e.message()));
        }
        batch.add(path, key);
        bp_status::BP_OK
    })
}

/// Records the job started from this batch in a journal file at
/// `journal_path` (UTF-8, copied), which makes bp_job_pause and bp_resume
/// possible.
///
/// Returns BP_OK; BP_INVALID_ARGUMENT for a NULL argument or an empty path;
/// BP_INVALID_UTF8 for a path that is not UTF-8.
#[no_mangle]
pub unsafe extern "C" fn bp_batch_set_journal(
    batch: *mut bp_batch,
    journal_path: *const c_char,
) -> bp_status {
    ffi_panic_boundary!("bp_batch_set_journal", {
        let batch = try_mut!(batch);
        let journal_path = try_str!(journal_path);
        if journal_path.is_empty() {
            return invalid_argument(FUNCTION, "argument 'journal_path' is empty");
        }
        batch.journal(journal_path);
        bp_status::BP_OK
    })
}

/// Frees a batch. NULL is a no-op. Jobs started from it do not need it: it
/// may be freed right after bp_start.
#[no_mangle]
pub unsafe extern "C" fn bp_batch_free(batch: *mut bp_batch) {
    ffi_panic_boundary!("bp_batch_free", {
        drop(unsafe { take_box(batch) });
    })
}

//! What is stored, from C: `bp_list` (a listing read object by object,
//! pages fetched as they are needed) and `bp_object`; `bp_delete_prefix`;
//! `bp_presign`.

use std::collections::VecDeque;
use std::ffi::{c_char, CString};
use std::mem::offset_of;
use std::time::{Duration, UNIX_EPOCH};

use super::error::{bp_status, fail, set_last_error};
use super::handle::{take_box, to_boxed_mut_ptr, Castable};
use super::panic::{check_out, ffi_panic_boundary, try_mut, try_ref, try_str};
use super::report::{fill_size, write_fields};
use super::uploader::bp_uploader;
use crate::store::{ListedObject, Store};
use crate::{Error, ErrorKind};

/// A listing of the objects under a prefix: bp_list_open makes one,
/// bp_list_next reads it one object at a time (fetching a page of up to
/// 1,000 from the server when it runs out), bp_list_free ends it.
///
/// Owned by the caller; it keeps its own reference to the uploader's client,
/// so it stays usable after bp_uploader_free. Thread safety: one thread at a
/// time (it is a cursor); different listings are independent. (Since 0.3.0.)
pub struct bp_list {
    _private: [u8; 0],
}

/// What a `bp_list` points to.
pub(crate) struct ListHandle {
    store: Store,
    prefix: String,
    /// The next page's continuation token; `None` before the first page.
    token: Option<String>,
    /// The last page was read.
    last_page: bool,
    page: VecDeque<ListedObject>,
    /// The strings the last bp_object lends out.
    current: Option<(CString, CString)>,
}

impl Castable for bp_list {
    type RustType = ListHandle;
}

/// One object of a listing, filled by bp_list_next.
///
/// Set `struct_size = sizeof(bp_object)` before the call (the rule is at the
/// top of this header); fields are only ever appended.
///
/// The strings are owned by the bp_list and stay valid until the next
/// bp_list_next on it or bp_list_free. Never free them. (Since 0.3.0.)
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct bp_object {
    /// IN: sizeof(bp_object) as the caller was compiled. OUT: the bytes the
    /// library filled.
    pub struct_size: usize,
    /// The key, exactly as stored (UTF-8, NUL-terminated).
    pub key: *const c_char,
    /// The ETag, quotes removed ("" when the server does not say).
    pub etag: *const c_char,
    /// Size in bytes.
    pub size: u64,
    /// When the object was last written, in seconds since the Unix epoch;
    /// -1 when the server does not say.
    pub last_modified: i64,
}

/// sizeof(bp_object) in its first version.
const OBJECT_MIN_SIZE: usize = offset_of!(bp_object, last_modified) + 8;

/// Starts listing the objects in the uploader's bucket under `prefix`
/// (UTF-8; "" for the whole bucket). Nothing is sent yet: the first
/// bp_list_next asks for the first page.
///
/// OUT: `*out`, the listing, written only on success; free it with
/// bp_list_free.
/// Returns BP_OK; BP_INVALID_ARGUMENT for a NULL argument; BP_INVALID_UTF8.
/// Thread safety: any thread. (Since 0.3.0.)
#[no_mangle]
pub unsafe extern "C" fn bp_list_open(
    up: *mut bp_uploader,
    prefix: *const c_char,
    out: *mut *mut bp_list,
) -> bp_status {
    ffi_panic_boundary!("bp_list_open", {
        let up = try_ref!(up);
        let prefix = try_str!(prefix);
        check_out!(out);
        let list = ListHandle {
            store: up.store().clone(),
            prefix: prefix.to_string(),
            token: None,
            last_page: false,
            page: VecDeque::new(),
            current: None,
        };
        // SAFETY: checked not NULL; writable by the caller's contract.
        unsafe { out.write(to_boxed_mut_ptr(list)) };
        bp_status::BP_OK
    })
}

/// Reads the next object of the listing into `*out`, asking the server for
/// the next page (up to 1,000 objects) when the one in hand is used up.
/// Objects come in the server's order (UTF-8 binary order on S3), keys
/// exact.
///
/// OUT: `*out`, written only when BP_OK is returned.
/// Returns BP_OK with an object; BP_DONE (not an error) when there are no
/// more, and again on every later call; BP_INVALID_ARGUMENT for a NULL
/// argument or a struct_size too small; BP_SERVER, BP_NETWORK or BP_TIMEOUT
/// when a page could not be fetched (after retries; calling again asks for
/// that page again). (Since 0.3.0.)
#[no_mangle]
pub unsafe extern "C" fn bp_list_next(list: *mut bp_list, out: *mut bp_object) -> bp_status {
    ffi_panic_boundary!("bp_list_next", {
        let list = try_mut!(list);
        check_out!(out);
        // SAFETY: checked not NULL; by contract it points to a bp_object.
        let size = match unsafe { fill_size(FUNCTION, out, OBJECT_MIN_SIZE, "bp_object") } {
            Ok(size) => size,
            Err(status) => return status,
        };
        while list.page.is_empty() && !list.last_page {
            match list
                .store
                .list_objects_page(&list.prefix, list.token.as_deref(), None)
            {
                Ok((objects, next)) => {
                    list.page = objects.into();
                    list.last_page = next.is_none();
                    list.token = next;
                }
                Err(e) => return fail(FUNCTION, &e),
            }
        }
        let Some(object) = list.page.pop_front() else {
            list.current = None;
            return bp_status::BP_DONE;
        };
        let (Ok(key), Ok(etag)) = (
            CString::new(object.key.as_str()),
            CString::new(object.etag.as_str()),
        ) else {
            let e = Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the listed key '{}' contains a NUL byte: it cannot be a C string",
                    object.key.escape_debug()
                ),
            );
            return fail(FUNCTION, &e);
        };
        let value = bp_object {
            struct_size: size,
            key: key.as_ptr(),
            etag: etag.as_ptr(),
            size: object.size,
            last_modified: object
                .last_modified
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(-1, |d| d.as_secs() as i64),
        };
        // The CStrings' bytes are on the heap: moving them here keeps the
        // pointers valid until the next call replaces them.
        list.current = Some((key, etag));
        write_fields!(
            out,
            value,
            size,
            bp_object,
            [key, etag, size, last_modified]
        );
        bp_status::BP_OK
    })
}

/// Frees a listing (and the strings of its last bp_object). NULL is a no-op.
/// (Since 0.3.0.)
#[no_mangle]
pub unsafe extern "C" fn bp_list_free(list: *mut bp_list) {
    ffi_panic_boundary!("bp_list_free", {
        drop(unsafe { take_box(list) });
    })
}

/// Deletes every object in the uploader's bucket under `prefix` (UTF-8; ""
/// for the whole bucket): lists them, then deletes them with DeleteObjects,
/// 1,000 keys a request, each key confirmed by the server. Blocks until
/// done. Objects written under the prefix after the listing are left alone.
///
/// OUT: `*deleted`, how many objects were deleted, written on BP_OK and
/// also when some keys were not deleted (then the status is the failure's).
/// Returns BP_OK when every listed object was deleted; BP_INVALID_ARGUMENT
/// for a NULL argument; BP_INVALID_UTF8; BP_SERVER when the server refused
/// some keys (AccessDenied, say): bp_last_error names the first key not
/// deleted, its error code and message, and how many were not deleted;
/// BP_NETWORK or BP_TIMEOUT when a request failed as a whole (its keys and
/// every later one count as not deleted). When the listing itself fails,
/// nothing was deleted and `*deleted` is not written.
/// Thread safety: any thread. (Since 0.3.0.)
#[no_mangle]
pub unsafe extern "C" fn bp_delete_prefix(
    up: *mut bp_uploader,
    prefix: *const c_char,
    deleted: *mut u64,
) -> bp_status {
    ffi_panic_boundary!("bp_delete_prefix", {
        let up = try_ref!(up);
        let prefix = try_str!(prefix);
        check_out!(deleted);
        let report = match up.delete_prefix(prefix) {
            Ok(report) => report,
            Err(e) => return fail(FUNCTION, &e),
        };
        // SAFETY: checked not NULL; writable by the caller's contract.
        unsafe { deleted.write(report.deleted.len() as u64) };
        let Some(first) = report.failed.first() else {
            return bp_status::BP_OK;
        };
        let status = report
            .error
            .as_ref()
            .map_or(bp_status::BP_SERVER, |e| bp_status::from_kind(e.kind()));
        set_last_error(
            FUNCTION,
            format_args!(
                "{} of {} objects not deleted; the first, '{}': {}{}{}",
                report.failed.len(),
                report.failed.len() + report.deleted.len(),
                first.key.escape_debug(),
                first.code,
                if first.code.is_empty() { "" } else { ": " },
                first.message
            ),
        );
        status
    })
}

/// Writes a SigV4 presigned URL into `buf`: for `method` ("GET" or "PUT",
/// any case) on `key` (UTF-8), valid for `expires_secs` seconds (1 to
/// 604800, 7 days). Anyone holding it may download (GET) or upload (PUT)
/// that object with a plain HTTP client, no credentials, until it expires.
/// Nothing is sent to the server.
///
/// OUT: `*written` (when `written` is not NULL), the URL's length in bytes
/// including its NUL — on BP_OK and on BP_BUFFER_TOO_SMALL, so a caller can
/// size its buffer and call again. `buf` gets the URL and a NUL only on
/// BP_OK.
/// Returns BP_OK; BP_BUFFER_TOO_SMALL when `len` is less than that length
/// (`buf` untouched); BP_INVALID_ARGUMENT for a NULL argument (`buf` may be
/// NULL when `len` is 0), another method, or an expiry out of range;
/// BP_INVALID_UTF8; BP_INVALID_INPUT for an empty key (or, for PUT, a key
/// an upload would refuse). Thread safety: any thread. (Since 0.3.0.)
#[no_mangle]
pub unsafe extern "C" fn bp_presign(
    up: *mut bp_uploader,
    method: *const c_char,
    key: *const c_char,
    expires_secs: u32,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> bp_status {
    ffi_panic_boundary!("bp_presign", {
        let up = try_ref!(up);
        let method = try_str!(method);
        let key = try_str!(key);
        if buf.is_null() && len > 0 {
            return super::error::invalid_argument(
                FUNCTION,
                format_args!("argument 'buf' is NULL but 'len' is {len}"),
            );
        }
        let url = match up.presign(method, key, Duration::from_secs(expires_secs.into())) {
            Ok(url) => url,
            Err(e) => return fail(FUNCTION, &e),
        };
        let needed = url.len() + 1;
        if !written.is_null() {
            // SAFETY: not NULL, writable by the caller's contract.
            unsafe { written.write(needed) };
        }
        if len < needed {
            set_last_error(
                FUNCTION,
                format_args!("the URL needs {needed} bytes with its NUL; 'len' is {len}"),
            );
            return bp_status::BP_BUFFER_TOO_SMALL;
        }
        // SAFETY: buf has len >= needed writable bytes; the URL is ours.
        unsafe {
            std::ptr::copy_nonoverlapping(url.as_ptr(), buf.cast::<u8>(), url.len());
            *buf.add(url.len()) = 0;
        }
        bp_status::BP_OK
    })
}

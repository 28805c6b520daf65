//! `bp_config`: an uploader's options, set as string keys and values.

use std::ffi::c_char;

use super::error::{bp_status, fail};
use super::handle::{take_box, to_boxed_mut_ptr, Castable};
use super::panic::{ffi_panic_boundary, try_mut, try_str};
use crate::Config;

/// The options of an uploader, as string keys and values (so every language
/// can set them and a new option never changes the ABI).
///
/// Methods: bp_config_new, bp_config_set, bp_config_free; bp_uploader_new
/// reads it. Owned by the caller. Not thread-safe: use one from one thread
/// at a time.
pub struct bp_config {
    _private: [u8; 0],
}

impl Castable for bp_config {
    type RustType = Config;
}

/// A new configuration with every option at its default. Set at least
/// "endpoint" and "bucket" (and credentials, unless the AWS_ACCESS_KEY_ID /
/// AWS_SECRET_ACCESS_KEY environment variables hold them).
///
/// Returns the configuration, which the caller frees with bp_config_free
/// (NULL only if making it panicked, a bug).
#[no_mangle]
pub extern "C" fn bp_config_new() -> *mut bp_config {
    ffi_panic_boundary!("bp_config_new", { to_boxed_mut_ptr(Config::new()) })
}

/// Sets option `key` to `value` (both UTF-8, NUL-terminated, copied).
///
/// Keys: endpoint (one URL, or several separated by commas: nodes of one
/// cluster, for failover), region, bucket, access_key, secret_key,
/// session_token, addressing (path|virtual), workers, part_size,
/// multipart_threshold, retries, stall_timeout_ms, deadline_ms,
/// connect_timeout_ms, request_timeout_ms, cleanup_timeout_ms, max_open_files,
/// max_pending_uploads, rate_limit (bytes/s), acl, content_type,
/// storage_class, meta.NAME (user metadata), integrity
/// (auto|etag-md5|content-md5|crc32c|none), ca_file, proxy, strict_inputs
/// (true|false: special files in a directory walk are errors). Sizes accept
/// "8388608", "8MiB", "1GiB", "500KB".
///
/// Returns BP_OK; BP_INVALID_ARGUMENT for a NULL argument, an unknown key or
/// a bad value, with a message naming the key (bp_last_error); the option
/// keeps its previous value then. BP_INVALID_UTF8 for a string that is not
/// UTF-8.
#[no_mangle]
pub unsafe extern "C" fn bp_config_set(
    cfg: *mut bp_config,
    key: *const c_char,
    value: *const c_char,
) -> bp_status {
    ffi_panic_boundary!("bp_config_set", {
        let cfg = try_mut!(cfg);
        let key = try_str!(key);
        let value = try_str!(value);
        // Set on a copy: a rejected value leaves the configuration as it was.
        let mut next = cfg.clone();
        match next.set(key, value) {
            Ok(()) => {
                *cfg = next;
                bp_status::BP_OK
            }
            Err(e) => fail(FUNCTION, &e),
        }
    })
}

/// Frees a configuration. NULL is a no-op. Uploaders made from it keep their
/// own copy, so it may be freed right after bp_uploader_new.
#[no_mangle]
pub unsafe extern "C" fn bp_config_free(cfg: *mut bp_config) {
    ffi_panic_boundary!("bp_config_free", {
        drop(unsafe { take_box(cfg) });
    })
}

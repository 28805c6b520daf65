//! The C ABI: every `extern "C"` item of batchput, and nothing else.
//! `build.rs` runs cbindgen over this folder to write `include/batchput.h`,
//! so the docs here are the header's docs.
//!
//! One module per C object: `config` (`bp_config`), `batch` (`bp_batch`),
//! `uploader` (`bp_uploader`, `bp_start`, `bp_resume`, `bp_cleanup`),
//! `download` (`bp_download_start`, `bp_download_prefix`), `job`
//! (`bp_job` and its calls), `report` (`bp_progress`, `bp_file_report`, the
//! state enums and the `struct_size` rule), `error` (`bp_status`,
//! `bp_last_error`, `bp_status_str`), `log` (`bp_set_log_level`,
//! `bp_log_next`), `objects` (`bp_list`, `bp_object`, `bp_delete_prefix`,
//! `bp_presign`); `panic` and `handle` hold the machinery every export
//! shares. `capi/cbindgen.toml` carries the header's introduction (the
//! fixed-width types and the struct_size rule), which cbindgen cannot take
//! from a module doc.
//!
//! # Conventions (the README's "C ABI" section states them for C users)
//! - Handles are opaque; each constructor names its `_free`; `_free(NULL)`
//!   does nothing; freeing twice is undefined behaviour.
//! - A call that can fail returns a [`bp_status`]: `BP_OK` (0) on success.
//!   Output parameters (marked OUT) are written only on success.
//! - Statuses and states cross the ABI as `uint32_t` typedefs
//!   (`#[repr(u32)]` enums: cbindgen writes the enum for the names and
//!   `typedef uint32_t` for the type), never as C enum types, whose size
//!   the C compiler picks. An argument C passes is a plain `u32`, never
//!   one of these enums: an unlisted value would be undefined behaviour.
//! - Structs the library fills start with `struct_size`, set by the caller
//!   (`report.rs` states the rule); fields are only ever appended.
//! - Every pointer argument is checked: NULL gives `BP_INVALID_ARGUMENT`
//!   (NULL or 0 for the few functions that return no status), never a crash.
//! - Strings in are UTF-8 and NUL-terminated, copied before the call
//!   returns; `BP_INVALID_UTF8` otherwise. Strings out are copied into the
//!   caller's buffer (snprintf-style), or are static, or are owned by a job
//!   and live as long as it: the caller never frees a string.
//! - A panic never crosses into C: the call returns `BP_PANIC` (or NULL/0).
//! - Errors: `bp_status_str` gives static text for a status;
//!   `bp_last_error` this thread's last failure message, naming the
//!   function and the argument or option at fault; `bp_job_last_error` a
//!   job's own failure.
//! - No callbacks: callers poll (the log too: bp_log_next), so no library
//!   thread ever runs caller code (which keeps Python's GIL and Go's
//!   scheduler out of trouble).
//!
//! The exports are `unsafe` in Rust because they trust their pointer
//! arguments to be NULL or live handles of the right type — the contract
//! above, which the per-function docs do not repeat.
#![allow(non_camel_case_types, clippy::missing_safety_doc)]

mod batch;
mod config;
mod download;
mod error;
mod handle;
mod job;
mod log;
mod objects;
mod panic;
mod report;
mod uploader;

pub use self::log::*;
pub use batch::*;
pub use config::*;
pub use download::*;
pub use error::*;
pub use job::*;
pub use objects::*;
pub use report::*;
pub use uploader::*;

/// Parses a decimal version component at compile time.
const fn version_component(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut n = 0u32;
    let mut i = 0;
    while i < b.len() {
        assert!(b[i].is_ascii_digit(), "version component is not a number");
        n = n * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    n
}

/// MAJOR * 1000000 + MINOR * 1000 + PATCH of this build.
const VERSION_NUMBER: u32 = version_component(env!("CARGO_PKG_VERSION_MAJOR")) * 1_000_000
    + version_component(env!("CARGO_PKG_VERSION_MINOR")) * 1_000
    + version_component(env!("CARGO_PKG_VERSION_PATCH"));

/// The library's version as MAJOR * 1000000 + MINOR * 1000 + PATCH (0.1.0 is
/// 1000, 1.2.3 is 1002003): compare it with BATCHPUT_VERSION_NUMBER to check
/// that the library loaded is the one the header describes.
#[no_mangle]
pub extern "C" fn bp_version_number() -> u32 {
    VERSION_NUMBER
}

/// The library's version as static text ("0.2.0"), like BATCHPUT_VERSION.
/// Never to be freed.
#[no_mangle]
pub extern "C" fn bp_version() -> *const std::ffi::c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

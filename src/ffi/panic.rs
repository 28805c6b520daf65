//! The panic boundary and the argument checks every export goes through.
//!
//! A panic must never unwind into C (that is undefined behaviour), so each
//! export wraps its body in [`ffi_panic_boundary!`]: a panic becomes
//! `BP_PANIC` (or NULL, or 0, see [`PanicOrDefault`]) and a message for
//! `bp_last_error`. The export's signature stays outside the macro so that
//! cbindgen, which does not expand macros, still sees it.
//!
//! The macro also defines a `FUNCTION` constant holding the export's name;
//! the argument-check macros below use it, so every message says which
//! function and which argument were at fault ("bp_batch_add: argument 'key'
//! is NULL").

use std::any::Any;
use std::ffi::{c_char, CStr};

use super::error::{bp_status, set_last_error};

/// What an export returns when its body panicked.
pub(crate) trait PanicOrDefault {
    fn value() -> Self;
}

impl PanicOrDefault for bp_status {
    fn value() -> Self {
        bp_status::BP_PANIC
    }
}

impl<T> PanicOrDefault for *mut T {
    fn value() -> Self {
        std::ptr::null_mut()
    }
}

impl PanicOrDefault for usize {
    fn value() -> Self {
        0
    }
}

impl PanicOrDefault for () {
    fn value() -> Self {}
}

/// Records the panic for `bp_last_error` and picks the return value.
pub(crate) fn on_panic<T: PanicOrDefault>(function: &str, payload: Box<dyn Any + Send>) -> T {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".to_string());
    set_last_error(
        function,
        format_args!("panicked (a bug in batchput, please report it): {what}"),
    );
    T::value()
}

/// Runs an export's body, turning a panic into the export's failure value.
/// Usage: `ffi_panic_boundary!("bp_name", { body })`.
macro_rules! ffi_panic_boundary {
    ($name:literal, $body:block) => {{
        #[allow(dead_code)]
        const FUNCTION: &str = $name;
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body)) {
            Ok(ret) => ret,
            Err(payload) => $crate::ffi::panic::on_panic(FUNCTION, payload),
        }
    }};
}

/// `&T` behind a handle argument, or return `BP_INVALID_ARGUMENT` naming it.
macro_rules! try_ref {
    ($ptr:ident) => {
        match unsafe { $crate::ffi::handle::try_ref($ptr) } {
            Some(r) => r,
            None => return $crate::ffi::error::null_argument(FUNCTION, stringify!($ptr)),
        }
    };
}

/// `&mut T` behind a handle argument, or return `BP_INVALID_ARGUMENT`.
macro_rules! try_mut {
    ($ptr:ident) => {
        match unsafe { $crate::ffi::handle::try_mut($ptr) } {
            Some(r) => r,
            None => return $crate::ffi::error::null_argument(FUNCTION, stringify!($ptr)),
        }
    };
}

/// A `&str` from a NUL-terminated argument: `BP_INVALID_ARGUMENT` when it
/// is NULL, `BP_INVALID_UTF8` when it is not UTF-8.
macro_rules! try_str {
    ($ptr:ident) => {
        match unsafe { $crate::ffi::panic::str_arg($ptr) } {
            Ok(s) => s,
            Err(status) => {
                return $crate::ffi::panic::bad_str(FUNCTION, stringify!($ptr), status, $ptr)
            }
        }
    };
}

/// Checks that an output argument is not NULL, before any work is done,
/// so a call never does something whose result it cannot hand back.
macro_rules! check_out {
    ($ptr:ident) => {
        if $ptr.is_null() {
            return $crate::ffi::error::null_argument(FUNCTION, stringify!($ptr));
        }
    };
}

pub(crate) use {check_out, ffi_panic_boundary, try_mut, try_ref, try_str};

/// The string behind `ptr`, or the status saying why there is none.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn str_arg<'a>(ptr: *const c_char) -> Result<&'a str, bp_status> {
    if ptr.is_null() {
        return Err(bp_status::BP_INVALID_ARGUMENT);
    }
    // SAFETY: not NULL, and NUL-terminated by the caller's contract.
    let c = unsafe { CStr::from_ptr(ptr) };
    c.to_str().map_err(|_| bp_status::BP_INVALID_UTF8)
}

/// Records why a string argument was refused, and returns `status`.
pub(crate) fn bad_str(
    function: &str,
    name: &str,
    status: bp_status,
    ptr: *const c_char,
) -> bp_status {
    if status == bp_status::BP_INVALID_UTF8 {
        // SAFETY: str_arg only reports BP_INVALID_UTF8 for a non-NULL,
        // NUL-terminated string.
        let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
        let at = std::str::from_utf8(bytes)
            .err()
            .map_or(0, |e| e.valid_up_to());
        set_last_error(
            function,
            format_args!(
                "argument '{name}' is not valid UTF-8 (bad byte 0x{:02x} at offset {at}): \
                 batchput takes UTF-8 strings only",
                bytes.get(at).copied().unwrap_or(0)
            ),
        );
        status
    } else {
        super::error::null_argument(function, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exploding(fail: bool) -> bp_status {
        ffi_panic_boundary!("bp_test_export", {
            if fail {
                panic!("boom {}", 42);
            }
            bp_status::BP_OK
        })
    }

    fn exploding_ptr() -> *mut u8 {
        ffi_panic_boundary!("bp_test_ptr", { panic!("static boom") })
    }

    #[test]
    fn a_panic_becomes_bp_panic_with_its_message() {
        assert_eq!(exploding(false), bp_status::BP_OK);
        assert_eq!(exploding(true), bp_status::BP_PANIC);
        let mut buf = [0 as c_char; 256];
        let mut n = 0;
        // SAFETY: a buffer of its own length.
        assert_eq!(
            unsafe { super::super::bp_last_error(buf.as_mut_ptr(), buf.len(), &mut n) },
            bp_status::BP_OK
        );
        // SAFETY: bp_last_error NUL-terminates.
        let msg = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap();
        assert!(msg.starts_with("bp_test_export: panicked"), "{msg}");
        assert!(msg.ends_with("boom 42"), "{msg}");
        assert!(exploding_ptr().is_null());
    }
}

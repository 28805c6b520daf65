//! Opaque handles: how a C pointer type maps to the Rust value behind it.
//!
//! Every handle C sees (`bp_config *`, `bp_job *`, ...) is a `Box` of its
//! Rust value, cast to a zero-sized opaque struct. Tying each C type to its
//! Rust type through [`Castable`] means a cast to the wrong type does not
//! compile (rustls-ffi's scheme, minus the Arc and borrow cases nobody here
//! needs).

/// A C handle type and the Rust value it stands for.
pub(crate) trait Castable {
    /// The value a handle of this type points to.
    type RustType;
}

/// Moves `value` to the heap and hands out the pointer C owns from now on.
pub(crate) fn to_boxed_mut_ptr<C: Castable>(value: C::RustType) -> *mut C {
    Box::into_raw(Box::new(value)).cast()
}

/// Borrows the value behind a handle; `None` for NULL.
///
/// # Safety
/// `ptr` is NULL or came from [`to_boxed_mut_ptr`] and was not freed.
pub(crate) unsafe fn try_ref<'a, C: Castable>(ptr: *const C) -> Option<&'a C::RustType> {
    // SAFETY: by the caller's contract, a non-NULL ptr is a live Box.
    unsafe { ptr.cast::<C::RustType>().as_ref() }
}

/// Mutably borrows the value behind a handle; `None` for NULL.
///
/// # Safety
/// As [`try_ref`], and no other reference to the value is alive.
pub(crate) unsafe fn try_mut<'a, C: Castable>(ptr: *mut C) -> Option<&'a mut C::RustType> {
    // SAFETY: by the caller's contract.
    unsafe { ptr.cast::<C::RustType>().as_mut() }
}

/// Takes back ownership of the value behind a handle; `None` for NULL.
///
/// # Safety
/// As [`try_mut`]; the handle must not be used afterwards.
pub(crate) unsafe fn take_box<C: Castable>(ptr: *mut C) -> Option<Box<C::RustType>> {
    // SAFETY: by the caller's contract, a non-NULL ptr is a live Box.
    (!ptr.is_null()).then(|| unsafe { Box::from_raw(ptr.cast::<C::RustType>()) })
}

//! What a job reports to C: its state enums (`bp_job_state`,
//! `bp_file_state`), the structs bp_job_poll and bp_job_file fill
//! (`bp_progress`, `bp_file_report`), and the `struct_size` rule that lets
//! those structs grow without breaking callers built against an older
//! header.
//!
//! # struct_size
//! The caller sets `out->struct_size = sizeof(bp_progress)` (or
//! `sizeof(bp_file_report)`) before the call. Fields are only ever
//! appended, so a caller built against an older, shorter struct has a
//! smaller size: the library writes only the fields that lie wholly within
//! `struct_size` and never touches a byte past it. A newer caller with an
//! older library gets the fields the library knows, and `struct_size` is
//! set to the bytes the library filled (the smaller of the two sizes), so
//! the caller can tell which of its fields were not written. A
//! `struct_size` below the first version of the struct (0, say: a caller
//! that forgot) gets BP_INVALID_ARGUMENT and nothing is written.

use std::ffi::c_char;
use std::mem::offset_of;

use super::error::{bp_status, invalid_argument};
use crate::{FileState, Integrity, JobState, Verification};

/// Where a job is in its life. In C a `uint32_t`, like bp_status.
#[repr(u32)]
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

/// What happened to one file. In C a `uint32_t`, like bp_status; a caller
/// should treat a value it does not know (from a newer library) as "not
/// finished".
#[repr(u32)]
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
    /// (bp_file_report.upload_id names it, as do bp_job_last_error and the
    /// journal); bp_cleanup or bp_resume will find it.
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

/// How a job's data is checked (`bp_progress.integrity_used`). In C a
/// `uint32_t`, like bp_status; a value this header does not know (from a
/// newer library) is a mode it does not know either.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum bp_integrity {
    /// Not settled yet (the job is queued, or probing the store), or the
    /// job ended before it had data to send.
    BP_INTEGRITY_UNKNOWN = 0,
    /// MD5 of each part computed while it is sent, compared with the ETag.
    BP_INTEGRITY_ETAG_MD5 = 1,
    /// Content-MD5 sent: the server rejects a corrupted part.
    BP_INTEGRITY_CONTENT_MD5 = 2,
    /// x-amz-checksum-crc32c sent: the server rejects a corrupted part.
    BP_INTEGRITY_CRC32C = 3,
    /// Nothing checked (integrity=none).
    BP_INTEGRITY_NONE = 4,
}

impl From<Option<Integrity>> for bp_integrity {
    fn from(mode: Option<Integrity>) -> Self {
        match mode {
            // `Auto` is resolved before it is published.
            None | Some(Integrity::Auto) => bp_integrity::BP_INTEGRITY_UNKNOWN,
            Some(Integrity::EtagMd5) => bp_integrity::BP_INTEGRITY_ETAG_MD5,
            Some(Integrity::ContentMd5) => bp_integrity::BP_INTEGRITY_CONTENT_MD5,
            Some(Integrity::Crc32c) => bp_integrity::BP_INTEGRITY_CRC32C,
            Some(Integrity::None) => bp_integrity::BP_INTEGRITY_NONE,
        }
    }
}

/// How a downloaded file was checked before it took its name
/// (`bp_file_report.verified`). In C a `uint32_t`, like bp_status; a value
/// this header does not know (from a newer library) is a check it does not
/// know either.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum bp_verified {
    /// Not checked yet (the file is not complete), or an uploaded file.
    BP_VERIFIED_NONE = 0,
    /// The MD5 of its bytes is the object's ETag (a single-part object).
    BP_VERIFIED_MD5 = 1,
    /// The MD5s of its parts, along the object's own part boundaries, give
    /// the object's multipart ETag.
    BP_VERIFIED_MULTIPART_ETAG = 2,
    /// Only its size, and the object's ETag at every GET: the store's ETag
    /// cannot be recomputed (encrypted objects, unknown part boundaries).
    BP_VERIFIED_SIZE = 3,
    /// The CRC32C of its bytes is the one the store keeps for the whole
    /// object (`x-amz-checksum-type: FULL_OBJECT`), where the ETag cannot
    /// be recomputed along the ranges fetched.
    BP_VERIFIED_CRC32C = 4,
}

impl From<Option<Verification>> for bp_verified {
    fn from(v: Option<Verification>) -> Self {
        match v {
            None => bp_verified::BP_VERIFIED_NONE,
            Some(Verification::Md5) => bp_verified::BP_VERIFIED_MD5,
            Some(Verification::MultipartEtag) => bp_verified::BP_VERIFIED_MULTIPART_ETAG,
            Some(Verification::Size) => bp_verified::BP_VERIFIED_SIZE,
            Some(Verification::Crc32c) => bp_verified::BP_VERIFIED_CRC32C,
        }
    }
}

/// A snapshot of a job, copied out by bp_job_poll. Bytes and parts count
/// only what the server acknowledged, except `bytes_sent`.
///
/// Set `struct_size = sizeof(bp_progress)` before the call (the rule is at
/// the top of this header). The first version ends with `elapsed_ms`:
/// struct_size must be at least offsetof(bp_progress, bytes_sent). The
/// fields from `bytes_sent` on are appended ones, written only when
/// struct_size covers them.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct bp_progress {
    /// IN: sizeof(bp_progress) as the caller was compiled. OUT: the bytes
    /// the library filled.
    pub struct_size: usize,
    /// The job's state (a bp_job_state).
    pub state: bp_job_state,
    /// The first fatal error (BP_STOPPED or BP_PAUSED when the caller ended
    /// the job); BP_OK if none. bp_job_last_error has its message.
    pub error: bp_status,
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
    /// Bytes written to the network, acknowledged or not: runs ahead of
    /// `bytes_done` while parts are on the wire, and goes back down when a
    /// part is retried. (Since 0.2.0.)
    pub bytes_sent: u64,
    /// How the job's data is checked (a bp_integrity): the configured mode,
    /// or what integrity=auto chose for this store (BP_INTEGRITY_CRC32C or
    /// BP_INTEGRITY_ETAG_MD5); BP_INTEGRITY_UNKNOWN until the job has
    /// settled it. (Since 0.2.0.)
    pub integrity_used: bp_integrity,
}

/// What happened to one file, copied out by bp_job_file.
///
/// Set `struct_size = sizeof(bp_file_report)` before the call (the rule is
/// at the top of this header). The first version ends with `error`:
/// struct_size must be at least offsetof(bp_file_report, upload_id). The
/// fields from `upload_id` on are appended ones, written only when
/// struct_size covers them.
///
/// The strings are owned by the job and stay valid, unchanged, until
/// bp_job_free, however often bp_job_file is called and from whichever
/// thread: a later call may return a different pointer (an ETag once the
/// file completes), never change the text behind an earlier one. Never free
/// them.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct bp_file_report {
    /// IN: sizeof(bp_file_report) as the caller was compiled. OUT: the bytes
    /// the library filled.
    pub struct_size: usize,
    /// The local file (NUL-terminated).
    pub path: *const c_char,
    /// The destination key (UTF-8, NUL-terminated).
    pub key: *const c_char,
    /// The object's ETag once the file is complete (quotes removed); NULL
    /// before.
    pub etag: *const c_char,
    /// Size in bytes, as planned.
    pub size: u64,
    /// Bytes acknowledged by the server.
    pub bytes_done: u64,
    /// Average speed while the file uploaded, bytes per second.
    pub avg_speed_bps: f64,
    /// Highest speed seen for the file.
    pub peak_speed_bps: f64,
    /// Its state (a bp_file_state).
    pub state: bp_file_state,
    /// This file's own error, when it failed; BP_OK otherwise.
    pub error: bp_status,
    /// The multipart upload id while the file has one open on the server
    /// (running, paused, and BP_FILE_ABORT_FAILED: the upload to abort);
    /// NULL when none. (Since 0.2.0.)
    pub upload_id: *const c_char,
    /// For a download, how the file was checked once complete (a
    /// bp_verified); BP_VERIFIED_NONE before, and for uploads. (Since
    /// 0.3.0.)
    pub verified: bp_verified,
}

/// sizeof(bp_progress) in the first version that had struct_size: the
/// fields before `bytes_sent`.
pub(crate) const PROGRESS_MIN_SIZE: usize = offset_of!(bp_progress, bytes_sent);

/// sizeof(bp_file_report) in the first version that had struct_size: the
/// fields before `upload_id`.
pub(crate) const FILE_REPORT_MIN_SIZE: usize = offset_of!(bp_file_report, upload_id);

/// Reads the caller's `struct_size` (the first field of `*out`) and checks
/// it against the first version's size. Returns the bytes to fill: the
/// smaller of the caller's size and ours.
///
/// # Safety
/// `out` is not NULL and points to at least a `usize`, writable, aligned.
pub(crate) unsafe fn fill_size<T>(
    function: &str,
    out: *mut T,
    min: usize,
    type_name: &str,
) -> Result<usize, bp_status> {
    // SAFETY: by the contract, struct_size is the first field of *out.
    let given = unsafe { out.cast::<usize>().read() };
    if given < min {
        return Err(invalid_argument(
            function,
            format_args!(
                "argument 'out': struct_size is {given}, less than the {min} bytes of the \
                 first {type_name}: set out->struct_size = sizeof({type_name}) before the call"
            ),
        ));
    }
    Ok(given.min(std::mem::size_of::<T>()))
}

/// Writes each listed field of `$value` into `*$out` when it lies wholly
/// within the first `$size` bytes, then sets `struct_size` to `$size`.
/// Field by field, so no byte past `$size` (and no padding) is touched.
macro_rules! write_fields {
    ($out:expr, $value:expr, $size:expr, $ty:ty, [$($field:ident),* $(,)?]) => {{
        let out: *mut $ty = $out;
        let value: $ty = $value;
        let size: usize = $size;
        $(
            if ::std::mem::offset_of!($ty, $field) + ::std::mem::size_of_val(&value.$field) <= size {
                // SAFETY: the caller's struct has `size` writable bytes and
                // the field lies within them; *out is aligned by contract.
                unsafe { ::std::ptr::addr_of_mut!((*out).$field).write(value.$field) };
            }
        )*
        // SAFETY: struct_size is the first field; size >= its end.
        unsafe { ::std::ptr::addr_of_mut!((*out).struct_size).write(size) };
    }};
}

pub(crate) use write_fields;

/// Copies `value` into the caller's `*out` under the struct_size rule.
///
/// # Safety
/// `out` points to a caller's bp_progress whose struct_size bytes are
/// writable; `size` came from [`fill_size`].
pub(crate) unsafe fn write_progress(out: *mut bp_progress, value: bp_progress, size: usize) {
    write_fields!(
        out,
        value,
        size,
        bp_progress,
        [
            state,
            error,
            files_total,
            files_done,
            files_failed,
            parts_total,
            parts_done,
            bytes_total,
            bytes_done,
            speed_bps,
            avg_speed_bps,
            peak_speed_bps,
            elapsed_ms,
            bytes_sent,
            integrity_used,
        ]
    );
}

/// Copies `value` into the caller's `*out` under the struct_size rule.
///
/// # Safety
/// As [`write_progress`], for a bp_file_report.
pub(crate) unsafe fn write_file_report(
    out: *mut bp_file_report,
    value: bp_file_report,
    size: usize,
) {
    write_fields!(
        out,
        value,
        size,
        bp_file_report,
        [
            path,
            key,
            etag,
            size,
            bytes_done,
            avg_speed_bps,
            peak_speed_bps,
            state,
            error,
            upload_id,
            verified,
        ]
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn first_versions_end_where_the_appended_fields_start() {
        // No padding inside: every field is 8 bytes, or a pair of 4-byte
        // ones, so a C compiler lays the structs out as Rust does. The last
        // bp_progress field (4 bytes) is followed by 4 bytes of tail padding,
        // as in C; a later 4-byte field would take them.
        assert_eq!(PROGRESS_MIN_SIZE, 8 + 4 + 4 + 11 * 8);
        assert_eq!(
            offset_of!(bp_progress, integrity_used),
            PROGRESS_MIN_SIZE + 8
        );
        assert_eq!(std::mem::size_of::<bp_progress>(), PROGRESS_MIN_SIZE + 16);
        assert_eq!(std::mem::size_of::<bp_integrity>(), 4);
        assert_eq!(FILE_REPORT_MIN_SIZE, 4 * 8 + 4 * 8 + 4 + 4);
        // upload_id, then verified (4 bytes) and 4 bytes of tail padding.
        assert_eq!(
            offset_of!(bp_file_report, verified),
            FILE_REPORT_MIN_SIZE + 8
        );
        assert_eq!(
            std::mem::size_of::<bp_file_report>(),
            FILE_REPORT_MIN_SIZE + 16
        );
        assert_eq!(std::mem::size_of::<bp_verified>(), 4);
        assert_eq!(std::mem::size_of::<bp_status>(), 4);
        assert_eq!(std::mem::size_of::<bp_job_state>(), 4);
        assert_eq!(std::mem::size_of::<bp_file_state>(), 4);
    }
}

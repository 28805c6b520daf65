//! What travels between the coordinator and the workers.
//!
//! ## Data channel
//! The coordinator hands each worker an owned [`Task`]: the key, the shared
//! file descriptor, the byte range, the upload id. A worker never looks at
//! batch state.
//!
//! ## Message channel
//! Every task ends in exactly one [`Msg`] back to the coordinator, even if
//! it panics (the task body runs under `catch_unwind`). State changes only
//! in the coordinator, in the order these messages arrive.

use std::fs::File;
use std::sync::Arc;

use crate::error::Error;

/// One unit of work for the pool.
pub(crate) enum Work {
    /// Upload a whole file with PutObject.
    Put,
    /// Start the file's multipart upload.
    Create,
    /// Upload part `part` (1-based).
    Part { part: u32, upload_id: Arc<str> },
    /// Complete the upload from its parts.
    Complete {
        upload_id: Arc<str>,
        parts: Vec<crate::store::CompletedPart>,
        /// The multipart ETag expected when every part's MD5 is known.
        expected_etag: Option<String>,
    },
    /// Download a range or part of an object into its temporary file.
    Get(super::download::Fetch),
    /// Check a downloaded file and rename it into place.
    Finish(super::download::Finish),
    /// Download an object of one GET from start to finish: make its
    /// temporary file, fetch, check, rename into place.
    GetWhole {
        fetch: super::download::Fetch,
        finish: super::download::Finish,
    },
}

impl Work {
    pub fn name(&self) -> &'static str {
        match self {
            Work::Put => "PutObject",
            Work::Create => "CreateMultipartUpload",
            Work::Part { .. } => "UploadPart",
            Work::Complete { .. } => "CompleteMultipartUpload",
            Work::Get(_) | Work::GetWhole { .. } => "GetObject",
            Work::Finish(_) => "finishing the download",
        }
    }
}

/// An open source file and what it looked like when planned, so a change
/// during the upload is caught.
#[derive(Clone)]
pub(crate) struct Source {
    pub file: Arc<File>,
    pub size: u64,
    pub mtime: Option<std::time::SystemTime>,
}

/// A task: the work, which file it belongs to, and its data.
pub(crate) struct Task {
    pub file: usize,
    pub key: Arc<str>,
    pub path: Arc<std::path::Path>,
    pub work: Work,
    /// The bytes to send: (source, offset, length). Put and Part only.
    pub data: Option<(Source, u64, u64)>,
}

/// The result of a task.
pub(crate) enum Msg {
    PutDone {
        file: usize,
        etag: String,
        endpoint: String,
    },
    Created {
        file: usize,
        upload_id: String,
    },
    PartDone {
        file: usize,
        part: u32,
        etag: String,
        md5: Option<[u8; 16]>,
        crc32c: Option<u32>,
    },
    Completed {
        file: usize,
        etag: String,
        endpoint: String,
    },
    Failed {
        file: usize,
        part: Option<u32>,
        error: Error,
    },
    /// A download is checked and in place.
    Fetched {
        file: usize,
        etag: String,
        verified: super::download::Verification,
    },
    /// A request that creates something was sent in full and its answer
    /// never came (cut off, timed out): the server may have acted on it.
    /// The coordinator asks the server before it reports the file.
    Unsettled {
        file: usize,
        error: Error,
        what: Unsettled,
    },
}

/// What a request without an answer may have left on the server.
#[derive(Debug, Clone)]
pub(crate) enum Unsettled {
    /// A PutObject: the object may exist. The MD5 of the bytes sent, when
    /// the integrity mode computed it, tells ours from an older object.
    Put { md5: Option<[u8; 16]> },
    /// A CompleteMultipartUpload: the object may exist and the upload be
    /// gone. The multipart ETag expected, when every part's MD5 is known.
    Complete { expected_etag: Option<String> },
    /// A CreateMultipartUpload: an upload whose id we never learned may
    /// exist under the key.
    Create,
}

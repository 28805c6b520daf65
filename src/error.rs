//! The one error type of the crate.
//!
//! Every failure a caller can see — a bad option, a bad batch, a local file
//! that cannot be read, an S3 error answer, a dropped connection, a stall —
//! is an [`Error`]. It carries what a person needs to act on it: the
//! operation, the bucket, the key, the local path, the part, the HTTP status,
//! the S3 error code, the server's own message and its request id. Its
//! [`ErrorKind`] says what sort of failure it is, and [`Error::is_retryable`]
//! whether trying the same request again can help.

use std::fmt;
use std::path::{Path, PathBuf};

/// What sort of failure an [`Error`] is.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// An option has a bad value, or a required option is missing.
    InvalidConfig,
    /// The batch is unusable: a missing file, a directory, a bad or duplicate
    /// key, an empty batch. Found before any byte is sent.
    InvalidInput,
    /// Reading a local file failed (permission, I/O error, vanished file).
    LocalIo,
    /// A source file changed size or modification time while it uploaded.
    FileChanged,
    /// The server answered with an error status (see `status` and `code`).
    Server,
    /// The connection failed: refused, reset, DNS, proxy, a TLS handshake.
    Network,
    /// The server's TLS certificate is not trusted or not valid for its
    /// name: retrying cannot help; a CA file (`ca_file`) may.
    Tls,
    /// A request, the stall timeout or the deadline ran out.
    Timeout,
    /// The data the server acknowledged does not match what was sent.
    Integrity,
    /// The caller stopped the job.
    Stopped,
    /// The caller paused the job (its uploads are kept for resume).
    Paused,
    /// A journal is unreadable, corrupt, or does not belong to this batch.
    Journal,
    /// Another process holds the journal's lock.
    JournalLocked,
    /// The job or uploader is in the wrong state for the call.
    Misuse,
    /// A bug: a worker panicked or an invariant broke.
    Internal,
}

/// A failure, with everything known about where it happened.
///
/// The `Display` form is one line meant for a person: it names the
/// operation, the key or file, and quotes the server's own words.
#[derive(Clone)]
pub struct Error {
    inner: Box<Inner>,
}

#[derive(Clone, Debug)]
struct Inner {
    kind: ErrorKind,
    message: String,
    operation: Option<&'static str>,
    bucket: Option<String>,
    key: Option<String>,
    path: Option<PathBuf>,
    part: Option<u32>,
    status: Option<u16>,
    code: Option<String>,
    request_id: Option<String>,
    endpoint: Option<String>,
    attempts: Option<u32>,
    /// The whole request was sent and no answer came: the server may have
    /// acted on it.
    outcome_unknown: bool,
    /// It failed on a reused idle connection before any answer byte.
    stale_connection: bool,
}

impl Error {
    /// A new error of `kind` with a message for people.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                operation: None,
                bucket: None,
                key: None,
                path: None,
                part: None,
                status: None,
                code: None,
                request_id: None,
                endpoint: None,
                attempts: None,
                outcome_unknown: false,
                stale_connection: false,
            }),
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidConfig, message)
    }

    pub(crate) fn input(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidInput, message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, message)
    }

    /// A local I/O failure on `path`, phrased as "cannot read /p: permission denied".
    pub(crate) fn local_io(verb: &str, path: &Path, err: &std::io::Error) -> Error {
        let reason = io_reason(err);
        Error::new(
            ErrorKind::LocalIo,
            format!("cannot {verb} {}: {reason}", path.display()),
        )
        .with_path(path)
    }

    pub(crate) fn with_operation(mut self, operation: &'static str) -> Error {
        self.inner.operation = Some(operation);
        self
    }

    pub(crate) fn with_bucket(mut self, bucket: impl Into<String>) -> Error {
        self.inner.bucket = Some(bucket.into());
        self
    }

    pub(crate) fn with_key(mut self, key: impl Into<String>) -> Error {
        self.inner.key = Some(key.into());
        self
    }

    pub(crate) fn with_path(mut self, path: impl Into<PathBuf>) -> Error {
        self.inner.path = Some(path.into());
        self
    }

    pub(crate) fn with_part(mut self, part: u32) -> Error {
        self.inner.part = Some(part);
        self
    }

    pub(crate) fn with_status(mut self, status: u16) -> Error {
        self.inner.status = Some(status);
        self
    }

    pub(crate) fn with_code(mut self, code: impl Into<String>) -> Error {
        self.inner.code = Some(code.into());
        self
    }

    pub(crate) fn with_request_id(mut self, request_id: impl Into<String>) -> Error {
        self.inner.request_id = Some(request_id.into());
        self
    }

    pub(crate) fn with_endpoint(mut self, endpoint: impl Into<String>) -> Error {
        self.inner.endpoint = Some(endpoint.into());
        self
    }

    pub(crate) fn with_attempts(mut self, attempts: u32) -> Error {
        self.inner.attempts = Some(attempts);
        self
    }

    pub(crate) fn with_outcome_unknown(mut self, unknown: bool) -> Error {
        self.inner.outcome_unknown = unknown;
        self
    }

    pub(crate) fn with_stale_connection(mut self, stale: bool) -> Error {
        self.inner.stale_connection = stale;
        self
    }

    /// Whether the request was sent in full and its answer never came, so
    /// the server may have acted on it (an object may exist).
    pub fn outcome_unknown(&self) -> bool {
        self.inner.outcome_unknown
    }

    /// Whether it failed on a reused keep-alive connection before any
    /// answer byte (the server closed it while idle): a retry on a new
    /// connection is free.
    pub(crate) fn is_stale_connection(&self) -> bool {
        self.inner.stale_connection
    }

    /// Adds a sentence to the message (what cleanup could not do, say).
    pub(crate) fn with_note(mut self, note: &str) -> Error {
        self.inner.message.push_str("; ");
        self.inner.message.push_str(note);
        self
    }

    /// How many attempts were made before this error became final.
    pub fn attempts(&self) -> Option<u32> {
        self.inner.attempts
    }

    /// What sort of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The message, without the context fields.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The S3 operation that failed ("UploadPart", "PutObject", ...), if any.
    pub fn operation(&self) -> Option<&'static str> {
        self.inner.operation
    }

    /// The bucket involved, if any.
    pub fn bucket(&self) -> Option<&str> {
        self.inner.bucket.as_deref()
    }

    /// The object key involved, if any.
    pub fn key(&self) -> Option<&str> {
        self.inner.key.as_deref()
    }

    /// The local file involved, if any.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// The part number involved (1-based), if any.
    pub fn part(&self) -> Option<u32> {
        self.inner.part
    }

    /// The HTTP status the server answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        self.inner.status
    }

    /// The S3 error code ("AccessDenied", "NoSuchBucket", ...), if the server sent one.
    pub fn code(&self) -> Option<&str> {
        self.inner.code.as_deref()
    }

    /// The server's request id, for the provider's support desk.
    pub fn request_id(&self) -> Option<&str> {
        self.inner.request_id.as_deref()
    }

    /// The endpoint URL the failed request went to, if any.
    pub fn endpoint(&self) -> Option<&str> {
        self.inner.endpoint.as_deref()
    }

    /// Whether sending the same request again may succeed: 5xx answers,
    /// SlowDown, RequestTimeout, dropped or refused connections, request
    /// timeouts and integrity mismatches are; authentication, missing buckets
    /// or uploads, bad arguments and local failures are not.
    pub fn is_retryable(&self) -> bool {
        match self.inner.kind {
            ErrorKind::Network | ErrorKind::Timeout | ErrorKind::Integrity => true,
            ErrorKind::Server => {
                const NEVER: &[&str] = &[
                    "AccessDenied",
                    "SignatureDoesNotMatch",
                    "InvalidAccessKeyId",
                    "NoSuchBucket",
                    "NoSuchUpload",
                    "NoSuchKey",
                    "InvalidArgument",
                    "EntityTooSmall",
                    "EntityTooLarge",
                    "InvalidPart",
                    "InvalidPartOrder",
                    "InvalidBucketName",
                    "KeyTooLongError",
                    "AuthorizationHeaderMalformed",
                    "InvalidRequest",
                    "MethodNotAllowed",
                    "NotImplemented",
                    "PermanentRedirect",
                    "AccountProblem",
                ];
                const ALWAYS: &[&str] = &[
                    "SlowDown",
                    "RequestTimeout",
                    "RequestTimeTooSkewed",
                    "InternalError",
                    "ServiceUnavailable",
                    "OperationAborted",
                    "BadDigest",
                    "InvalidDigest",
                    "IncompleteBody",
                ];
                let code = self.inner.code.as_deref().unwrap_or("");
                if NEVER.contains(&code) {
                    false
                } else if ALWAYS.contains(&code) {
                    true
                } else {
                    matches!(self.inner.status, Some(s) if s >= 500 || s == 408 || s == 429)
                }
            }
            _ => false,
        }
    }

    /// Whether the server asked us to slow down (SlowDown, 503, 429): such a
    /// retry waits longer.
    pub fn is_throttle(&self) -> bool {
        self.inner.code.as_deref() == Some("SlowDown")
            || matches!(self.inner.status, Some(503) | Some(429))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        if let Some(op) = i.operation {
            write!(f, "{op}")?;
            if let Some(key) = &i.key {
                write!(f, " of '{key}'")?;
            }
            if let Some(part) = i.part {
                write!(f, " part {part}")?;
            }
            if let Some(bucket) = &i.bucket {
                write!(f, " in bucket '{bucket}'")?;
            }
            if let Some(ep) = &i.endpoint {
                write!(f, " at {ep}")?;
            }
            write!(f, " failed: ")?;
            if let Some(status) = i.status {
                write!(f, "HTTP {status} ")?;
            }
            if let Some(code) = &i.code {
                write!(f, "{code}: ")?;
            }
            write!(f, "{}", i.message)?;
        } else {
            write!(f, "{}", i.message)?;
            if let (Some(key), false) = (&i.key, i.message.contains('\'')) {
                write!(f, " (key '{key}')")?;
            }
        }
        if let Some(path) = &i.path {
            if !i.message.contains(&*path.to_string_lossy()) {
                write!(f, " (file {})", path.display())?;
            }
        }
        if let Some(rid) = &i.request_id {
            write!(f, " (request id {rid})")?;
        }
        if let Some(n) = i.attempts.filter(|&n| n > 1) {
            write!(f, " (after {n} attempts)")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.inner.kind)
            .field("display", &self.to_string())
            .finish()
    }
}

impl std::error::Error for Error {}

/// The part of an `io::Error` a person reads: "permission denied", not "Os { code: 13 ... }".
pub(crate) fn io_reason(err: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    if too_many_open_files(err) {
        // The process's or the system's descriptor table is full: the
        // file or server named beside this is not at fault.
        return TOO_MANY_OPEN_FILES.to_string();
    }
    match err.kind() {
        K::NotFound => "no such file or directory".to_string(),
        K::PermissionDenied => "permission denied".to_string(),
        _ => {
            let s = err.to_string();
            // Strip the " (os error N)" suffix std adds.
            match s.find(" (os error") {
                Some(at) => s[..at].to_lowercase(),
                None => s,
            }
        }
    }
}

/// What EMFILE and ENFILE mean to the person who can fix them.
pub(crate) const TOO_MANY_OPEN_FILES: &str =
    "too many open files: lower max_open_files or raise the limit (ulimit -n)";

/// Whether `err` says the descriptor table (the process's or the system's) is full.
pub(crate) fn too_many_open_files(err: &std::io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_error_names_operation_key_and_server_words() {
        let e = Error::new(ErrorKind::Server, "The specified bucket does not exist")
            .with_operation("PutObject")
            .with_key("a/b.txt")
            .with_bucket("nope")
            .with_status(404)
            .with_code("NoSuchBucket")
            .with_request_id("R1");
        let s = e.to_string();
        assert_eq!(
            s,
            "PutObject of 'a/b.txt' in bucket 'nope' failed: HTTP 404 NoSuchBucket: \
             The specified bucket does not exist (request id R1)"
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn retryable_classification() {
        let server = |status, code: &str| {
            Error::new(ErrorKind::Server, "x")
                .with_status(status)
                .with_code(code)
        };
        assert!(server(503, "SlowDown").is_retryable());
        assert!(server(503, "SlowDown").is_throttle());
        assert!(server(500, "InternalError").is_retryable());
        assert!(server(502, "").is_retryable());
        assert!(server(400, "RequestTimeout").is_retryable());
        for code in [
            "AccessDenied",
            "SignatureDoesNotMatch",
            "InvalidAccessKeyId",
            "NoSuchBucket",
            "NoSuchUpload",
            "InvalidArgument",
            "EntityTooSmall",
            "InvalidPart",
        ] {
            assert!(!server(400, code).is_retryable(), "{code}");
            assert!(!server(500, code).is_retryable(), "{code} with 5xx");
        }
        assert!(Error::new(ErrorKind::Network, "reset").is_retryable());
        assert!(!Error::new(ErrorKind::LocalIo, "gone").is_retryable());
    }

    #[test]
    fn a_full_descriptor_table_says_how_to_fix_it() {
        for errno in [libc::EMFILE, libc::ENFILE] {
            let e = Error::local_io(
                "open",
                Path::new("/data/a.bin"),
                &std::io::Error::from_raw_os_error(errno),
            );
            assert_eq!(
                e.to_string(),
                "cannot open /data/a.bin: too many open files: lower max_open_files \
                 or raise the limit (ulimit -n)"
            );
        }
    }
}

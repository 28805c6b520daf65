//! Why a request failed, as the transport sees it: the failure's kind
//! (connect, TLS, timeout, body, connection, cancel, refused request) and
//! how far the request got, which decides what may be retried.

use std::io;

use super::wire;

/// Why a request got no answer.
#[derive(Debug)]
pub(crate) enum HttpError {
    /// Could not resolve or connect (nothing was sent).
    Connect(io::Error),
    /// The TLS handshake failed on the server's certificate: retrying the
    /// same server cannot help.
    Tls(io::Error),
    /// A read or write waited longer than the idle timeout.
    Timeout(io::Error),
    /// The request body's reader failed (a local file, or a cancel).
    Body(io::Error),
    /// The connection broke, or the server spoke something else than HTTP/1.1.
    Io(io::Error),
    /// The request's interrupt was cancelled (a stop, pause or failure).
    Cancelled(io::Error),
    /// The request itself cannot be sent (a header value with a line
    /// break, say): nothing was sent, and sending it again cannot help.
    Request(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Connect(e) => write!(f, "cannot connect: {e}"),
            HttpError::Tls(e) => write!(f, "{e}"),
            HttpError::Timeout(e) => write!(f, "request timed out: {e}"),
            HttpError::Body(e) => write!(f, "{e}"),
            HttpError::Io(e) => write!(f, "connection failed: {e}"),
            HttpError::Cancelled(e) => write!(f, "{e}"),
            HttpError::Request(why) => write!(f, "{why}"),
        }
    }
}

/// A failed request: why, and how far it got.
#[derive(Debug)]
pub(crate) struct SendError {
    pub cause: HttpError,
    /// The whole request had been written: the server may have acted on it.
    pub request_sent: bool,
    /// It failed on a reused keep-alive connection before any byte of an
    /// answer: most likely the server closed that idle connection as we
    /// sent, which says nothing about the server's health.
    pub stale: bool,
}

impl SendError {
    pub(super) fn early(cause: HttpError) -> SendError {
        SendError {
            cause,
            request_sent: false,
            stale: false,
        }
    }
}

pub(crate) fn io_error(e: io::Error) -> HttpError {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => HttpError::Timeout(e),
        _ => HttpError::Io(e),
    }
}

/// The transport's view of a wire failure: the idle timeout stays a
/// timeout, the end of the stream is an aborted connection, and answers
/// that cannot be framed are invalid data.
pub(super) fn wire_error(e: wire::WireError) -> HttpError {
    match e {
        wire::WireError::Io(e) => io_error(e),
        wire::WireError::Sink(e) => HttpError::Body(e),
        closed @ wire::WireError::Closed { .. } => HttpError::Io(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            closed.to_string(),
        )),
        other => HttpError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            other.to_string(),
        )),
    }
}

/// A failure to resolve or connect: our interrupt's (`connect::cancelled`)
/// or the network's.
pub(super) fn connect_error(e: io::Error) -> HttpError {
    if e.kind() == io::ErrorKind::Interrupted {
        HttpError::Cancelled(e)
    } else {
        HttpError::Connect(e)
    }
}

/// Whether a failure looks like the peer closing the connection.
pub(super) fn is_connection_drop(e: &HttpError) -> bool {
    matches!(e, HttpError::Io(io) if matches!(
        io.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    ))
}

//! What failures look like to callers: S3 error documents (and bodiless
//! error answers) and transport failures become [`Error`]s with the status,
//! code, request id and the server's own words.

use super::{http, xml, CANCELLED};
use crate::error::{Error, ErrorKind};

pub(super) fn server_error(status: u16, body: &[u8], request_id: Option<String>) -> Error {
    match xml::parse(body) {
        Some(root) if root.name == "Error" => error_from_root(status, &root, request_id),
        _ => {
            // HEAD answers have no body; some proxies answer HTML.
            let (code, message) = match status {
                301 => (
                    "PermanentRedirect",
                    "the bucket is in another region or needs another addressing style",
                ),
                400 => ("BadRequest", "the server rejected the request"),
                403 => ("AccessDenied", "access denied"),
                404 => ("NotFound", "not found"),
                405 => ("MethodNotAllowed", "method not allowed"),
                412 => ("PreconditionFailed", "precondition failed"),
                500 => ("InternalError", "internal server error"),
                502 => ("BadGateway", "bad gateway"),
                503 => ("ServiceUnavailable", "service unavailable"),
                504 => ("GatewayTimeout", "gateway timeout"),
                _ => (
                    "",
                    "the server answered with an error and no S3 error document",
                ),
            };
            let mut e = Error::new(ErrorKind::Server, message).with_status(status);
            if !code.is_empty() {
                e = e.with_code(code);
            }
            if let Some(rid) = request_id {
                e = e.with_request_id(rid);
            }
            e
        }
    }
}

pub(super) fn error_from_root(
    status: u16,
    root: &xml::Element,
    request_id: Option<String>,
) -> Error {
    let code = root.token_of("Code").unwrap_or("");
    let message = root.token_of("Message").unwrap_or("");
    let message = if message.is_empty() {
        "(no message)"
    } else {
        message
    };
    let mut e = Error::new(ErrorKind::Server, message).with_status(status);
    if !code.is_empty() {
        e = e.with_code(code);
    }
    let rid = root
        .token_of("RequestId")
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .or(request_id);
    if let Some(rid) = rid {
        e = e.with_request_id(rid);
    }
    e
}

pub(super) fn transport_error(e: http::SendError) -> Error {
    let error = match e.cause {
        http::HttpError::Body(io) if io.to_string().contains(CANCELLED) => {
            Error::new(ErrorKind::Stopped, "request cancelled")
        }
        http::HttpError::Cancelled(_) => Error::new(ErrorKind::Stopped, "request cancelled"),
        http::HttpError::Timeout(io) => {
            Error::new(ErrorKind::Timeout, format!("request timed out: {io}"))
        }
        http::HttpError::Tls(io) => Error::new(ErrorKind::Tls, io.to_string()),
        // No socket for want of descriptors: a local limit, not a server
        // that is down (so no retry on another endpoint, no failover).
        http::HttpError::Connect(io) if crate::error::too_many_open_files(&io) => Error::new(
            ErrorKind::LocalIo,
            format!(
                "cannot open a connection: {}",
                crate::error::TOO_MANY_OPEN_FILES
            ),
        ),
        http::HttpError::Request(why) => Error::new(ErrorKind::InvalidInput, why),
        other => Error::new(ErrorKind::Network, other.to_string()),
    };
    error
        .with_outcome_unknown(e.request_sent)
        .with_stale_connection(e.stale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_documents_become_errors() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code>\
            <Message>The specified bucket does not exist</Message>\
            <RequestId>4442587FB7D0A2F9</RequestId></Error>";
        let e = server_error(404, body, None);
        assert_eq!(e.code(), Some("NoSuchBucket"));
        assert_eq!(e.request_id(), Some("4442587FB7D0A2F9"));
        assert_eq!(e.message(), "The specified bucket does not exist");
        let e = server_error(503, b"", Some("R".into()));
        assert_eq!(e.code(), Some("ServiceUnavailable"));
        assert!(e.is_retryable());
    }
}

//! Reading an answer off a connection: its head, then the body that head
//! announces, kept or streamed to a sink, each read of the socket into the
//! connection's buffer (`read_more`), with the quick ACKs a body's start
//! and end need (see `store::ack`).

use std::io::{self, BufRead};
use std::net::TcpStream;
use std::os::unix::io::AsRawFd;
use std::time::{Duration, Instant};

use super::{Conn, Reached, Response, Sink, Stream};
use crate::store::ack::{ack_at_once, BodyRead};
use crate::store::failure::{wire_error, HttpError};
use crate::store::wire;

/// The largest body of an answer to GET, read into memory (GetObject in
/// tests reads whole objects); every other answer is S3's XML, capped by
/// `wire::Limits::xml`.
const GET_MAX_BODY: u64 = 1 << 32;

/// Whether `tcp` has something to read (or was closed) within `wait`.
pub(super) fn readable_within(tcp: &TcpStream, wait: Duration) -> Result<bool, HttpError> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: tcp.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, valid for the call.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as libc::c_int) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted && !left.is_zero() {
                continue;
            }
            return Err(HttpError::Io(e));
        }
        return Ok(n > 0);
    }
}

/// Reads an answer through `wire`: head (interim 1xx answers skipped),
/// then the body its headers announce, kept or (a success with a `sink`)
/// streamed. Returns it and whether the connection may carry another
/// request.
pub(super) fn read_answer(
    conn: &mut Conn,
    method: &str,
    reached: &mut Reached,
    sink: Option<&mut dyn Sink>,
) -> Result<(Response, bool), HttpError> {
    let stream = &mut conn.stream;
    let rbuf = &mut conn.rbuf;
    let limits = limits_for(method);
    let body = std::cell::Cell::new(BodyRead::default());
    let answer = (|| {
        let fill = &mut |buf: &mut Vec<u8>| {
            let now = body.get();
            if now.needs_quick_ack() {
                ack_at_once(stream.tcp());
            }
            let n = read_more(stream, buf)?;
            body.set(now.after(n));
            Ok(n)
        };
        let head = wire::read_final_head(rbuf, fill, &limits)?;
        reached.answered_at = Some(Instant::now());
        body.set(BodyRead::begin(
            wire::body_length(method, &head).map(|n| n.saturating_sub(rbuf.len() as u64)),
        ));
        match sink {
            Some(sink) if (200..300).contains(&head.status) => {
                sink.head(&head).map_err(wire::WireError::Sink)?;
                // Streamed: no body cap (the caller checks the length it
                // asked for).
                let limits = limits.with_max_body(u64::MAX);
                let reusable =
                    wire::read_body_to(rbuf, fill, method, &head, &limits, &mut |b| sink.data(b))?;
                Ok((head, Vec::new(), reusable))
            }
            _ => {
                let (body, reusable) = wire::read_body(rbuf, fill, method, &head, &limits)?;
                Ok((head, body, reusable))
            }
        }
    })();
    let (head, body, reusable) = answer.map_err(|e| {
        reached.answer_started |= match &e {
            wire::WireError::Closed { answer_started } => *answer_started,
            wire::WireError::Io(_) => !conn.rbuf.is_empty(),
            wire::WireError::Sink(_) => true,
            _ => true,
        };
        wire_error(e)
    })?;
    reached.answer_started = true;
    Ok((
        Response {
            status: head.status,
            head,
            body,
        },
        reusable,
    ))
}

/// Reads the body `head` announces; returns it and whether the connection
/// may carry another request.
pub(super) fn read_body(
    conn: &mut Conn,
    method: &str,
    head: &wire::Head,
) -> Result<(Vec<u8>, bool), HttpError> {
    let stream = &mut conn.stream;
    wire::read_body(
        &mut conn.rbuf,
        &mut |buf: &mut Vec<u8>| read_more(stream, buf),
        method,
        head,
        &limits_for(method),
    )
    .map_err(wire_error)
}

/// Appends what one read of the socket gives (0 at EOF) to `buf`.
fn read_more(stream: &mut Stream, buf: &mut Vec<u8>) -> io::Result<usize> {
    const READ_SIZE: usize = 64 * 1024;
    let old = buf.len();
    match stream {
        // Straight into the spare capacity: recv(2) initialises what it
        // returns, so the buffer is not zeroed first (64 KiB per read,
        // whatever arrived: 3.6 % of a big download's client CPU).
        Stream::Plain(tcp) => {
            buf.reserve(READ_SIZE);
            let spare = &mut buf.spare_capacity_mut()[..READ_SIZE];
            // SAFETY: a valid socket, and `spare` is writable memory of
            // `READ_SIZE` bytes for the duration of the call.
            let n = unsafe { libc::recv(tcp.as_raw_fd(), spare.as_mut_ptr().cast(), READ_SIZE, 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = n as usize;
            // SAFETY: the kernel wrote the first `n` bytes of the spare
            // capacity.
            unsafe { buf.set_len(old + n) };
            Ok(n)
        }
        // Copied from rustls's plaintext records (reading from the socket
        // only when none is left), without zeroing the space first as a
        // `Read` into the buffer would need.
        Stream::Tls(tls) => {
            if tls.fill_buf()?.is_empty() {
                return Ok(0);
            }
            while buf.len() - old < READ_SIZE {
                let chunk = match tls.conn.reader().into_first_chunk() {
                    Ok(chunk) if !chunk.is_empty() => chunk,
                    // Nothing more without reading the socket again
                    // (WouldBlock), or the end, which the next call sees.
                    _ => break,
                };
                let take = chunk.len().min(READ_SIZE - (buf.len() - old));
                buf.extend_from_slice(&chunk[..take]);
                tls.conn.reader().consume(take);
            }
            Ok(buf.len() - old)
        }
    }
}

/// What an answer to `method` may hold: S3's XML answers are small; a GET
/// (tests read whole objects) may be large.
fn limits_for(method: &str) -> wire::Limits {
    match method {
        "GET" => wire::Limits::xml().with_max_body(GET_MAX_BODY),
        _ => wire::Limits::xml(),
    }
}

/// Reads one head (a proxy's answer to CONNECT, an interim 100).
pub(super) fn read_head(conn: &mut Conn) -> Result<wire::Head, HttpError> {
    let stream = &mut conn.stream;
    wire::read_head(
        &mut conn.rbuf,
        &mut |buf: &mut Vec<u8>| read_more(stream, buf),
        &wire::Limits::xml(),
    )
    .map_err(wire_error)
}

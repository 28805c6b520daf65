//! HTTP/1.1 framing without sockets: the request head we write and the
//! answers we read, as pure functions over a byte buffer.
//!
//! The transport (`http`) owns the connections; this module owns what goes
//! over them. Reading is driven by a `fill` closure that appends whatever
//! the connection has to the read buffer (and returns `Ok(0)` at end of
//! stream), so every case — a 100 Continue before the answer, chunked
//! bodies with extensions and trailers, two answers in one read, a server
//! that closes mid-answer — is tested against scripted byte streams
//! (`wire/tests.rs`) with no server at all.
//!
//! Heads and chunk-size lines are parsed by `httparse`, the parser hyper
//! uses. Everything a server controls is bounded ([`Limits`]): the head, the
//! header count, a chunk-size line, the trailer section, the body. Framing
//! the client cannot be sure of (conflicting `Content-Length`, both
//! `Content-Length` and chunked, a transfer coding other than chunked, a
//! chunk not followed by CRLF) is an error, never a guess: a guessed
//! boundary is how a response gets smuggled into the next request's answer.

use std::io;

/// The largest chunk-size line (size, extensions, CRLF).
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// The largest trailer section after the last chunk.
const MAX_TRAILERS: usize = 16 * 1024;
/// Interim (1xx) answers accepted before the final one.
const MAX_INTERIM: usize = 16;
/// Bytes reserved up front for a body; past that it grows as it arrives,
/// so a `Content-Length` the server does not honour costs no memory.
const MAX_RESERVE: u64 = 1 << 20;

/// What a server may send at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Status line and headers, in bytes.
    pub max_head: usize,
    /// Header fields in the head, and in a chunked body's trailers.
    pub max_headers: usize,
    /// The body, in bytes (after chunked decoding).
    pub max_body: u64,
}

impl Limits {
    /// For S3's XML answers (and error documents): 64 KiB of head, 100
    /// headers, 16 MiB of body.
    pub(crate) fn xml() -> Limits {
        Limits {
            max_head: 64 * 1024,
            max_headers: 100,
            max_body: 16 << 20,
        }
    }

    /// The same limits with another body cap.
    pub(crate) fn with_max_body(self, n: u64) -> Limits {
        Limits {
            max_body: n,
            ..self
        }
    }
}

/// A response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// In the order received; values without surrounding whitespace.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, in order.
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the comma-separated list header `name` holds `token`.
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.all(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Why no answer could be read (or no request head written).
#[derive(Debug)]
pub(crate) enum WireError {
    /// The fill closure failed (timeout, reset...): passed through untouched.
    Io(io::Error),
    /// End of stream: before any byte of the answer (`false`: a keep-alive
    /// connection the server had closed, safe to retry on a new one) or in
    /// the middle of it.
    Closed { answer_started: bool },
    /// Bytes that are not a well-framed HTTP/1.x answer, or a request head
    /// that would not be one.
    Protocol(String),
    /// The named part of the answer is over its limit.
    TooLarge(&'static str),
    /// The body's sink refused a piece (see [`read_body_to`]): a local
    /// failure, such as a full disk, or a cancel.
    Sink(io::Error),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Io(e) => write!(f, "{e}"),
            WireError::Closed {
                answer_started: false,
            } => f.write_str("the server closed the connection without answering"),
            WireError::Closed {
                answer_started: true,
            } => f.write_str("the server closed the connection before answering in full"),
            WireError::Protocol(why) => f.write_str(why),
            WireError::TooLarge(what) => write!(f, "the server's answer is too large: {what}"),
            WireError::Sink(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for WireError {}

/// Appends more bytes to the buffer; `Ok(0)` is end of stream.
pub(crate) type Fill<'a> = dyn FnMut(&mut Vec<u8>) -> io::Result<usize> + 'a;

fn malformed(why: impl std::fmt::Display) -> WireError {
    WireError::Protocol(format!("malformed answer: {why}"))
}

/// Calls `fill` once (again on EINTR). `Ok(false)` is end of stream.
fn more(rbuf: &mut Vec<u8>, fill: &mut Fill<'_>) -> Result<bool, WireError> {
    loop {
        match fill(rbuf) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(WireError::Io(e)),
        }
    }
}

/// Reads until `parse` says complete, re-parsing only when a new line
/// ending arrived (every element it waits for ends in LF). `limit` bounds
/// the bytes it may need; `what` names them in the error.
fn read_until<T>(
    rbuf: &mut Vec<u8>,
    fill: &mut Fill<'_>,
    limit: usize,
    what: &'static str,
    mut parse: impl FnMut(&[u8]) -> Result<Option<(usize, T)>, WireError>,
) -> Result<(usize, T), WireError> {
    let mut scanned = 0;
    loop {
        if rbuf[scanned..].contains(&b'\n') {
            if let Some((n, t)) = parse(rbuf)? {
                if n > limit {
                    return Err(WireError::TooLarge(what));
                }
                return Ok((n, t));
            }
        }
        if rbuf.len() > limit {
            return Err(WireError::TooLarge(what));
        }
        scanned = rbuf.len();
        if !more(rbuf, fill)? {
            return Err(WireError::Closed {
                answer_started: !rbuf.is_empty(),
            });
        }
    }
}

/// Reads one response head (status line + headers) from `rbuf`, calling
/// `fill(rbuf)` to append more bytes. Consumes exactly the head's bytes
/// from the front of `rbuf`.
pub(crate) fn read_head(
    rbuf: &mut Vec<u8>,
    fill: &mut Fill<'_>,
    limits: &Limits,
) -> Result<Head, WireError> {
    let (n, head) = read_until(rbuf, fill, limits.max_head, "response head", |buf| {
        // The slots borrow from `buf`, so they live for one parse.
        let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
        // Default config: obsolete line folding is an error, not a guess.
        let mut response = httparse::Response::new(&mut slots);
        match response.parse(buf) {
            Ok(httparse::Status::Partial) => Ok(None),
            Ok(httparse::Status::Complete(n)) => Ok(Some((n, to_head(&response)?))),
            Err(httparse::Error::TooManyHeaders) => Err(WireError::TooLarge("header count")),
            Err(e) => Err(malformed(format!("bad response head ({e})"))),
        }
    })?;
    rbuf.drain(..n);
    Ok(head)
}

fn to_head(response: &httparse::Response<'_, '_>) -> Result<Head, WireError> {
    let (Some(code), Some(minor)) = (response.code, response.version) else {
        return Err(malformed("bad status line"));
    };
    if code < 100 {
        return Err(malformed(format!("status {code:03}")));
    }
    let headers = response
        .headers
        .iter()
        .map(|h| {
            let value = String::from_utf8_lossy(h.value);
            (
                h.name.to_string(),
                value.trim_matches([' ', '\t']).to_string(),
            )
        })
        .collect();
    Ok(Head {
        status: code,
        minor_version: minor,
        headers,
    })
}

/// How the body of an answer is delimited.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// The length of the body `head` announces for an answer to `method`
/// (0 when it has none); `None` when it is chunked, runs to the end of the
/// stream, or the head is malformed.
pub(crate) fn body_length(method: &str, head: &Head) -> Option<u64> {
    match framing(method, head) {
        Ok(Framing::None) => Some(0),
        Ok(Framing::Length(n)) => Some(n),
        _ => None,
    }
}

fn framing(method: &str, head: &Head) -> Result<Framing, WireError> {
    if method.eq_ignore_ascii_case("HEAD")
        || (100..200).contains(&head.status)
        || head.status == 204
        || head.status == 304
    {
        return Ok(Framing::None);
    }
    let mut length: Option<u64> = None;
    for value in head.all("content-length") {
        // `5, 5` is one length said twice (RFC 9110 §8.6); anything else
        // that is not one run of digits is no length at all.
        for item in value.split(',') {
            let item = item.trim();
            if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed(format!("invalid content-length {value:?}")));
            }
            let n: u64 = item
                .parse()
                .map_err(|_| malformed(format!("invalid content-length {value:?}")))?;
            match length {
                Some(m) if m != n => {
                    return Err(malformed(format!("conflicting content-length {m} and {n}")))
                }
                _ => length = Some(n),
            }
        }
    }
    let codings: Vec<&str> = head
        .all("transfer-encoding")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    if !codings.is_empty() {
        if length.is_some() {
            return Err(malformed("both content-length and transfer-encoding"));
        }
        // We ask for no coding (no TE header), so anything but a single
        // chunked is a body we cannot delimit or decode.
        return match codings.as_slice() {
            [c] if c.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
            _ => Err(malformed(format!(
                "unsupported transfer-encoding {:?}",
                codings.join(", ")
            ))),
        };
    }
    Ok(match length {
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    })
}

/// Reads the body the head announces: none for HEAD requests, 1xx, 204 and
/// 304 (whatever `Content-Length` says); `Content-Length`; chunked, with
/// extensions and trailers; or up to the end of the stream. Returns the
/// body and whether the connection may carry another request.
pub(crate) fn read_body(
    rbuf: &mut Vec<u8>,
    fill: &mut Fill<'_>,
    method: &str,
    head: &Head,
    limits: &Limits,
) -> Result<(Vec<u8>, bool), WireError> {
    let reserve = match framing(method, head)? {
        Framing::Length(n) if n > limits.max_body => {
            return Err(WireError::TooLarge("response body"))
        }
        Framing::Length(n) => n.min(MAX_RESERVE) as usize,
        _ => 0,
    };
    let mut out = Vec::with_capacity(reserve);
    let max = limits.max_body;
    let reusable = body_into(rbuf, fill, method, head, limits, &mut |bytes: &[u8]| {
        if out.len() as u64 + bytes.len() as u64 > max {
            return Err(WireError::TooLarge("response body"));
        }
        out.extend_from_slice(bytes);
        Ok(())
    })?;
    Ok((out, reusable))
}

/// [`read_body`] that hands the body to `sink` piece by piece as it
/// arrives instead of keeping it: a download of any size in constant
/// memory. A sink error ends the read as [`WireError::Sink`]. Returns
/// whether the connection may carry another request.
pub(crate) fn read_body_to(
    rbuf: &mut Vec<u8>,
    fill: &mut Fill<'_>,
    method: &str,
    head: &Head,
    limits: &Limits,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<bool, WireError> {
    body_into(rbuf, fill, method, head, limits, &mut |bytes: &[u8]| {
        sink(bytes).map_err(WireError::Sink)
    })
}

/// Where the body's bytes go, in order.
type Out<'a> = dyn FnMut(&[u8]) -> Result<(), WireError> + 'a;

fn body_into(
    rbuf: &mut Vec<u8>,
    fill: &mut Fill<'_>,
    method: &str,
    head: &Head,
    limits: &Limits,
    out: &mut Out<'_>,
) -> Result<bool, WireError> {
    let mut reusable = !head.has_token("connection", "close")
        && (head.minor_version >= 1 || head.has_token("connection", "keep-alive"));
    match framing(method, head)? {
        Framing::None => {}
        Framing::Length(n) => take_exact(rbuf, fill, out, n)?,
        Framing::Chunked => read_chunked(rbuf, fill, limits, out)?,
        Framing::UntilClose => {
            reusable = false;
            loop {
                if !rbuf.is_empty() {
                    out(rbuf)?;
                    rbuf.clear();
                }
                if !more(rbuf, fill)? {
                    break;
                }
            }
        }
    }
    if !rbuf.is_empty() {
        // Bytes past the answer that we did not ask for: whatever they
        // are, the next answer on this connection could not be trusted.
        reusable = false;
    }
    Ok(reusable)
}

/// Moves exactly `n` bytes from the stream into `out`.
fn take_exact(
    rbuf: &mut Vec<u8>,
    fill: &mut Fill<'_>,
    out: &mut Out<'_>,
    n: u64,
) -> Result<(), WireError> {
    let mut left = n;
    loop {
        let take = (rbuf.len() as u64).min(left) as usize;
        if take > 0 {
            out(&rbuf[..take])?;
            rbuf.drain(..take);
        }
        left -= take as u64;
        if left == 0 {
            return Ok(());
        }
        if !more(rbuf, fill)? {
            return Err(WireError::Closed {
                answer_started: true,
            });
        }
    }
}

fn read_chunked(
    rbuf: &mut Vec<u8>,
    fill: &mut Fill<'_>,
    limits: &Limits,
    out: &mut Out<'_>,
) -> Result<(), WireError> {
    // Refused as soon as a chunk-size line says the body will be too
    // large, before its bytes are read.
    let mut total: u64 = 0;
    loop {
        let (n, size) = read_until(rbuf, fill, MAX_CHUNK_LINE, "chunk-size line", |buf| {
            // httparse takes an empty size as 0: that is no chunk line.
            if !buf[0].is_ascii_hexdigit() {
                return Err(malformed("bad chunk-size line"));
            }
            match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete((n, size))) => Ok(Some((n, size))),
                Ok(httparse::Status::Partial) => Ok(None),
                Err(_) => Err(malformed("bad chunk-size line")),
            }
        })
        .map_err(mid_answer)?;
        rbuf.drain(..n);
        if size == 0 {
            break;
        }
        total = total
            .checked_add(size)
            .filter(|&t| t <= limits.max_body)
            .ok_or(WireError::TooLarge("response body"))?;
        take_exact(rbuf, fill, out, size)?;
        let mut crlf = Vec::with_capacity(2);
        take_exact(
            rbuf,
            fill,
            &mut |b: &[u8]| {
                crlf.extend_from_slice(b);
                Ok(())
            },
            2,
        )?;
        if crlf != b"\r\n" {
            return Err(malformed("chunk data not followed by CRLF"));
        }
    }
    // The trailer section: header fields up to an empty line, read (so
    // the connection stays usable) and dropped.
    let (n, ()) =
        read_until(
            rbuf,
            fill,
            MAX_TRAILERS,
            "trailer section",
            |buf| match httparse::parse_headers(
                buf,
                &mut vec![httparse::EMPTY_HEADER; limits.max_headers],
            ) {
                Ok(httparse::Status::Complete((n, _))) => Ok(Some((n, ()))),
                Ok(httparse::Status::Partial) => Ok(None),
                Err(httparse::Error::TooManyHeaders) => Err(WireError::TooLarge("trailer count")),
                Err(e) => Err(malformed(format!("bad trailer ({e})"))),
            },
        )
        .map_err(mid_answer)?;
    rbuf.drain(..n);
    Ok(())
}

/// Past the head, an empty buffer at end of stream is still mid-answer.
fn mid_answer(e: WireError) -> WireError {
    match e {
        WireError::Closed { .. } => WireError::Closed {
            answer_started: true,
        },
        other => other,
    }
}

/// Reads an answer: [`read_final_head`], then [`read_body`] (the tests'
/// whole-answer entry point; the transport reads the two steps itself).
#[cfg(test)]
pub(crate) fn read_answer(
    rbuf: &mut Vec<u8>,
    fill: &mut Fill<'_>,
    method: &str,
    limits: &Limits,
) -> Result<(Head, Vec<u8>, bool), WireError> {
    let head = read_final_head(rbuf, fill, limits)?;
    let (body, reusable) = read_body(rbuf, fill, method, &head, limits)?;
    Ok((head, body, reusable))
}

/// Reads the head of the final answer: [`read_head`], skipping interim 1xx
/// answers (100 Continue, 102, 103).
pub(crate) fn read_final_head(
    rbuf: &mut Vec<u8>,
    fill: &mut Fill<'_>,
    limits: &Limits,
) -> Result<Head, WireError> {
    let mut interim = 0;
    loop {
        let head = read_head(rbuf, fill, limits).map_err(|e| match interim {
            0 => e,
            _ => mid_answer(e),
        })?;
        match head.status {
            // We never ask to switch protocols.
            101 => return Err(malformed("unrequested 101 switching protocols")),
            100..=199 if interim < MAX_INTERIM => interim += 1,
            100..=199 => return Err(malformed("too many interim (1xx) answers")),
            _ => return Ok(head),
        }
    }
}

/// Writes a request head: request line, `host`, `user-agent`, `headers`
/// (a `host` among them is skipped: the authority is the host),
/// `content-length` when given (also 0), `expect: 100-continue` when asked.
/// `absolute_form` writes the target as `http://{authority}{path}`, as a
/// plain HTTP proxy wants it. A method, target or header that would break
/// the framing (CR, LF, NUL or another control character; a name that is
/// not a token) is refused with an error that names it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn request_head(
    method: &str,
    authority: &str,
    path_and_query: &str,
    user_agent: &str,
    headers: &[(&str, &str)],
    content_length: Option<u64>,
    expect_continue: bool,
    absolute_form: bool,
) -> Result<Vec<u8>, WireError> {
    let refused = |what: &str, text: &str| {
        WireError::Protocol(format!(
            "cannot send {what} {text:?}: it holds a character HTTP forbids there"
        ))
    };
    if method.is_empty() || !method.bytes().all(is_token) {
        return Err(refused("method", method));
    }
    // No whitespace either: it would end the request target.
    let target_ok = |s: &str| s.bytes().all(|b| b > b' ' && b != 0x7f);
    if authority.is_empty() || !target_ok(authority) {
        return Err(refused("host", authority));
    }
    if !path_and_query.starts_with('/') || !target_ok(path_and_query) {
        return Err(refused("request target", path_and_query));
    }
    if !value_ok(user_agent) {
        return Err(refused("user-agent", user_agent));
    }
    for (name, value) in headers {
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(refused("header name", name));
        }
        if !value_ok(value) {
            return Err(refused(&format!("header {name:?} with value"), value));
        }
    }

    let mut head = Vec::with_capacity(
        256 + authority.len()
            + path_and_query.len()
            + headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + 4)
                .sum::<usize>(),
    );
    head.extend_from_slice(method.as_bytes());
    head.push(b' ');
    if absolute_form {
        head.extend_from_slice(b"http://");
        head.extend_from_slice(authority.as_bytes());
    }
    head.extend_from_slice(path_and_query.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(authority.as_bytes());
    head.extend_from_slice(b"\r\nuser-agent: ");
    head.extend_from_slice(user_agent.as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("host") {
            continue;
        }
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if let Some(n) = content_length {
        head.extend_from_slice(b"content-length: ");
        head.extend_from_slice(n.to_string().as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if expect_continue {
        head.extend_from_slice(b"expect: 100-continue\r\n");
    }
    head.extend_from_slice(b"\r\n");
    Ok(head)
}

/// A `tchar` of RFC 9110 §5.6.2.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A field value: visible characters, spaces, tabs and non-ASCII bytes.
fn value_ok(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b >= b' ' && b != 0x7f))
}

#[cfg(test)]
mod tests;

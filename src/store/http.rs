//! A small HTTP/1.1 client for the S3 requests: keep-alive connections in
//! a pool, plain TCP or rustls, an optional HTTP proxy, idle timeouts on
//! every read and write, `Content-Length` bodies only.
//!
//! Why not ureq, which the design named: ureq 2 sends a streamed body
//! through `std::io::copy` on a boxed reader, which writes 8 KiB at a time.
//! Measured on loopback (benches/hot_loop.rs, strace), that is 131,072
//! `write(2)` calls per GiB, 1.1 s of client CPU per GiB against 0.3 s
//! with 256 KiB writes, and 0.66 s/GiB against 0.11 for the receiver.
//! ureq 3 writes bigger pieces but has no idle timeout for a body, only a
//! budget for the whole of it, which a 1 GiB part at a limited rate cannot
//! have. Here the body is read straight into the send buffer (the part's
//! pread lands where the socket write takes it from), the request head
//! goes out in the same write as the first piece of body, and every socket
//! read or write waits at most `request_timeout`.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Body bytes handed to one socket write.
pub(crate) const WRITE_CHUNK: usize = 256 * 1024;

/// The largest response body read into memory (GetObject in tests reads
/// whole objects; S3's XML answers are small).
const MAX_BODY: u64 = 1 << 32;

/// Where a request goes.
pub(crate) struct Target<'a> {
    pub https: bool,
    /// Host to connect to and verify (no port; IPv6 in brackets).
    pub host: &'a str,
    pub port: u16,
    /// The Host header: host, and the port when it is not the default.
    pub authority: &'a str,
    /// Path and query, already percent-encoded.
    pub path_and_query: &'a str,
}

/// A request body.
pub(crate) enum ReqBody<'a> {
    Empty,
    Bytes(&'a [u8]),
    Reader(&'a mut dyn Read, u64),
    /// `len` bytes of `file` from `offset`, sent by the kernel (sendfile)
    /// on plain connections. `pace(n)` runs before each piece of `n` bytes:
    /// it may wait (rate limit) or refuse (cancel).
    File {
        file: &'a std::fs::File,
        offset: u64,
        len: u64,
        pace: &'a mut dyn FnMut(u64) -> io::Result<()>,
    },
}

/// An answer, read whole.
pub(crate) struct Response {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request got no answer.
#[derive(Debug)]
pub(crate) enum HttpError {
    /// Could not resolve or connect (nothing was sent).
    Connect(io::Error),
    /// A read or write waited longer than the idle timeout.
    Timeout(io::Error),
    /// The request body's reader failed (a local file, or a cancel).
    Body(io::Error),
    /// The connection broke, or the server spoke something else than HTTP/1.1.
    Io(io::Error),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Connect(e) => write!(f, "cannot connect: {e}"),
            HttpError::Timeout(e) => write!(f, "request timed out: {e}"),
            HttpError::Body(e) => write!(f, "{e}"),
            HttpError::Io(e) => write!(f, "connection failed: {e}"),
        }
    }
}

fn io_error(e: io::Error) -> HttpError {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => HttpError::Timeout(e),
        _ => HttpError::Io(e),
    }
}

fn protocol(what: &str) -> HttpError {
    HttpError::Io(io::Error::new(io::ErrorKind::InvalidData, what.to_string()))
}

/// An HTTP proxy for every request.
pub(crate) struct Proxy {
    pub host: String,
    pub port: u16,
}

/// The client: settings and the pool of idle connections.
pub(crate) struct Client {
    connect_timeout: Duration,
    io_timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
    proxy: Option<Proxy>,
    max_idle: usize,
    /// Idle connections, by "scheme://host:port".
    idle: Mutex<Vec<(String, Conn)>>,
    user_agent: &'static str,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// One connection and the bytes read past the last answer (none, with a
/// well-behaved server).
struct Conn {
    stream: Stream,
    rbuf: Vec<u8>,
    /// When its last answer ended.
    idle_since: Instant,
}

/// A connection idle for less than this is taken as open without asking
/// the socket: servers keep idle connections for seconds at least, and the
/// check costs three system calls per request.
const TRUST_IDLE: Duration = Duration::from_secs(1);

impl Conn {
    /// Whether an idle connection is still open: the server may have
    /// closed it while it sat in the pool.
    fn still_open(&self) -> bool {
        if self.idle_since.elapsed() < TRUST_IDLE {
            return true;
        }
        let tcp = self.stream.tcp();
        if tcp.set_nonblocking(true).is_err() {
            return false;
        }
        let mut b = [0u8; 1];
        let open = matches!(tcp.peek(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        tcp.set_nonblocking(false).is_ok() && open
    }
}

thread_local! {
    /// The send buffer of this thread: request head plus one piece of body.
    static SEND_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Client {
    pub fn new(
        connect_timeout: Duration,
        io_timeout: Duration,
        tls: Option<Arc<rustls::ClientConfig>>,
        proxy: Option<Proxy>,
        max_idle: usize,
        user_agent: &'static str,
    ) -> Client {
        Client {
            connect_timeout,
            io_timeout,
            tls,
            proxy,
            max_idle,
            idle: Mutex::new(Vec::new()),
            user_agent,
        }
    }

    /// Sends one request and reads its whole answer. The connection goes
    /// back to the pool when the answer allows it.
    pub fn send(
        &self,
        method: &str,
        target: &Target<'_>,
        headers: &[(&str, &str)],
        body: ReqBody<'_>,
    ) -> Result<Response, HttpError> {
        let key = format!(
            "{}://{}:{}",
            if target.https { "https" } else { "http" },
            target.host,
            target.port
        );
        let mut conn = match self.take_idle(&key) {
            Some(c) => c,
            None => self.connect(target)?,
        };
        let (response, reusable) = self.exchange(&mut conn, method, target, headers, body)?;
        if reusable {
            conn.idle_since = Instant::now();
            let mut idle = self.idle.lock();
            if idle.len() < self.max_idle {
                idle.push((key, conn));
            }
        }
        Ok(response)
    }

    fn take_idle(&self, key: &str) -> Option<Conn> {
        loop {
            let conn = {
                let mut idle = self.idle.lock();
                let i = idle.iter().rposition(|(k, _)| k == key)?;
                idle.swap_remove(i).1
            };
            if conn.still_open() {
                return Some(conn);
            }
        }
    }

    fn connect(&self, target: &Target<'_>) -> Result<Conn, HttpError> {
        let (host, port) = match &self.proxy {
            Some(p) => (p.host.as_str(), p.port),
            None => (target.host, target.port),
        };
        let tcp = connect_tcp(host, port, self.connect_timeout).map_err(HttpError::Connect)?;
        let _ = tcp.set_nodelay(true);
        tcp.set_read_timeout(Some(self.io_timeout))
            .and_then(|_| tcp.set_write_timeout(Some(self.io_timeout)))
            .map_err(HttpError::Connect)?;
        let mut conn = Conn {
            stream: Stream::Plain(tcp),
            rbuf: Vec::new(),
            idle_since: Instant::now(),
        };
        if !target.https {
            return Ok(conn);
        }
        if self.proxy.is_some() {
            // A tunnel to the endpoint, then TLS inside it.
            let connect = format!(
                "CONNECT {h}:{p} HTTP/1.1\r\nHost: {h}:{p}\r\n\r\n",
                h = target.host,
                p = target.port
            );
            conn.stream
                .write_all(connect.as_bytes())
                .map_err(HttpError::Connect)?;
            let (status, _) = read_head(&mut conn).map_err(|e| match e {
                HttpError::Io(e) | HttpError::Timeout(e) => HttpError::Connect(e),
                other => other,
            })?;
            if status != 200 {
                return Err(HttpError::Connect(io::Error::other(format!(
                    "the proxy refused the tunnel: HTTP {status}"
                ))));
            }
        }
        let tls = self
            .tls
            .clone()
            .ok_or_else(|| HttpError::Connect(io::Error::other("no TLS configuration")))?;
        let name = rustls_pki_types::ServerName::try_from(
            target
                .host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        )
        .map_err(|e| HttpError::Connect(io::Error::other(e.to_string())))?;
        let session = rustls::ClientConnection::new(tls, name)
            .map_err(|e| HttpError::Connect(io::Error::other(e.to_string())))?;
        let Stream::Plain(tcp) = conn.stream else {
            unreachable!("just made plain")
        };
        let mut tls_stream = rustls::StreamOwned::new(session, tcp);
        // Handshake now, so a certificate problem is a connect error.
        while tls_stream.conn.is_handshaking() {
            tls_stream
                .conn
                .complete_io(&mut tls_stream.sock)
                .map_err(HttpError::Connect)?;
        }
        conn.stream = Stream::Tls(Box::new(tls_stream));
        Ok(conn)
    }

    /// Writes the request and reads the answer. Returns whether the
    /// connection may be used again.
    fn exchange(
        &self,
        conn: &mut Conn,
        method: &str,
        target: &Target<'_>,
        headers: &[(&str, &str)],
        body: ReqBody<'_>,
    ) -> Result<(Response, bool), HttpError> {
        let plain_proxy = self.proxy.is_some() && !target.https;
        let mut head = Vec::with_capacity(512 + 64 * headers.len());
        head.extend_from_slice(method.as_bytes());
        head.push(b' ');
        if plain_proxy {
            // A plain proxy takes the absolute form.
            head.extend_from_slice(b"http://");
            head.extend_from_slice(target.authority.as_bytes());
        }
        head.extend_from_slice(target.path_and_query.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        head.extend_from_slice(target.authority.as_bytes());
        head.extend_from_slice(b"\r\nuser-agent: ");
        head.extend_from_slice(self.user_agent.as_bytes());
        head.extend_from_slice(b"\r\n");
        for (k, v) in headers {
            if k.eq_ignore_ascii_case("host") {
                continue;
            }
            head.extend_from_slice(k.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(v.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        let len = match &body {
            ReqBody::Empty => None,
            ReqBody::Bytes(b) => Some(b.len() as u64),
            ReqBody::Reader(_, n) => Some(*n),
            ReqBody::File { len, .. } => Some(*len),
        };
        if let Some(n) = len {
            head.extend_from_slice(b"content-length: ");
            head.extend_from_slice(n.to_string().as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        let sent = match body {
            ReqBody::Empty => conn.stream.write_all(&head).map_err(io_error),
            ReqBody::Bytes(b) => {
                head.extend_from_slice(b);
                conn.stream.write_all(&head).map_err(io_error)
            }
            ReqBody::Reader(reader, total) => {
                send_streamed(&mut conn.stream, &head, |buf| read_full(reader, buf), total)
            }
            ReqBody::File {
                file,
                offset,
                len,
                pace,
            } => match &conn.stream {
                Stream::Plain(tcp) => send_file(tcp, &head, file, offset, len, pace),
                Stream::Tls(_) => {
                    let mut at = offset;
                    send_streamed(
                        &mut conn.stream,
                        &head,
                        |buf| {
                            pace(buf.len() as u64).map_err(HttpError::Body)?;
                            pread_full(file, at, buf)?;
                            at += buf.len() as u64;
                            Ok(())
                        },
                        len,
                    )
                }
            },
        };
        match sent.and_then(|_| conn.stream.flush().map_err(io_error)) {
            Ok(()) => {}
            // A server may answer (403, 404) and close before taking the
            // whole body: its answer says more than the broken pipe.
            Err(HttpError::Io(e)) => {
                return match read_answer(conn, method) {
                    Ok((response, _)) => Ok((response, false)),
                    Err(_) => Err(HttpError::Io(e)),
                };
            }
            Err(e) => return Err(e),
        }
        read_answer(conn, method)
    }
}

/// Reads an answer: head, then the body its headers announce. Returns it
/// and whether the connection may carry another request.
fn read_answer(conn: &mut Conn, method: &str) -> Result<(Response, bool), HttpError> {
    let (status, headers) = loop {
        let (status, headers) = read_head(conn)?;
        // An interim answer (100 Continue) comes before the real one.
        if !(100..200).contains(&status) {
            break (status, headers);
        }
    };
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let mut reusable = !header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let no_body = method == "HEAD" || status == 204 || status == 304;
    let chunked =
        header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
    let body = if no_body {
        Vec::new()
    } else if chunked {
        read_chunked(conn)?
    } else if let Some(n) = length {
        if n > MAX_BODY {
            return Err(protocol("answer body too large"));
        }
        read_exact_body(conn, n)?
    } else {
        reusable = false;
        read_to_close(conn)?
    };
    if !conn.rbuf.is_empty() {
        // Bytes past the answer: nothing can be trusted on this connection.
        reusable = false;
    }
    Ok((
        Response {
            status,
            headers,
            body,
        },
        reusable,
    ))
}

/// Sends the head and a body produced piece by piece: `fill(buf)` fills
/// the send buffer with the next piece (the reader writes straight into
/// it), which then goes out in one write; the first piece shares its write
/// with the head.
fn send_streamed(
    stream: &mut Stream,
    head: &[u8],
    mut fill: impl FnMut(&mut [u8]) -> Result<(), HttpError>,
    total: u64,
) -> Result<(), HttpError> {
    SEND_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        // Zeroed once per thread, then reused: no memset per piece.
        if buf.len() < head.len() + WRITE_CHUNK {
            buf.resize(head.len() + WRITE_CHUNK, 0);
        }
        buf[..head.len()].copy_from_slice(head);
        let mut start = head.len();
        let mut sent = 0u64;
        loop {
            let want = ((total - sent) as usize).min(WRITE_CHUNK);
            fill(&mut buf[start..start + want])?;
            stream.write_all(&buf[..start + want]).map_err(io_error)?;
            sent += want as u64;
            start = 0;
            if sent == total {
                return Ok(());
            }
        }
    })
}

/// Fills `buf` from a reader; an early end is an error.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> Result<(), HttpError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return Err(HttpError::Body(body_ended())),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(HttpError::Body(e)),
        }
    }
    Ok(())
}

fn body_ended() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the body ended before its Content-Length (the file shrank?)",
    )
}

/// Fills `buf` from `file` at `offset`.
fn pread_full(file: &std::fs::File, offset: u64, buf: &mut [u8]) -> Result<(), HttpError> {
    use std::os::unix::fs::FileExt;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => return Err(HttpError::Body(body_ended())),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(HttpError::Body(e)),
        }
    }
    Ok(())
}

/// Sends the head, then the file range with sendfile(2): the kernel moves
/// page-cache pages to the socket, with no copy through user space.
fn send_file(
    tcp: &TcpStream,
    head: &[u8],
    file: &std::fs::File,
    offset: u64,
    len: u64,
    pace: &mut dyn FnMut(u64) -> io::Result<()>,
) -> Result<(), HttpError> {
    use std::os::unix::io::AsRawFd;
    // MSG_MORE: the head waits to leave with the first pages of the file.
    let mut written = 0;
    while written < head.len() {
        // SAFETY: the slice is valid for its length during the call.
        let n = unsafe {
            libc::send(
                tcp.as_raw_fd(),
                head[written..].as_ptr().cast(),
                head.len() - written,
                libc::MSG_MORE | libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(io_error(e));
        }
        written += n as usize;
    }
    // sendfile cannot take MSG_NOSIGNAL: a peer that closed makes it raise
    // SIGPIPE, whose default action kills a C host. Blocked here, and a
    // SIGPIPE raised meanwhile is consumed before the mask is restored.
    let _sigpipe = SigpipeBlocked::new();
    let mut off = offset as libc::off_t;
    let end = offset + len;
    while (off as u64) < end {
        let piece = ((end - off as u64) as usize).min(WRITE_CHUNK);
        pace(piece as u64).map_err(HttpError::Body)?;
        let mut left = piece;
        while left > 0 {
            // SAFETY: both descriptors are open for the duration of the
            // call; `off` is ours and the kernel advances it.
            let n = unsafe { libc::sendfile(tcp.as_raw_fd(), file.as_raw_fd(), &mut off, left) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(match e.raw_os_error() {
                    // The socket's side: the connection, or its idle timeout.
                    Some(libc::EPIPE) | Some(libc::ECONNRESET) | Some(libc::EAGAIN) => io_error(e),
                    // The file's side.
                    _ => HttpError::Body(e),
                });
            }
            if n == 0 {
                return Err(HttpError::Body(body_ended()));
            }
            left -= n as usize;
        }
    }
    Ok(())
}

/// SIGPIPE blocked in the calling thread for the guard's life, as libcurl
/// does around writes that cannot say MSG_NOSIGNAL. On drop, a SIGPIPE that
/// became pending meanwhile is consumed (unless one was pending before: that
/// one is not ours), then the thread's signal mask is restored.
struct SigpipeBlocked {
    old_mask: libc::sigset_t,
    pending_before: bool,
}

impl SigpipeBlocked {
    fn new() -> SigpipeBlocked {
        // SAFETY: plain signal-set manipulation on values we own; the
        // calls only read and write these sets and this thread's mask.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            let mut old_mask: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old_mask);
            let mut pending: libc::sigset_t = std::mem::zeroed();
            libc::sigpending(&mut pending);
            SigpipeBlocked {
                old_mask,
                pending_before: libc::sigismember(&pending, libc::SIGPIPE) == 1,
            }
        }
    }
}

impl Drop for SigpipeBlocked {
    fn drop(&mut self) {
        // SAFETY: as in `new`; the zero timeout makes sigtimedwait a poll.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            if !self.pending_before {
                let zero = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                while libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) == libc::SIGPIPE {}
            }
            if libc::sigismember(&self.old_mask, libc::SIGPIPE) == 0 {
                libc::pthread_sigmask(libc::SIG_SETMASK, &self.old_mask, std::ptr::null_mut());
            }
        }
    }
}

/// Reads more bytes into the connection's buffer; EOF is an error.
fn fill(conn: &mut Conn) -> Result<(), HttpError> {
    let mut chunk = [0u8; 16 * 1024];
    match conn.stream.read(&mut chunk) {
        Ok(0) => Err(HttpError::Io(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the server closed the connection before answering in full",
        ))),
        Ok(n) => {
            conn.rbuf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
        Err(e) => Err(io_error(e)),
    }
}

/// Reads a status line and headers.
fn read_head(conn: &mut Conn) -> Result<(u16, Vec<(String, String)>), HttpError> {
    let end = loop {
        if let Some(i) = find(&conn.rbuf, b"\r\n\r\n") {
            break i;
        }
        if conn.rbuf.len() > 64 * 1024 {
            return Err(protocol("answer head too large"));
        }
        fill(conn)?;
    };
    let head: Vec<u8> = conn.rbuf.drain(..end + 4).collect();
    let text =
        std::str::from_utf8(&head[..end]).map_err(|_| protocol("answer head is not text"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(protocol("not an HTTP/1.x answer"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| protocol("bad status line"))?;
    let mut headers = Vec::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    if version == "HTTP/1.0"
        && !headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("keep-alive")
        })
    {
        headers.push(("connection".into(), "close".into()));
    }
    Ok((status, headers))
}

fn read_exact_body(conn: &mut Conn, n: u64) -> Result<Vec<u8>, HttpError> {
    let n = n as usize;
    while conn.rbuf.len() < n {
        fill(conn)?;
    }
    Ok(conn.rbuf.drain(..n).collect())
}

fn read_chunked(conn: &mut Conn) -> Result<Vec<u8>, HttpError> {
    let mut out = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = find(&conn.rbuf, b"\r\n") {
                break i;
            }
            fill(conn)?;
        };
        let line: Vec<u8> = conn.rbuf.drain(..line_end + 2).collect();
        let size_text =
            std::str::from_utf8(&line[..line_end]).map_err(|_| protocol("bad chunk size"))?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| protocol("bad chunk size"))?;
        if size == 0 {
            // Trailer fields, up to the empty line.
            loop {
                let end = loop {
                    if let Some(i) = find(&conn.rbuf, b"\r\n") {
                        break i;
                    }
                    fill(conn)?;
                };
                conn.rbuf.drain(..end + 2);
                if end == 0 {
                    return Ok(out);
                }
            }
        }
        if (out.len() + size) as u64 > MAX_BODY {
            return Err(protocol("answer body too large"));
        }
        while conn.rbuf.len() < size + 2 {
            fill(conn)?;
        }
        out.extend_from_slice(&conn.rbuf[..size]);
        conn.rbuf.drain(..size + 2);
    }
}

fn read_to_close(conn: &mut Conn) -> Result<Vec<u8>, HttpError> {
    let mut out = std::mem::take(&mut conn.rbuf);
    conn.stream.read_to_end(&mut out).map_err(io_error)?;
    Ok(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Resolves and connects, trying each address in turn. `localhost` and
/// every `*.localhost` name are the loopback address (RFC 6761), so
/// virtual-hosted addressing works against a local server without
/// /etc/hosts entries.
fn connect_tcp(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let lower = bare.to_ascii_lowercase();
    let addrs: Vec<SocketAddr> = if lower == "localhost" || lower.ends_with(".localhost") {
        vec![SocketAddr::from(([127, 0, 0, 1], port))]
    } else {
        (bare, port).to_socket_addrs()?.collect()
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

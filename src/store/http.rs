//! The transport: a small HTTP/1.1 client for the S3 requests. Keep-alive
//! connections in a pool, plain TCP or rustls, an optional HTTP proxy,
//! idle timeouts on every read and write, `Content-Length` bodies only,
//! requests that a stop cuts off at once (see `interrupt`).
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
//! read or write waits at most the idle timeout.
//!
//! ## Bodies over [`EXPECT_CONTINUE_MIN`]
//! They send `Expect: 100-continue` and wait up to [`CONTINUE_WAIT`] for the
//! interim answer before the body, as curl does: a server that refuses the
//! request (403, a redirect) says so before a byte of the body moves,
//! instead of leaving a write blocked until the idle timeout. A server that
//! never answers the expectation costs that wait once: the endpoint is then
//! remembered and sent bodies at once.
//!
//! Reading an answer (head, then the body it announces, kept or streamed)
//! is `answer`'s.
//!
//! ## What a failure tells the caller ([`SendError`])
//! Whether the whole request had been written (then the server may have
//! acted on it: the outcome is unknown, not a failure), and whether it
//! failed on a reused keep-alive connection before any answer byte (the
//! server closed an idle connection as we used it: retry on a new one
//! without holding it against the server).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::body::{pread_full, read_full, send_file, send_streamed};
use super::connect::{self, cancelled, Resolver};
use super::failure::{connect_error, is_connection_drop};
pub(crate) use super::failure::{io_error, HttpError, SendError};
use super::interrupt::{self, Interrupt};
use super::tls::tls_failure;
use super::wire;

mod answer;
use answer::{read_answer, read_body, read_head, readable_within};

/// Body bytes handed to one socket write.
pub(crate) const WRITE_CHUNK: usize = 256 * 1024;

/// Bodies larger than this ask the server first (`Expect: 100-continue`).
pub(crate) const EXPECT_CONTINUE_MIN: u64 = 1024 * 1024;

/// How long a request with `Expect: 100-continue` waits for the interim
/// answer before it sends the body anyway (curl waits 1 s too).
const CONTINUE_WAIT: Duration = Duration::from_secs(1);

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
    /// Whether the server can begin its answer as soon as it has the
    /// request: how long that took counts towards the round trip
    /// ([`Client::answer_floor`]). Not for a listing or a
    /// CompleteMultipartUpload, whose answers wait for work on the
    /// server (s3s-fs lists 1,000 keys in about 40 ms on loopback).
    pub times_round_trip: bool,
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

impl ReqBody<'_> {
    fn len(&self) -> Option<u64> {
        match self {
            ReqBody::Empty => None,
            ReqBody::Bytes(b) => Some(b.len() as u64),
            ReqBody::Reader(_, n) => Some(*n),
            ReqBody::File { len, .. } => Some(*len),
        }
    }
}

/// An answer, read whole.
pub(crate) struct Response {
    pub status: u16,
    head: wire::Head,
    pub body: Vec<u8>,
}

impl Response {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }
}

/// Where a successful answer's body goes when it is not kept in memory (a
/// download): told the head first, then given the body piece by piece as
/// it arrives. An error from either ends the request as
/// [`HttpError::Body`]. Error answers are still read whole (they are XML).
pub(crate) trait Sink {
    fn head(&mut self, head: &wire::Head) -> io::Result<()>;
    fn data(&mut self, bytes: &[u8]) -> io::Result<()>;
}

/// An HTTP proxy for every request.
pub(crate) struct Proxy {
    pub host: String,
    pub port: u16,
}

/// The client's settings.
pub(crate) struct Settings {
    pub connect_timeout: Duration,
    pub io_timeout: Duration,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub proxy: Option<Proxy>,
    pub max_idle: usize,
    pub user_agent: &'static str,
    /// Body bytes per write (and per `pace` call): smaller than
    /// [`WRITE_CHUNK`] under a low rate limit, so progress stays smooth.
    pub piece: usize,
}

/// The client: settings and the pool of idle connections.
pub(crate) struct Client {
    settings: Settings,
    /// Idle connections, by "scheme://host:port".
    idle: Mutex<Vec<(String, Conn)>>,
    resolver: Resolver,
    /// Endpoints that did not answer an `Expect: 100-continue` in time.
    no_continue: Mutex<Vec<String>>,
    /// The shortest wait so far, in microseconds, between a request sent
    /// in full on a reused connection and its answer's head (`u64::MAX`:
    /// none yet): about the round trip, when the server had little to do
    /// (see [`answer_floor`](Client::answer_floor)).
    answer_floor_us: AtomicU64,
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
    // TcpStream's writes are send(2) with MSG_NOSIGNAL: a closed peer is an
    // EPIPE error, never a SIGPIPE for the host process.
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
    /// The idle timeout its socket is set to.
    io_timeout: Duration,
}

impl Conn {
    /// Whether an idle connection is still open: the server may have
    /// closed it while it sat in the pool. One non-blocking peek (a single
    /// system call, so every reuse can afford it): nothing to read means
    /// open; EOF, an error or stray bytes mean closed or unusable.
    fn still_open(&self) -> bool {
        let mut b = [0u8; 1];
        // SAFETY: a one-byte buffer valid for the call.
        let n = unsafe {
            libc::recv(
                self.stream.tcp().as_raw_fd(),
                b.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
    }

    fn set_io_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        if self.io_timeout != timeout {
            let tcp = self.stream.tcp();
            tcp.set_read_timeout(Some(timeout))?;
            tcp.set_write_timeout(Some(timeout))?;
            self.io_timeout = timeout;
        }
        Ok(())
    }
}

/// How far a request got before it failed.
#[derive(Default)]
struct Reached {
    /// The request went on a connection that had served one before.
    reused: bool,
    request_sent: bool,
    answer_started: bool,
    /// When the answer's final head was in.
    answered_at: Option<Instant>,
}

impl Client {
    pub fn new(settings: Settings) -> Client {
        Client {
            settings,
            idle: Mutex::new(Vec::new()),
            resolver: Resolver::default(),
            no_continue: Mutex::new(Vec::new()),
            answer_floor_us: AtomicU64::new(u64::MAX),
        }
    }

    /// The shortest time any answer took to begin after its request was
    /// sent on a connection that served before, over the client's life,
    /// among requests the server can answer at once
    /// ([`Target::times_round_trip`]): the network's round trip plus the
    /// least the server ever took. Loopback gives well under a
    /// millisecond; a server across a WAN its round trip. `None` before
    /// the first such answer.
    ///
    /// Not on a new connection: its first answer may also wait for the
    /// server, or a front before it, to take the connection on. Through a
    /// TLS front on loopback that took 6-23 ms, against 0.5 ms and up for
    /// the next answers, and a near store looked far. A far store is known
    /// no later for it where a connection serves twice early:
    /// `integrity=auto`'s probe sends its parts on the connection of its
    /// CreateMultipartUpload, a download's first GET goes on its listing's;
    /// elsewhere a round trip later.
    pub fn answer_floor(&self) -> Option<Duration> {
        match self.answer_floor_us.load(Ordering::Relaxed) {
            u64::MAX => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Sends one request and reads its whole answer. The connection goes
    /// back to the pool when the answer allows it. The calling thread's
    /// [`Scope`](interrupt::Scope), if any, can cut the request off and
    /// sets its timeouts.
    ///
    /// With a `sink`, a successful answer's body is streamed to it instead
    /// of kept (the response's `body` is then empty).
    pub fn send_to(
        &self,
        method: &str,
        target: &Target<'_>,
        headers: &[(&str, &str)],
        body: ReqBody<'_>,
        sink: Option<&mut dyn Sink>,
    ) -> Result<Response, SendError> {
        let scope = interrupt::current();
        let interrupt = scope.as_ref().map(|s| &*s.interrupt);
        if interrupt.is_some_and(Interrupt::is_cancelled) {
            return Err(SendError::early(HttpError::Cancelled(cancelled())));
        }
        let io_timeout = scope
            .as_ref()
            .and_then(|s| s.io_timeout)
            .unwrap_or(self.settings.io_timeout);
        let connect_timeout = scope
            .as_ref()
            .and_then(|s| s.connect_timeout)
            .unwrap_or(self.settings.connect_timeout);
        let fresh = scope.as_ref().is_some_and(|s| s.fresh_connections);
        let key = format!(
            "{}://{}:{}",
            if target.https { "https" } else { "http" },
            target.host,
            target.port
        );
        let pooled = if fresh { None } else { self.take_idle(&key) };
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(c) => c,
            None => self
                .connect(target, connect_timeout, io_timeout, interrupt)
                .map_err(SendError::early)?,
        };
        conn.set_io_timeout(io_timeout)
            .map_err(|e| SendError::early(HttpError::Connect(e)))?;
        let registration = match interrupt {
            Some(i) => Some(
                i.register(
                    conn.stream.tcp().as_raw_fd(),
                    scope.as_ref().is_some_and(|s| s.gentle),
                )
                .ok_or_else(|| SendError::early(HttpError::Cancelled(cancelled())))?,
            ),
            None => None,
        };
        let mut reached = Reached {
            reused,
            ..Reached::default()
        };
        let result = self.exchange(
            &mut conn,
            method,
            target,
            headers,
            body,
            &key,
            &mut reached,
            sink,
        );
        // Unregistered before the connection can close (see `interrupt`).
        drop(registration);
        match result {
            Ok((response, reusable)) => {
                if reusable && !fresh {
                    let mut idle = self.idle.lock();
                    if idle.len() < self.settings.max_idle {
                        idle.push((key, conn));
                    }
                }
                Ok(response)
            }
            Err(cause) => {
                let cut_off = interrupt.is_some_and(Interrupt::is_cancelled)
                    && !matches!(cause, HttpError::Body(_));
                let cause = match cause {
                    _ if cut_off => HttpError::Cancelled(cancelled()),
                    // "Resource temporarily unavailable" is what a socket
                    // timeout reads as; say what happened instead.
                    HttpError::Timeout(_) => HttpError::Timeout(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "nothing received or sent for {} s (the request timeout)",
                            io_timeout.as_secs_f64()
                        ),
                    )),
                    other => other,
                };
                let stale = reused && !reached.answer_started && is_connection_drop(&cause);
                Err(SendError {
                    cause,
                    request_sent: reached.request_sent,
                    stale,
                })
            }
        }
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

    fn connect(
        &self,
        target: &Target<'_>,
        connect_timeout: Duration,
        io_timeout: Duration,
        interrupt: Option<&Interrupt>,
    ) -> Result<Conn, HttpError> {
        let (host, port) = match &self.settings.proxy {
            Some(p) => (p.host.as_str(), p.port),
            None => (target.host, target.port),
        };
        let addrs = self
            .resolver
            .resolve(host, port, connect_timeout, interrupt)
            .map_err(connect_error)?;
        let tcp = connect::connect(&addrs, connect_timeout, interrupt).map_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                // The name may lead elsewhere now: ask again next time.
                self.resolver.forget(host, port);
            }
            connect_error(e)
        })?;
        let _ = tcp.set_nodelay(true);
        // The tunnel and the handshake are part of connecting: they get the
        // connect timeout, and the interrupt can cut them off.
        let first_timeout = if target.https {
            connect_timeout
        } else {
            io_timeout
        };
        tcp.set_read_timeout(Some(first_timeout))
            .and_then(|_| tcp.set_write_timeout(Some(first_timeout)))
            .map_err(HttpError::Connect)?;
        let mut conn = Conn {
            stream: Stream::Plain(tcp),
            rbuf: Vec::new(),
            io_timeout: first_timeout,
        };
        if !target.https {
            return Ok(conn);
        }
        let fd = conn.stream.tcp().as_raw_fd();
        let _registration = match interrupt {
            Some(i) => Some(
                i.register(fd, false)
                    .ok_or_else(|| HttpError::Cancelled(cancelled()))?,
            ),
            None => None,
        };
        let cut = |e: HttpError| match interrupt {
            Some(i) if i.is_cancelled() => HttpError::Cancelled(cancelled()),
            _ => e,
        };
        if self.settings.proxy.is_some() {
            // A tunnel to the endpoint, then TLS inside it.
            let connect = format!(
                "CONNECT {h}:{p} HTTP/1.1\r\nHost: {h}:{p}\r\n\r\n",
                h = target.host,
                p = target.port
            );
            conn.stream
                .write_all(connect.as_bytes())
                .map_err(|e| cut(HttpError::Connect(e)))?;
            let status = read_head(&mut conn)
                .map_err(|e| {
                    cut(match e {
                        HttpError::Io(e) | HttpError::Timeout(e) => HttpError::Connect(e),
                        other => other,
                    })
                })?
                .status;
            if status != 200 {
                return Err(HttpError::Connect(io::Error::other(format!(
                    "the proxy refused the tunnel: HTTP {status}"
                ))));
            }
        }
        let tls = self
            .settings
            .tls
            .clone()
            .ok_or_else(|| HttpError::Connect(io::Error::other("no TLS configuration")))?;
        let server_name = target.host.trim_start_matches('[').trim_end_matches(']');
        let name = rustls_pki_types::ServerName::try_from(server_name.to_string())
            .map_err(|e| HttpError::Connect(io::Error::other(e.to_string())))?;
        let mut session = rustls::ClientConnection::new(tls, name)
            .map_err(|e| HttpError::Connect(io::Error::other(e.to_string())))?;
        let Stream::Plain(tcp) = conn.stream else {
            unreachable!("just made plain")
        };
        // Room for a small file's body and its head in one write to the
        // socket (rustls's default of 64 KiB took two); a 256 KiB piece of
        // a big one takes two. Each connection holds that much ciphertext
        // while it writes: twice as much made big uploads' peak RSS 15-80 %
        // higher for no CPU saved.
        session.set_buffer_limit(Some(WRITE_CHUNK / 2));
        let mut tls_stream = rustls::StreamOwned::new(session, tcp);
        // Handshake now, so a certificate problem is a connect error.
        while tls_stream.conn.is_handshaking() {
            tls_stream
                .conn
                .complete_io(&mut tls_stream.sock)
                .map_err(|e| cut(tls_failure(server_name, e)))?;
        }
        conn.stream = Stream::Tls(Box::new(tls_stream));
        conn.set_io_timeout(io_timeout)
            .map_err(HttpError::Connect)?;
        Ok(conn)
    }

    /// Whether requests to `key` may ask `Expect: 100-continue`.
    fn continue_works(&self, key: &str) -> bool {
        !self.no_continue.lock().iter().any(|k| k == key)
    }

    /// Writes the request and reads the answer. Returns whether the
    /// connection may be used again.
    #[allow(clippy::too_many_arguments)]
    fn exchange(
        &self,
        conn: &mut Conn,
        method: &str,
        target: &Target<'_>,
        headers: &[(&str, &str)],
        body: ReqBody<'_>,
        key: &str,
        reached: &mut Reached,
        sink: Option<&mut dyn Sink>,
    ) -> Result<(Response, bool), HttpError> {
        let body_len = body.len();
        // A bodiless POST or PUT still says its length: some front ends
        // answer 411 Length Required otherwise.
        let content_length = match body_len {
            None if method == "POST" || method == "PUT" => Some(0),
            other => other,
        };
        let expect = body_len.is_some_and(|n| n > EXPECT_CONTINUE_MIN) && self.continue_works(key);
        // A plain proxy takes the absolute form.
        let head = wire::request_head(
            method,
            target.authority,
            target.path_and_query,
            self.settings.user_agent,
            headers,
            content_length,
            expect,
            self.settings.proxy.is_some() && !target.https,
        )
        .map_err(|e| HttpError::Request(e.to_string()))?;
        let mut head: &[u8] = &head;
        if expect {
            conn.stream
                .write_all(head)
                .and_then(|_| conn.stream.flush())
                .map_err(io_error)?;
            head = &[];
            if let Some(final_answer) = self.await_continue(conn, method, key, reached)? {
                // Refused before the body: the server still waits for a
                // body it will not get, so the connection is done.
                return Ok((final_answer, false));
            }
        }
        let piece = self.settings.piece;
        let sent = match body {
            ReqBody::Empty => conn.stream.write_all(head).map_err(io_error),
            ReqBody::Bytes(b) => {
                let mut all = head.to_vec();
                all.extend_from_slice(b);
                conn.stream.write_all(&all).map_err(io_error)
            }
            ReqBody::Reader(reader, total) => send_streamed(
                &mut conn.stream,
                head,
                |buf| read_full(reader, buf),
                total,
                piece,
            ),
            ReqBody::File {
                file,
                offset,
                len,
                pace,
            } => match &conn.stream {
                Stream::Plain(tcp) => send_file(tcp, head, file, offset, len, pace, piece),
                Stream::Tls(_) => {
                    let mut at = offset;
                    send_streamed(
                        &mut conn.stream,
                        head,
                        |buf| {
                            pace(buf.len() as u64).map_err(HttpError::Body)?;
                            pread_full(file, at, buf)?;
                            at += buf.len() as u64;
                            Ok(())
                        },
                        len,
                        piece,
                    )
                }
            },
        };
        let sent_at = Instant::now();
        match sent.and_then(|_| conn.stream.flush().map_err(io_error)) {
            Ok(()) => reached.request_sent = true,
            // A server may answer (403, 404) and close before taking the
            // whole body: its answer says more than the broken pipe.
            Err(HttpError::Io(e)) => {
                return match read_answer(conn, method, reached, None) {
                    Ok((response, _)) => Ok((response, false)),
                    Err(_) => Err(HttpError::Io(e)),
                };
            }
            Err(e) => return Err(e),
        }
        let answer = read_answer(conn, method, reached, sink);
        // Only on a connection that served before: see `answer_floor`.
        let timed = target.times_round_trip && reached.reused;
        if let Some(at) = reached.answered_at.filter(|_| timed) {
            let waited = at.saturating_duration_since(sent_at).as_micros() as u64;
            self.answer_floor_us.fetch_min(waited, Ordering::Relaxed);
        }
        answer
    }

    /// After a head with `Expect: 100-continue`: waits up to
    /// [`CONTINUE_WAIT`] for the server's word. `None`: send the body (100
    /// Continue came, or nothing did); `Some`: the server's final answer,
    /// given before the body.
    fn await_continue(
        &self,
        conn: &mut Conn,
        method: &str,
        key: &str,
        reached: &mut Reached,
    ) -> Result<Option<Response>, HttpError> {
        if conn.rbuf.is_empty() && !readable_within(conn.stream.tcp(), CONTINUE_WAIT)? {
            // This server does not answer expectations (or is slow to):
            // later requests to it send their bodies at once.
            let mut no_continue = self.no_continue.lock();
            if !no_continue.iter().any(|k| k == key) {
                no_continue.push(key.to_string());
            }
            return Ok(None);
        }
        let head = read_head(conn)?;
        reached.answer_started = true;
        if (100..200).contains(&head.status) {
            // 100 Continue (or another interim answer): go on.
            return Ok(None);
        }
        let body = read_body(conn, method, &head)?.0;
        Ok(Some(Response {
            status: head.status,
            head,
            body,
        }))
    }
}

//! A fault-injecting HTTP/1.1 proxy for the integration tests.
//!
//! Tests put a [`Proxy`] between the client under test and a real S3 server
//! (s3s-fs or moto, plain http on 127.0.0.1) for two reasons: to see what
//! the client really did (every request lands in a log with its size, its
//! answer and its timing, and the proxy counts client connections), and to
//! make the server misbehave in ways real servers do only rarely (error
//! answers, connections cut mid-body, requests never answered, slow links).
//! This module owns the listening socket, one thread per client connection
//! with its own upstream connection (so connection counts and keep-alive
//! reuse are the client's own), the fault rules and the log.
//!
//! It understands exactly as much HTTP/1.1 as S3 traffic needs: request
//! bodies with `Content-Length` (the client never sends chunked ones), and
//! response bodies that are absent, `Content-Length`, chunked or
//! close-delimited. Heads are forwarded byte for byte (Host included) so
//! request signatures stay valid; bodies are streamed, never held whole.
//!
//! Every socket has a short timeout and every wait checks a shared stop
//! flag, so dropping the proxy ends every thread within a tick even while
//! clients keep connections open or requests are being held.
//!
//! A request with `Expect: 100-continue` gets the proxy's own `100
//! Continue` as soon as the proxy decides to take its body (forwarded
//! requests, and requests it holds); a rule that answers at once
//! ([`Action::Respond`], [`Action::RespondEarly`]) answers without it, as a
//! server refusing the expectation does. A frozen proxy ([`Proxy::freeze`])
//! moves no byte in either direction, as a server stopped with SIGSTOP: the
//! kernel still accepts connections, nothing answers.
//!
//! Not supported: pipelined requests behind a held one, and TLS (see
//! `tls.rs` for a TLS front).

#![allow(dead_code)]

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use base64::Engine as _;

/// How long a blocking socket call waits before the stop flag is looked at
/// again; it bounds how long dropping the proxy takes.
const TICK: Duration = Duration::from_millis(100);

/// What the `integrity=auto` probe's keys contain (the library's
/// `PROBE_SUFFIX`); no URL encoding changes it.
const PROBE_KEY_MARK: &str = ".batchput-probe-";

/// Largest request or response head (and chunk-size line) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Bodies are streamed in pieces of at most this size.
const CHUNK: usize = 64 * 1024;
/// How much of each response body the log keeps.
const CAPTURE: usize = 64 * 1024;

// ================================================================ the proxy

/// A running proxy; dropping it closes the listener and every connection
/// and joins every thread.
pub struct Proxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listen on 127.0.0.1 (a free port) and forward to `upstream`,
    /// an `http://host:port` URL.
    pub fn start(upstream: &str) -> Proxy {
        let authority = upstream
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("proxy upstream must be http://host:port, got {upstream:?}"))
            .trim_end_matches('/');
        let upstream_addr = authority
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .unwrap_or_else(|| panic!("proxy upstream {upstream:?} does not resolve"));
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the fault proxy");
        let addr = listener.local_addr().expect("fault proxy address");
        let shared = Arc::new(Shared {
            upstream: upstream_addr,
            stop: Arc::new(AtomicBool::new(false)),
            frozen: Arc::new(AtomicBool::new(false)),
            black_hole: AtomicBool::new(false),
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Log::default()),
            open: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            workers: Mutex::new(Vec::new()),
        });
        let sh = shared.clone();
        let accept = thread::Builder::new()
            .name("proxy-accept".into())
            .spawn(move || accept_loop(&sh, listener))
            .expect("starting the fault proxy");
        Proxy {
            shared,
            addr,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT` of the proxy, for the client's endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Add a rule after the existing ones; the first matching rule applies.
    pub fn add_rule(&self, rule: Rule) {
        lock(&self.shared.rules).push(RuleSlot { rule, used: 0 });
    }

    pub fn clear_rules(&self) {
        lock(&self.shared.rules).clear();
    }

    /// While frozen, no byte moves in either direction on any connection,
    /// old or new (connections are still accepted by the kernel): a server
    /// stopped with SIGSTOP. Thawing lets everything continue where it was.
    pub fn freeze(&self, on: bool) {
        self.shared.frozen.store(on, SeqCst);
    }

    /// While on, every new request is swallowed and never answered. Turning
    /// it off closes the connections it holds (requests held by a
    /// [`Action::BlackHole`] rule stay held until the proxy is dropped).
    pub fn set_black_hole(&self, on: bool) {
        self.shared.black_hole.store(on, SeqCst);
    }

    /// Every request seen since the start (or the last `reset_log`), in
    /// order of arrival, including those still in flight.
    pub fn log(&self) -> Vec<Entry> {
        lock(&self.shared.log)
            .entries
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// How many logged requests pass `filter`.
    pub fn count(&self, filter: impl Fn(&Entry) -> bool) -> usize {
        self.log().iter().filter(|e| filter(e)).count()
    }

    /// Forget the log. Requests in flight at that moment are not logged
    /// again when they complete.
    pub fn reset_log(&self) {
        lock(&self.shared.log).entries.clear();
    }

    /// The most client connections that were open at once.
    pub fn peak_connections(&self) -> usize {
        self.shared.peak.load(SeqCst)
    }

    pub fn open_connections(&self) -> usize {
        self.shared.open.load(SeqCst)
    }

    /// Poll the log until `done` holds or `timeout` passes; whether it held.
    /// For tests that must wait until a request reached the proxy.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&[Entry]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.log()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        // The accept thread blocks in accept(); a connection wakes it to
        // see the flag. Should that fail, leave the thread rather than hang.
        let woke = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500)).is_ok();
        if let Some(accept) = self.accept.take() {
            if woke {
                let _ = accept.join();
            }
        }
        // Connection threads notice the flag within a TICK, whatever they
        // are waiting for.
        let workers = std::mem::take(&mut *lock(&self.shared.workers));
        for worker in workers {
            let _ = worker.join();
        }
    }
}

// ================================================================ the log

/// A line per request of `log`, with times in ms from the first: for the
/// message of an assertion about a sequence of requests.
pub fn timeline(log: &[Entry]) -> String {
    let Some(t0) = log.iter().map(|e| e.started).min() else {
        return "(no requests)".to_string();
    };
    let ms = |t: Instant| t.saturating_duration_since(t0).as_millis();
    log.iter()
        .map(|e| {
            format!(
                "{:>6} ms {} /{}?{} body {} -> {:?} at {:?} ms\n",
                ms(e.started),
                e.method,
                e.path.trim_start_matches('/'),
                e.query,
                e.body_len,
                e.status,
                e.finished.map(ms)
            )
        })
        .collect()
}

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub method: String,
    /// Raw path as sent, still percent-encoded, without the query.
    pub path: String,
    /// Raw query without '?', "" if none.
    pub query: String,
    /// Request body bytes actually received from the client.
    pub body_len: u64,
    /// Status sent back to the client; None when no answer was begun
    /// (cut, black-holed, or a side hung up first).
    pub status: Option<u16>,
    /// First 64 KiB of the response body as sent to the client, de-chunked.
    pub response_body: Vec<u8>,
    /// When the request head had been received.
    pub started: Instant,
    /// When the response had been fully sent (logged just before its last
    /// bytes are written, so it is set by the time the client has them);
    /// None if never.
    pub finished: Option<Instant>,
    /// Whether a rule (or the global black hole) acted on this request.
    pub injected: bool,
    /// The request's header names, lowercased, in order.
    pub headers: Vec<String>,
}

impl Entry {
    /// A request of the `integrity=auto` probe (its key has
    /// `.batchput-probe-`), not of the job's files.
    pub fn is_probe(&self) -> bool {
        self.key().contains(PROBE_KEY_MARK)
    }

    /// Whether the request carried header `name` (any case).
    pub fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    /// Percent-decoded value of a query parameter; Some("") for a bare flag
    /// like `uploads`. '+' is kept as is: S3 clients encode spaces as %20.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_param(&self.query, name)
    }

    /// PUT with partNumber and uploadId (UploadPart).
    pub fn is_upload_part(&self) -> bool {
        self.method == "PUT"
            && self.query_param("partNumber").is_some()
            && self.query_param("uploadId").is_some()
    }

    /// An UploadPart of the job's files (not of the probe).
    pub fn is_file_part(&self) -> bool {
        self.is_upload_part() && !self.is_probe()
    }

    /// POST with the bare `uploads` flag (CreateMultipartUpload).
    pub fn is_create_upload(&self) -> bool {
        self.method == "POST" && self.query_param("uploads").as_deref() == Some("")
    }

    /// POST with uploadId (CompleteMultipartUpload).
    pub fn is_complete(&self) -> bool {
        self.method == "POST" && self.query_param("uploadId").is_some()
    }

    /// DELETE with uploadId (AbortMultipartUpload).
    pub fn is_abort(&self) -> bool {
        self.method == "DELETE" && self.query_param("uploadId").is_some()
    }

    /// The object key of a path-style request: the path without
    /// "/bucket/", percent-decoded ("" for bucket-level requests).
    pub fn key(&self) -> String {
        let path = self.path.strip_prefix('/').unwrap_or(&self.path);
        match path.split_once('/') {
            Some((_bucket, key)) => percent_decode(key),
            None => String::new(),
        }
    }

    /// For a CreateMultipartUpload, the UploadId its response carried.
    pub fn upload_id_created(&self) -> Option<String> {
        if !self.is_create_upload() {
            return None;
        }
        let body = String::from_utf8_lossy(&self.response_body);
        let start = body.find("<UploadId>")? + "<UploadId>".len();
        let len = body[start..].find("</UploadId>")?;
        Some(xml_unescape(&body[start..start + len]))
    }
}

/// The most entries passing `filter` in flight at once, by their
/// [started, finished) intervals; an entry without `finished` counts as in
/// flight until now.
pub fn peak_in_flight(log: &[Entry], filter: impl Fn(&Entry) -> bool) -> usize {
    let now = Instant::now();
    let mut events: Vec<(Instant, i64)> = Vec::new();
    for e in log.iter().filter(|e| filter(e)) {
        events.push((e.started, 1));
        events.push((e.finished.unwrap_or(now).max(e.started), -1));
    }
    // At equal instants ends (-1) sort before starts (+1): intervals are
    // half-open, so a request starting as another finishes is no overlap.
    events.sort();
    let (mut current, mut peak) = (0i64, 0i64);
    for (_, delta) in events {
        current += delta;
        peak = peak.max(current);
    }
    peak as usize
}

// ================================================================ rules

/// A fault: what to do with requests that match, and how many times.
#[derive(Clone, Debug)]
pub struct Rule {
    pub matcher: Match,
    pub action: Action,
    /// None: every matching request; Some(n): the first n matches only,
    /// after which the rule is skipped and later rules get their chance.
    pub times: Option<u32>,
}

impl Rule {
    pub fn new(matcher: Match, action: Action) -> Rule {
        Rule {
            matcher,
            action,
            times: None,
        }
    }

    /// Apply to the first `n` matching requests only.
    pub fn times(mut self, n: u32) -> Rule {
        self.times = Some(n);
        self
    }
}

/// Which requests a rule applies to; every field set must match.
#[derive(Clone, Debug, Default)]
pub struct Match {
    pub method: Option<String>,
    /// Substring of the raw (percent-encoded) path.
    pub path_contains: Option<String>,
    /// Substring of the raw query, e.g. "partNumber=3&".
    pub query_contains: Option<String>,
    /// Query parameter partNumber equals this.
    pub part_number: Option<u32>,
    /// A header of this name (any case) is present.
    pub header: Option<String>,
    /// Substring the raw path must not contain.
    pub path_lacks: Option<String>,
    /// Only the first request on its connection.
    pub first_on_connection: bool,
}

impl Match {
    /// Every request.
    pub fn any() -> Match {
        Match::default()
    }

    pub fn method(m: &str) -> Match {
        Match::any().and_method(m)
    }

    /// Every UploadPart of the job's files, not of the `integrity=auto`
    /// probe: a rule meant to slow or swallow the batch's parts should not
    /// hold the probe (which then waits out its own timeout) instead.
    pub fn file_parts() -> Match {
        Match {
            path_lacks: Some(PROBE_KEY_MARK.to_string()),
            ..Match::method("PUT").and_query("partNumber=")
        }
    }

    /// Every PUT of the job's files (PutObject and UploadPart), not of
    /// the probe.
    pub fn file_puts() -> Match {
        Match {
            path_lacks: Some(PROBE_KEY_MARK.to_string()),
            ..Match::method("PUT")
        }
    }

    /// The UploadPart of part `n` of the job's files (not of the probe).
    pub fn part(n: u32) -> Match {
        Match::file_parts().and_part(n)
    }

    /// The first request on each connection: what a front (TLS, a load
    /// balancer) that connects to the server behind it only then delays.
    pub fn first_on_connection() -> Match {
        Match {
            first_on_connection: true,
            ..Match::any()
        }
    }

    pub fn path(s: &str) -> Match {
        Match::any().and_path(s)
    }

    pub fn query(s: &str) -> Match {
        Match::any().and_query(s)
    }

    pub fn and_path(mut self, s: &str) -> Match {
        self.path_contains = Some(s.to_string());
        self
    }

    pub fn and_method(mut self, m: &str) -> Match {
        self.method = Some(m.to_string());
        self
    }

    pub fn and_query(mut self, s: &str) -> Match {
        self.query_contains = Some(s.to_string());
        self
    }

    pub fn and_part(mut self, n: u32) -> Match {
        self.part_number = Some(n);
        self
    }

    /// Requests that carry header `name`.
    pub fn and_header(mut self, name: &str) -> Match {
        self.header = Some(name.to_string());
        self
    }

    /// `first`: the request is the first on its connection.
    fn matches<H: AsRef<str>>(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &[H],
        first: bool,
    ) -> bool {
        (first || !self.first_on_connection)
            && self
                .method
                .as_ref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path_contains
                .as_ref()
                .is_none_or(|s| path.contains(s.as_str()))
            && self
                .query_contains
                .as_ref()
                .is_none_or(|s| query.contains(s.as_str()))
            && self.part_number.is_none_or(|n| {
                query_param(query, "partNumber").and_then(|v| v.parse::<u32>().ok()) == Some(n)
            })
            && self
                .header
                .as_ref()
                .is_none_or(|h| headers.iter().any(|k| k.as_ref().eq_ignore_ascii_case(h)))
            && self
                .path_lacks
                .as_ref()
                .is_none_or(|s| !path.contains(s.as_str()))
    }
}

/// What the proxy does to a matching request.
#[derive(Clone, Debug)]
pub enum Action {
    /// Read the request body fully, then answer this status with an S3
    /// error XML body
    /// `<Error><Code>{code}</Code><Message>{message}</Message><RequestId>proxy</RequestId></Error>`
    /// without forwarding; keep the connection alive.
    Respond {
        status: u16,
        code: String,
        message: String,
    },
    /// Forward the request, but after `bytes` bytes of the request body
    /// have been forwarded, close the client and upstream connections
    /// (the client sees a reset or EOF mid-request). A cut at or beyond the
    /// body's end forwards the whole body and closes before any answer:
    /// upstream may or may not have acted on the request.
    CutAfter { bytes: u64 },
    /// Accept the request and never answer, until the client hangs up or
    /// the proxy is dropped.
    BlackHole,
    /// Forward the request with the body's byte at offset `at` inverted:
    /// the server stores, and hashes, a byte the client never sent (a
    /// corruption on the way that TCP's checksum missed).
    Corrupt { at: u64 },
    /// Forward the request, and its answer with the body's byte at offset
    /// `at` inverted (a download's bytes corrupted on the way). Answers
    /// with a Content-Length only.
    CorruptAnswer { at: u64 },
    /// Wait this long before forwarding.
    Delay(Duration),
    /// Forward the request body to upstream at most this many bytes per
    /// second.
    Throttle { bytes_per_sec: u64 },
    /// Forward the request, let the server act on it, then never pass its
    /// answer on: the client waits, as if the answer were lost. The entry
    /// records the server's status and body, with `finished` left `None`.
    SwallowAnswer,
    /// Forward the request and let the server act on it, but hold its
    /// answer back this long before passing it on (a slow
    /// CompleteMultipartUpload, a server whose answers lag).
    HoldAnswer(Duration),
    /// Answer this status at once, as soon as the head arrives, without
    /// reading the body, then close the connection: a server (or front end)
    /// refusing a request early while the client is still sending.
    RespondEarly {
        status: u16,
        code: String,
        message: String,
    },
    /// Be a store that verifies `x-amz-checksum-crc32c` (in front of one
    /// that does not): read the whole body (keep such bodies small), answer
    /// 400 BadDigest when its CRC32C differs from the header's, else
    /// forward it and relay the answer.
    VerifyCrc32c,
}

impl Action {
    /// `Respond` with owned strings from literals.
    pub fn respond(status: u16, code: &str, message: &str) -> Action {
        Action::Respond {
            status,
            code: code.to_string(),
            message: message.to_string(),
        }
    }
}

// ================================================================ shared state

struct Shared {
    upstream: SocketAddr,
    /// Set once, by Drop; every loop checks it at least once per TICK.
    stop: Arc<AtomicBool>,
    /// See [`Proxy::freeze`]; every socket wait looks at it.
    frozen: Arc<AtomicBool>,
    black_hole: AtomicBool,
    rules: Mutex<Vec<RuleSlot>>,
    log: Mutex<Log>,
    open: AtomicUsize,
    peak: AtomicUsize,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

struct RuleSlot {
    rule: Rule,
    used: u32,
}

/// Entries carry a sequence number so a connection can update its entry
/// after other connections appended theirs, or after `reset_log`.
#[derive(Default)]
struct Log {
    next_seq: u64,
    entries: Vec<(u64, Entry)>,
}

impl Shared {
    /// The action of the first live rule matching `req`, counting the use.
    /// `first`: the first request on its connection.
    fn pick_rule(&self, req: &Request, first: bool) -> Option<Action> {
        let mut rules = lock(&self.rules);
        let slot = rules.iter_mut().find(|slot| {
            slot.rule.times.is_none_or(|n| slot.used < n)
                && slot.rule.matcher.matches(
                    &req.method,
                    &req.path,
                    &req.query,
                    &req.header_names(),
                    first,
                )
        })?;
        slot.used += 1;
        Some(slot.rule.action.clone())
    }

    /// Log a request whose head just arrived; returns its sequence number.
    fn begin(&self, req: &Request, started: Instant, injected: bool) -> u64 {
        let mut log = lock(&self.log);
        let seq = log.next_seq;
        log.next_seq += 1;
        log.entries.push((
            seq,
            Entry {
                headers: req.headers.iter().map(|(k, _)| k.clone()).collect(),
                method: req.method.clone(),
                path: req.path.clone(),
                query: req.query.clone(),
                body_len: 0,
                status: None,
                response_body: Vec::new(),
                started,
                finished: None,
                injected,
            },
        ));
        seq
    }

    fn update(&self, seq: u64, f: impl FnOnce(&mut Entry)) {
        let mut log = lock(&self.log);
        if let Ok(i) = log.entries.binary_search_by_key(&seq, |(s, _)| *s) {
            f(&mut log.entries[i].1);
        }
    }
}

/// Counts a client connection as open for as long as it lives.
struct OpenGuard(Arc<Shared>);

impl OpenGuard {
    fn new(sh: Arc<Shared>) -> OpenGuard {
        let now = sh.open.fetch_add(1, SeqCst) + 1;
        sh.peak.fetch_max(now, SeqCst);
        OpenGuard(sh)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, SeqCst);
    }
}

/// Locks ignoring poison: one panicking test thread must not take every
/// later log read down with it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ================================================================ connections

fn accept_loop(sh: &Arc<Shared>, listener: TcpListener) {
    for stream in listener.incoming() {
        if sh.stop.load(SeqCst) {
            break;
        }
        let Ok(stream) = stream else {
            // Out of descriptors, say: don't spin.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        // Counted here, before the thread runs, so peak_connections never
        // misses a connection that has already been accepted.
        let open = OpenGuard::new(sh.clone());
        let conn_shared = sh.clone();
        let spawned = thread::Builder::new()
            .name("proxy-conn".into())
            .spawn(move || {
                let _open = open;
                serve_connection(conn_shared, stream);
            });
        if let Ok(handle) = spawned {
            let mut workers = lock(&sh.workers);
            workers.retain(|w| !w.is_finished());
            workers.push(handle);
        }
    }
}

fn serve_connection(sh: Arc<Shared>, stream: TcpStream) {
    let Ok(client) = Sock::new(stream, sh.stop.clone(), sh.frozen.clone()) else {
        return;
    };
    let mut conn = Conn {
        sh,
        client,
        upstream: None,
        scratch: vec![0; CHUNK],
        served: 0,
    };
    // Any error, on either side, ends the connection: dropping both sockets
    // is what the client should see when the proxy cannot go on.
    while let Ok(true) = conn.next_request() {}
}

/// How a forwarded request body is disturbed.
#[derive(Clone, Copy)]
enum Fault {
    None,
    Cut(u64),
    Throttle(u64),
    Hold(Duration),
    Corrupt(u64),
    CorruptAnswer(u64),
}

/// One client connection and the upstream connection serving it.
struct Conn {
    sh: Arc<Shared>,
    client: Sock,
    /// Opened at the first forwarded request, reopened when upstream closed it.
    upstream: Option<Sock>,
    scratch: Vec<u8>,
    /// Requests read on this connection so far.
    served: u32,
}

impl Conn {
    /// Serve one request; Ok(true) when the connection stays open for the next.
    fn next_request(&mut self) -> io::Result<bool> {
        let Some(head) = self.client.read_head()? else {
            return Ok(false);
        };
        let started = Instant::now();
        let req = Request::parse(head)?;
        let black_hole = self.sh.black_hole.load(SeqCst);
        let action = if black_hole {
            None
        } else {
            self.sh.pick_rule(&req, self.served == 0)
        };
        self.served += 1;
        let seq = self.sh.begin(&req, started, black_hole || action.is_some());

        if req.chunked {
            // The client under test must send Content-Length; make it loud.
            let msg = "fault proxy: chunked request bodies are not supported";
            self.answer(seq, &req, 501, "NotImplemented", msg)?;
            return Ok(false);
        }
        let answers_at_once = matches!(
            action,
            Some(Action::Respond { .. }) | Some(Action::RespondEarly { .. })
        );
        if req.expect_continue && !answers_at_once {
            // The body is wanted: say so, as the server would.
            self.client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        if black_hole {
            self.hold(seq, &req, true)?;
            return Ok(false);
        }
        match action {
            None => self.forward(seq, &req, Fault::None),
            Some(Action::Respond {
                status,
                code,
                message,
            }) if req.expect_continue => {
                // Refused before the body: the client sends none.
                self.answer(seq, &req, status, &code, &message)?;
                Ok(false)
            }
            Some(Action::Respond {
                status,
                code,
                message,
            }) => {
                self.drain_body(seq, &req)?;
                self.answer(seq, &req, status, &code, &message)?;
                Ok(!req.close)
            }
            Some(Action::RespondEarly {
                status,
                code,
                message,
            }) => {
                self.answer(seq, &req, status, &code, &message)?;
                // Close without reading what the client is still sending.
                let _ = self.client.stream.shutdown(std::net::Shutdown::Both);
                Ok(false)
            }
            Some(Action::HoldAnswer(d)) => self.forward(seq, &req, Fault::Hold(d)),
            Some(Action::BlackHole) => {
                self.hold(seq, &req, false)?;
                Ok(false)
            }
            Some(Action::Delay(d)) => {
                sleep_until(Instant::now() + d, &self.sh.stop)?;
                self.forward(seq, &req, Fault::None)
            }
            Some(Action::CutAfter { bytes }) => self.forward(seq, &req, Fault::Cut(bytes)),
            Some(Action::Corrupt { at }) => self.forward(seq, &req, Fault::Corrupt(at)),
            Some(Action::CorruptAnswer { at }) => self.forward(seq, &req, Fault::CorruptAnswer(at)),
            Some(Action::Throttle { bytes_per_sec }) => {
                self.forward(seq, &req, Fault::Throttle(bytes_per_sec))
            }
            Some(Action::SwallowAnswer) => {
                self.forward_and_swallow(seq, &req)?;
                Ok(false)
            }
            Some(Action::VerifyCrc32c) => self.verify_crc32c(seq, &req),
        }
    }

    /// See [`Action::VerifyCrc32c`].
    fn verify_crc32c(&mut self, seq: u64, req: &Request) -> io::Result<bool> {
        let mut body = Vec::with_capacity(req.content_length as usize);
        while (body.len() as u64) < req.content_length {
            let want = (req.content_length - body.len() as u64).min(CHUNK as u64) as usize;
            let n = self.client.read(&mut self.scratch[..want])?;
            if n == 0 {
                return Err(eof("client closed mid-body"));
            }
            body.extend_from_slice(&self.scratch[..n]);
            let len = body.len() as u64;
            self.sh.update(seq, |e| e.body_len = len);
        }
        let sent = header(&req.headers, "x-amz-checksum-crc32c");
        let crc = crc32c::crc32c(&body).to_be_bytes();
        let actual = base64::engine::general_purpose::STANDARD.encode(crc);
        if sent.is_some_and(|v| v != actual) {
            let message = "The CRC32C you specified did not match the calculated checksum.";
            self.answer(seq, req, 400, "BadDigest", message)?;
            return Ok(!req.close);
        }
        self.connect_upstream()?;
        let up = self.upstream.as_mut().expect("connected just above");
        up.write_all(&req.head)?;
        up.write_all(&body)?;
        self.relay_response(seq, req, None)
    }

    /// See [`Action::SwallowAnswer`].
    fn forward_and_swallow(&mut self, seq: u64, req: &Request) -> io::Result<()> {
        self.connect_upstream()?;
        let up = self.upstream.as_mut().expect("connected just above");
        up.write_all(&req.head)?;
        let mut sent = 0u64;
        while sent < req.content_length {
            let want = (req.content_length - sent).min(CHUNK as u64) as usize;
            let n = self.client.read(&mut self.scratch[..want])?;
            if n == 0 {
                return Err(eof("client closed mid-body"));
            }
            sent += n as u64;
            up.write_all(&self.scratch[..n])?;
        }
        self.sh.update(seq, |e| e.body_len = sent);
        let head = up
            .read_head()?
            .ok_or_else(|| eof("upstream closed before answering"))?;
        let resp = Response::parse(head)?;
        // The answers swallowed here are small XML documents: read what
        // arrives within a moment, for the log.
        let mut body = Vec::new();
        let until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < until && resp.content_length.is_none_or(|l| (body.len() as u64) < l)
        {
            if up.has_buffered() {
                let n = up.read(&mut self.scratch)?;
                body.extend_from_slice(&self.scratch[..n]);
            } else if let Some(n) = up.read_tick(&mut self.scratch)? {
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&self.scratch[..n]);
            }
        }
        self.sh.update(seq, move |e| {
            e.status = Some(resp.status);
            e.response_body = body;
        });
        // Hold the client until it gives up or the proxy stops.
        loop {
            match self.client.read_tick(&mut self.scratch)? {
                Some(0) => return Ok(()),
                _ => continue,
            }
        }
    }

    /// Never answer. The body is still read (and counted) so the client
    /// finishes sending and waits for an answer, as with a hung server.
    /// Returns when the client hangs up or, for the global black hole, when
    /// it is turned off; the caller then closes the connection.
    fn hold(&mut self, seq: u64, req: &Request, global: bool) -> io::Result<()> {
        let mut received = 0u64;
        loop {
            if global && !self.sh.black_hole.load(SeqCst) {
                return Ok(());
            }
            let n = if self.client.has_buffered() {
                self.client.read(&mut self.scratch)?
            } else {
                match self.client.read_tick(&mut self.scratch)? {
                    Some(n) => n,
                    None => continue,
                }
            };
            if n == 0 {
                return Ok(());
            }
            let body = (req.content_length - received).min(n as u64);
            if body > 0 {
                received += body;
                self.sh.update(seq, |e| e.body_len = received);
            }
        }
    }

    /// Read and discard the request body (for answers the proxy makes up).
    fn drain_body(&mut self, seq: u64, req: &Request) -> io::Result<()> {
        let mut received = 0u64;
        while received < req.content_length {
            let want = (req.content_length - received).min(CHUNK as u64) as usize;
            let n = self.client.read(&mut self.scratch[..want])?;
            if n == 0 {
                return Err(eof("client closed mid-body"));
            }
            received += n as u64;
            self.sh.update(seq, |e| e.body_len = received);
        }
        Ok(())
    }

    /// Answer an S3 error of the proxy's own.
    fn answer(
        &mut self,
        seq: u64,
        req: &Request,
        status: u16,
        code: &str,
        message: &str,
    ) -> io::Result<()> {
        let xml = format!(
            "<Error><Code>{}</Code><Message>{}</Message><RequestId>proxy</RequestId></Error>",
            xml_escape(code),
            xml_escape(message)
        );
        let head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
             x-amz-request-id: proxy\r\n{}\r\n",
            reason(status),
            xml.len(),
            if req.close {
                "Connection: close\r\n"
            } else {
                ""
            },
        );
        // A HEAD answer announces the length but carries no body.
        let body = if req.method == "HEAD" {
            &b""[..]
        } else {
            xml.as_bytes()
        };
        // Logged before sending, so a client that has the answer finds it
        // logged (see Lagging).
        self.sh.update(seq, |e| {
            e.status = Some(status);
            e.response_body = body.to_vec();
            e.finished = Some(Instant::now());
        });
        let sent = self.client.write_all(&[head.as_bytes(), body].concat());
        if sent.is_err() {
            self.sh.update(seq, |e| e.finished = None);
        }
        sent
    }

    /// Pass the request upstream (disturbed by `fault`) and its answer back.
    fn forward(&mut self, seq: u64, req: &Request, fault: Fault) -> io::Result<bool> {
        self.connect_upstream()?;
        let up = self.upstream.as_mut().expect("connected just above");
        up.write_all(&req.head)?;

        let cut = match fault {
            Fault::Cut(bytes) => Some(bytes),
            _ => None,
        };
        let rate = match fault {
            Fault::Throttle(r) => Some(r.max(1)),
            _ => None,
        };
        // Throttled bodies go in tenth-of-a-second pieces so the pace is even.
        let step = rate.map_or(CHUNK as u64, |r| (r / 10).clamp(1, CHUNK as u64));
        let begun = Instant::now();
        let mut sent = 0u64;
        while sent < req.content_length {
            let mut want = (req.content_length - sent).min(step);
            if let Some(cut) = cut {
                if sent >= cut {
                    return Ok(false);
                }
                // Read no more than the cut: body_len then says exactly
                // what the client got to send.
                want = want.min(cut - sent);
            }
            let n = self.client.read(&mut self.scratch[..want as usize])?;
            if n == 0 {
                return Err(eof("client closed mid-body"));
            }
            if let Fault::Corrupt(at) = fault {
                invert_at(&mut self.scratch[..n], sent, at);
            }
            sent += n as u64;
            self.sh.update(seq, |e| e.body_len = sent);
            up.write_all(&self.scratch[..n])?;
            if let Some(rate) = rate {
                let due = begun + Duration::from_secs_f64(sent as f64 / rate as f64);
                sleep_until(due, &self.sh.stop)?;
            }
        }
        if cut.is_some() {
            // The cut lies at or past the body's end: the whole body went
            // through, the answer never will.
            return Ok(false);
        }
        if let Fault::Hold(d) = fault {
            // The server acts now; its answer waits in the socket meanwhile.
            sleep_until(Instant::now() + d, &self.sh.stop)?;
        }
        let corrupt = match fault {
            Fault::CorruptAnswer(at) => Some(at),
            _ => None,
        };
        self.relay_response(seq, req, corrupt)
    }

    /// Copy upstream's answer to the client, logging it; with the body's
    /// byte at `corrupt` inverted.
    fn relay_response(
        &mut self,
        seq: u64,
        req: &Request,
        corrupt: Option<u64>,
    ) -> io::Result<bool> {
        let up = self.upstream.as_mut().expect("forward connected upstream");
        let resp = loop {
            let head = up
                .read_head()?
                .ok_or_else(|| eof("upstream closed before answering"))?;
            let resp = Response::parse(head)?;
            // Interim answers (100 Continue) come before the real one.
            if !(100..200).contains(&resp.status) {
                break resp;
            }
            self.client.write_all(&resp.head)?;
        };
        self.sh.update(seq, |e| e.status = Some(resp.status));

        let mut out = Lagging::new(&mut self.client);
        out.write(&resp.head)?;
        let mut capture = Vec::new();
        let mut keep_alive = !req.close && !resp.close;
        if req.method == "HEAD" || resp.status == 204 || resp.status == 304 {
            // No body, whatever the headers say.
        } else if resp.chunked {
            relay_chunked(up, &mut out, &mut self.scratch, &mut capture)?;
        } else if let Some(len) = resp.content_length {
            copy_exact(up, &mut out, len, &mut self.scratch, &mut capture, corrupt)?;
        } else {
            // Close-delimited: only closing tells the client it has it all.
            copy_to_eof(up, &mut out, &mut self.scratch, &mut capture)?;
            keep_alive = false;
        }
        self.sh.update(seq, move |e| {
            e.response_body = capture;
            e.finished = Some(Instant::now());
        });
        if let Err(e) = out.finish() {
            self.sh.update(seq, |e| e.finished = None);
            return Err(e);
        }
        // When upstream said Connection: close, the client was told too and
        // will not reuse the connection: close both, as the server would.
        Ok(keep_alive)
    }

    /// Make sure there is an upstream connection that is still open: the
    /// server may have closed an idle keep-alive one meanwhile.
    fn connect_upstream(&mut self) -> io::Result<()> {
        if self.upstream.as_ref().is_some_and(|u| !u.idle_and_open()) {
            self.upstream = None;
        }
        if self.upstream.is_none() {
            let stream = TcpStream::connect_timeout(&self.sh.upstream, Duration::from_secs(5))?;
            self.upstream = Some(Sock::new(
                stream,
                self.sh.stop.clone(),
                self.sh.frozen.clone(),
            )?);
        }
        Ok(())
    }
}

/// Relay a chunked body verbatim (sizes, extensions, trailers), keeping a
/// de-chunked copy of its start.
fn relay_chunked(
    src: &mut Sock,
    dst: &mut Lagging,
    scratch: &mut [u8],
    capture: &mut Vec<u8>,
) -> io::Result<()> {
    loop {
        let line = src.read_line()?;
        dst.write(&line)?;
        let text = String::from_utf8_lossy(&line);
        let size = text.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
        if size == 0 {
            // Trailer fields, then the empty line that ends the body.
            loop {
                let line = src.read_line()?;
                dst.write(&line)?;
                if line == b"\r\n" || line == b"\n" {
                    return Ok(());
                }
            }
        }
        copy_exact(src, dst, size, scratch, capture, None)?;
        let crlf = src.read_line()?;
        dst.write(&crlf)?;
    }
}

fn copy_exact(
    src: &mut Sock,
    dst: &mut Lagging,
    len: u64,
    scratch: &mut [u8],
    capture: &mut Vec<u8>,
    corrupt: Option<u64>,
) -> io::Result<()> {
    let mut left = len;
    while left > 0 {
        let want = left.min(scratch.len() as u64) as usize;
        let n = src.read(&mut scratch[..want])?;
        if n == 0 {
            return Err(eof("upstream closed mid-body"));
        }
        if let Some(at) = corrupt {
            invert_at(&mut scratch[..n], len - left, at);
        }
        dst.write(&scratch[..n])?;
        keep_prefix(capture, &scratch[..n]);
        left -= n as u64;
    }
    Ok(())
}

/// Inverts the byte at offset `at` of a body when `piece`, which starts at
/// offset `start` of it, holds that byte.
fn invert_at(piece: &mut [u8], start: u64, at: u64) {
    if (start..start + piece.len() as u64).contains(&at) {
        piece[(at - start) as usize] ^= 0xff;
    }
}

fn copy_to_eof(
    src: &mut Sock,
    dst: &mut Lagging,
    scratch: &mut [u8],
    capture: &mut Vec<u8>,
) -> io::Result<()> {
    loop {
        let n = src.read(scratch)?;
        if n == 0 {
            return Ok(());
        }
        dst.write(&scratch[..n])?;
        keep_prefix(capture, &scratch[..n]);
    }
}

/// A writer that lags one piece behind. The log entry of a response is
/// completed before its last piece goes out, so a test that has just read
/// a whole answer always finds it logged as finished; writing first and
/// logging after would race with the test's own look at the log.
struct Lagging<'a> {
    dst: &'a mut Sock,
    held: Vec<u8>,
}

impl<'a> Lagging<'a> {
    fn new(dst: &'a mut Sock) -> Lagging<'a> {
        Lagging {
            dst,
            held: Vec::new(),
        }
    }

    /// Send what was held, and hold `data` instead.
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.dst.write_all(&self.held)?;
        self.held.clear();
        self.held.extend_from_slice(data);
        Ok(())
    }

    /// Send the last piece.
    fn finish(self) -> io::Result<()> {
        self.dst.write_all(&self.held)
    }
}

fn keep_prefix(capture: &mut Vec<u8>, data: &[u8]) {
    let room = CAPTURE.saturating_sub(capture.len());
    capture.extend_from_slice(&data[..data.len().min(room)]);
}

/// Sleep until `due`, in ticks, giving up when the proxy stops.
fn sleep_until(due: Instant, stop: &AtomicBool) -> io::Result<()> {
    loop {
        if stop.load(SeqCst) {
            return Err(stopped());
        }
        let now = Instant::now();
        if now >= due {
            return Ok(());
        }
        thread::sleep((due - now).min(TICK));
    }
}

// ================================================================ sockets

/// A TCP stream with a read-ahead buffer, whose reads and writes wait at
/// most a TICK at a time and fail once the stop flag is set.
struct Sock {
    stream: TcpStream,
    /// Bytes read past what has been consumed (the start of a body after
    /// its head, say).
    buf: Vec<u8>,
    stop: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
}

impl Sock {
    fn new(stream: TcpStream, stop: Arc<AtomicBool>, frozen: Arc<AtomicBool>) -> io::Result<Sock> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(TICK))?;
        stream.set_write_timeout(Some(TICK))?;
        Ok(Sock {
            stream,
            buf: Vec::new(),
            stop,
            frozen,
        })
    }

    /// Waits while the proxy is frozen; fails once it stops.
    fn thaw(&self) -> io::Result<()> {
        while self.frozen.load(SeqCst) {
            if self.stop.load(SeqCst) {
                return Err(stopped());
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    /// One read straight from the socket: None when it timed out.
    fn read_tick(&mut self, out: &mut [u8]) -> io::Result<Option<usize>> {
        if self.stop.load(SeqCst) {
            return Err(stopped());
        }
        if self.frozen.load(SeqCst) {
            thread::sleep(TICK);
            return Ok(None);
        }
        match self.stream.read(out) {
            Ok(n) => Ok(Some(n)),
            Err(e) if is_transient(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Some bytes, buffered ones first; 0 at EOF.
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.thaw()?;
        if self.has_buffered() {
            let n = out.len().min(self.buf.len());
            out[..n].copy_from_slice(&self.buf[..n]);
            self.buf.drain(..n);
            return Ok(n);
        }
        loop {
            if let Some(n) = self.read_tick(out)? {
                return Ok(n);
            }
        }
    }

    /// Read more into the buffer; false at EOF.
    fn fill(&mut self) -> io::Result<bool> {
        let mut tmp = [0u8; 8192];
        let n = loop {
            if let Some(n) = self.read_tick(&mut tmp)? {
                break n;
            }
        };
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n > 0)
    }

    /// Everything through the next blank line (CRLFCRLF). None when the
    /// peer closed cleanly before sending anything.
    fn read_head(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut scanned: usize = 0;
        loop {
            // Tolerate the empty lines RFC 9112 allows before a request.
            while self.buf.starts_with(b"\r\n") {
                self.buf.drain(..2);
                scanned = 0;
            }
            let from = scanned.saturating_sub(3);
            if let Some(i) = find(&self.buf[from..], b"\r\n\r\n") {
                let end = from + i + 4;
                return Ok(Some(self.buf.drain(..end).collect()));
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("head over 64 KiB"));
            }
            scanned = self.buf.len();
            if !self.fill()? {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(eof("closed mid-head"))
                };
            }
        }
    }

    /// Everything through the next LF.
    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        let mut scanned = 0;
        loop {
            if let Some(i) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + i + 1;
                return Ok(self.buf.drain(..end).collect());
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("line over 64 KiB"));
            }
            scanned = self.buf.len();
            if !self.fill()? {
                return Err(eof("closed mid-line"));
            }
        }
    }

    /// Write everything. A timed-out send may have sent part: the count
    /// from write() says how much, so nothing is lost or repeated.
    fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.stop.load(SeqCst) {
                return Err(stopped());
            }
            self.thaw()?;
            match self.stream.write(data) {
                Ok(0) => return Err(io::Error::new(ErrorKind::WriteZero, "peer gone")),
                Ok(n) => data = &data[n..],
                Err(e) if is_transient(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether an idle connection is still usable: nothing buffered, and a
    /// non-blocking peek finds neither EOF nor stray bytes.
    fn idle_and_open(&self) -> bool {
        if self.has_buffered() || self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut byte = [0u8; 1];
        let open =
            matches!(self.stream.peek(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock);
        self.stream.set_nonblocking(false).is_ok() && open
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

fn stopped() -> io::Error {
    io::Error::other("fault proxy stopped")
}

fn eof(what: &str) -> io::Error {
    io::Error::new(ErrorKind::UnexpectedEof, what.to_string())
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, what.to_string())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ================================================================ HTTP heads

/// A request head, kept raw for forwarding.
struct Request {
    head: Vec<u8>,
    method: String,
    path: String,
    query: String,
    content_length: u64,
    chunked: bool,
    /// The client asked for the connection to close after this exchange.
    close: bool,
    /// `Expect: 100-continue`: the client waits for a word before its body.
    expect_continue: bool,
    /// Headers, names lowercased.
    headers: Vec<(String, String)>,
}

impl Request {
    fn header_names(&self) -> Vec<&str> {
        self.headers.iter().map(|(k, _)| k.as_str()).collect()
    }

    fn parse(head: Vec<u8>) -> io::Result<Request> {
        let (start, headers) = split_head(&head)?;
        let mut parts = start.split_whitespace();
        let (Some(method), Some(target), Some(version)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("bad request line"));
        };
        let target = origin_form(target);
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let content_length = match header(&headers, "content-length") {
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| invalid("bad Content-Length"))?,
            None => 0,
        };
        Ok(Request {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            content_length,
            chunked: is_chunked(&headers),
            close: wants_close(version, &headers),
            expect_continue: header(&headers, "expect")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue")),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            head,
        })
    }
}

/// A response head, kept raw for relaying.
struct Response {
    head: Vec<u8>,
    status: u16,
    content_length: Option<u64>,
    chunked: bool,
    close: bool,
}

impl Response {
    fn parse(head: Vec<u8>) -> io::Result<Response> {
        let (start, headers) = split_head(&head)?;
        let mut parts = start.split_whitespace();
        let version = parts.next().unwrap_or("");
        let status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid("bad status line"))?;
        let content_length = match header(&headers, "content-length") {
            Some(v) => Some(
                v.trim()
                    .parse()
                    .map_err(|_| invalid("bad Content-Length"))?,
            ),
            None => None,
        };
        Ok(Response {
            status,
            content_length,
            chunked: is_chunked(&headers),
            close: wants_close(version, &headers),
            head,
        })
    }
}

/// The start line and the header fields of a head.
fn split_head(head: &[u8]) -> io::Result<(String, Vec<(String, String)>)> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let start = lines.next().unwrap_or("").to_string();
    if start.is_empty() {
        return Err(invalid("empty head"));
    }
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok((start, headers))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    header(headers, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
}

/// Whether the connection ends after this message: `Connection: close`,
/// or HTTP/1.0 without keep-alive.
fn wants_close(version: &str, headers: &[(String, String)]) -> bool {
    let tokens: Vec<String> = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .collect();
    tokens.iter().any(|t| t == "close")
        || (version == "HTTP/1.0" && !tokens.iter().any(|t| t == "keep-alive"))
}

/// The path-and-query of a request target, also when a client sends the
/// absolute form (`http://host/path`) it uses for proxies.
fn origin_form(target: &str) -> &str {
    match target.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            rest.find('/').map_or("/", |i| &rest[i..])
        }
        _ => target,
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

// ================================================================ encodings

fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(k, _)| percent_decode(k) == name)
        .map(|(_, v)| percent_decode(v))
}

/// %XX escapes decoded; anything malformed kept as is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

// ================================================================ self-tests

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};

    /// A tiny keep-alive HTTP server: 200 with "METHOD PATH BODYLEN" as a
    /// Content-Length body; a chunked body for paths containing "chunked";
    /// a `100 Continue` first for paths containing "continue".
    struct Upstream {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        requests: Arc<AtomicUsize>,
        accept: Option<JoinHandle<()>>,
    }

    impl Upstream {
        fn start() -> Upstream {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let requests = Arc::new(AtomicUsize::new(0));
            let (s, r) = (stop.clone(), requests.clone());
            let accept = thread::spawn(move || {
                for stream in listener.incoming() {
                    if s.load(SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (s, r) = (s.clone(), r.clone());
                    thread::spawn(move || serve_upstream(stream, s, r));
                }
            });
            Upstream {
                addr,
                stop,
                requests,
                accept: Some(accept),
            }
        }

        fn url(&self) -> String {
            format!("http://{}", self.addr)
        }

        fn requests(&self) -> usize {
            self.requests.load(SeqCst)
        }
    }

    impl Drop for Upstream {
        fn drop(&mut self) {
            // Connection threads see the flag within a TICK and end alone.
            self.stop.store(true, SeqCst);
            if TcpStream::connect(self.addr).is_ok() {
                if let Some(t) = self.accept.take() {
                    let _ = t.join();
                }
            }
        }
    }

    fn serve_upstream(stream: TcpStream, stop: Arc<AtomicBool>, requests: Arc<AtomicUsize>) {
        let Ok(mut sock) = Sock::new(stream, stop, Arc::new(AtomicBool::new(false))) else {
            return;
        };
        let mut scratch = vec![0u8; CHUNK];
        while let Ok(Some(head)) = sock.read_head() {
            let Ok(req) = Request::parse(head) else {
                return;
            };
            let mut left = req.content_length;
            while left > 0 {
                let want = left.min(CHUNK as u64) as usize;
                match sock.read(&mut scratch[..want]) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => left -= n as u64,
                }
            }
            requests.fetch_add(1, SeqCst);
            let mut reply = String::new();
            if req.path.contains("continue") {
                reply.push_str("HTTP/1.1 100 Continue\r\n\r\n");
            }
            if req.path.contains("chunked") {
                reply.push_str(
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                     5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n",
                );
            } else {
                let body = format!("{} {} {}", req.method, req.path, req.content_length);
                reply.push_str(&format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                ));
                if req.method != "HEAD" {
                    reply.push_str(&body);
                }
            }
            if sock.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    }

    /// A raw client connection: a writer and a reader of the same socket.
    fn client(proxy: &Proxy) -> (TcpStream, BufReader<TcpStream>) {
        let stream = TcpStream::connect(proxy.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        (stream, reader)
    }

    fn send(w: &mut TcpStream, method: &str, target: &str, body_len: usize) -> io::Result<()> {
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: s3.test\r\nContent-Length: {body_len}\r\n\r\n"
        );
        w.write_all(head.as_bytes())?;
        w.write_all(&vec![b'x'; body_len])
    }

    /// Status and (de-chunked) body of the next final response.
    fn receive(r: &mut BufReader<TcpStream>, head_request: bool) -> io::Result<(u16, Vec<u8>)> {
        let line = |r: &mut BufReader<TcpStream>| -> io::Result<String> {
            let mut l = String::new();
            if r.read_line(&mut l)? == 0 {
                return Err(eof("no response"));
            }
            Ok(l.trim_end().to_string())
        };
        loop {
            let status_line = line(r)?;
            let status: u16 = status_line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| invalid("status line"))?;
            let (mut len, mut chunked) = (0usize, false);
            loop {
                let l = line(r)?;
                if l.is_empty() {
                    break;
                }
                let (k, v) = l.split_once(':').unwrap();
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap();
                }
                chunked |= k.eq_ignore_ascii_case("transfer-encoding");
            }
            if status < 200 {
                continue;
            }
            let mut body = Vec::new();
            if head_request {
            } else if chunked {
                loop {
                    let size_line = line(r)?;
                    let size =
                        usize::from_str_radix(size_line.split(';').next().unwrap(), 16).unwrap();
                    if size == 0 {
                        while !line(r)?.is_empty() {}
                        break;
                    }
                    let at = body.len();
                    body.resize(at + size, 0);
                    r.read_exact(&mut body[at..])?;
                    line(r)?;
                }
            } else {
                body.resize(len, 0);
                r.read_exact(&mut body)?;
            }
            return Ok((status, body));
        }
    }

    fn wait(timeout: Duration, done: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done() {
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
        true
    }

    #[test]
    fn proxy_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Proxy>();
    }

    #[test]
    fn proxy_forwards_keep_alive_requests() {
        let up = Upstream::start();
        let proxy = Proxy::start(&up.url());
        let (mut w, mut r) = client(&proxy);

        send(&mut w, "PUT", "/bkt/k1", 10).unwrap();
        assert_eq!(
            receive(&mut r, false).unwrap(),
            (200, b"PUT /bkt/k1 10".to_vec())
        );
        send(
            &mut w,
            "PUT",
            "/bkt/k%20two?partNumber=2&uploadId=a%2Bb",
            200_000,
        )
        .unwrap();
        assert_eq!(
            receive(&mut r, false).unwrap(),
            (200, b"PUT /bkt/k%20two 200000".to_vec())
        );
        send(&mut w, "GET", "/bkt/chunked", 0).unwrap();
        assert_eq!(
            receive(&mut r, false).unwrap(),
            (200, b"hello world".to_vec())
        );
        send(&mut w, "POST", "/bkt/continue?uploads", 0).unwrap();
        assert_eq!(
            receive(&mut r, false).unwrap(),
            (200, b"POST /bkt/continue 0".to_vec())
        );
        send(&mut w, "HEAD", "/bkt/k1", 0).unwrap();
        assert_eq!(receive(&mut r, true).unwrap(), (200, Vec::new()));
        drop((w, r));

        let log = proxy.log();
        let lens: Vec<u64> = log.iter().map(|e| e.body_len).collect();
        assert_eq!(lens, [10, 200_000, 0, 0, 0]);
        assert!(log
            .iter()
            .all(|e| e.status == Some(200) && e.finished.is_some() && !e.injected));
        assert!(log[1].is_upload_part());
        assert_eq!(log[1].key(), "k two");
        assert_eq!(log[1].query_param("uploadId").as_deref(), Some("a+b"));
        assert_eq!(log[2].response_body, b"hello world");
        assert!(log[3].is_create_upload());
        assert_eq!(log[4].response_body, b"");
        assert_eq!(up.requests(), 5);
        assert_eq!(proxy.peak_connections(), 1);
        assert!(wait(Duration::from_secs(1), || proxy.open_connections() == 0));
    }

    #[test]
    fn proxy_respond_rule_applies_once() {
        let up = Upstream::start();
        let proxy = Proxy::start(&up.url());
        proxy.add_rule(Rule::new(
            Match::part(10),
            Action::respond(500, "Never", "not part 1"),
        ));
        proxy.add_rule(
            Rule::new(Match::part(1), Action::respond(503, "SlowDown", "a < b")).times(1),
        );
        let (mut w, mut r) = client(&proxy);
        let target = "/bkt/k?partNumber=1&uploadId=u";

        send(&mut w, "PUT", target, 100).unwrap();
        let (status, body) = receive(&mut r, false).unwrap();
        assert_eq!(status, 503);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "<Error><Code>SlowDown</Code><Message>a &lt; b</Message><RequestId>proxy</RequestId></Error>"
        );
        send(&mut w, "PUT", target, 100).unwrap();
        assert_eq!(receive(&mut r, false).unwrap().0, 200);

        let log = proxy.log();
        assert_eq!(log.len(), 2);
        assert!(log[0].injected && log[0].status == Some(503) && log[0].body_len == 100);
        assert!(!log[1].injected && log[1].status == Some(200));
        assert_eq!(up.requests(), 1, "the injected answer is not forwarded");
        assert_eq!(proxy.peak_connections(), 1, "the connection was kept alive");
    }

    #[test]
    fn proxy_cut_after_drops_the_connection() {
        let up = Upstream::start();
        let proxy = Proxy::start(&up.url());
        proxy.add_rule(Rule::new(
            Match::method("PUT"),
            Action::CutAfter { bytes: 1000 },
        ));
        let (mut w, mut r) = client(&proxy);

        // The write may fail already (reset), or the read must.
        let _ = send(&mut w, "PUT", "/bkt/big", 300_000);
        assert!(receive(&mut r, false).is_err());

        assert!(proxy.wait_for(Duration::from_secs(1), proxy_closed));
        let e = &proxy.log()[0];
        assert_eq!(
            (e.body_len, e.status, e.finished, e.injected),
            (1000, None, None, true)
        );
        assert_eq!(up.requests(), 0, "upstream never got a whole request");

        fn proxy_closed(log: &[Entry]) -> bool {
            log.len() == 1 && log[0].body_len == 1000
        }
    }

    #[test]
    fn proxy_delay_and_throttle_slow_requests_down() {
        let up = Upstream::start();
        let proxy = Proxy::start(&up.url());
        proxy.add_rule(Rule::new(
            Match::path("slow"),
            Action::Delay(Duration::from_millis(150)),
        ));
        let throttle = Action::Throttle {
            bytes_per_sec: 100_000,
        };
        proxy.add_rule(Rule::new(Match::path("thin"), throttle));
        let (mut w, mut r) = client(&proxy);

        let t = Instant::now();
        send(&mut w, "GET", "/bkt/slow", 0).unwrap();
        assert_eq!(receive(&mut r, false).unwrap().0, 200);
        assert!(t.elapsed() >= Duration::from_millis(150));

        let t = Instant::now();
        send(&mut w, "PUT", "/bkt/thin", 20_000).unwrap();
        assert_eq!(
            receive(&mut r, false).unwrap(),
            (200, b"PUT /bkt/thin 20000".to_vec())
        );
        assert!(
            t.elapsed() >= Duration::from_millis(190),
            "{:?}",
            t.elapsed()
        );
        assert!(proxy.log().iter().all(|e| e.injected));
    }

    #[test]
    fn proxy_black_hole_holds_until_released_or_dropped() {
        let up = Upstream::start();
        let proxy = Proxy::start(&up.url());
        proxy.set_black_hole(true);

        let (mut a, mut ra) = client(&proxy);
        send(&mut a, "PUT", "/bkt/a", 10).unwrap();
        assert!(proxy.wait_for(Duration::from_secs(1), |log| log.len() == 1
            && log[0].body_len == 10));
        a.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let err = receive(&mut ra, false).unwrap_err();
        assert!(is_transient(&err), "held, not answered: {err}");

        // Turning it off closes what it holds.
        proxy.set_black_hole(false);
        a.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut byte = [0u8; 1];
        assert!(matches!(ra.read(&mut byte), Ok(0)));

        // Dropping the proxy releases a held request promptly too.
        proxy.set_black_hole(true);
        let (mut b, mut rb) = client(&proxy);
        send(&mut b, "GET", "/bkt/b", 0).unwrap();
        assert!(proxy.wait_for(Duration::from_secs(1), |log| log.len() == 2));
        let log = proxy.log();
        assert!(log
            .iter()
            .all(|e| e.status.is_none() && e.finished.is_none() && e.injected));
        let t = Instant::now();
        drop(proxy);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "drop took {:?}",
            t.elapsed()
        );
        assert!(matches!(rb.read(&mut byte), Ok(0) | Err(_)));
        assert_eq!(up.requests(), 0);
    }

    #[test]
    fn proxy_peak_in_flight_counts_overlaps() {
        let t0 = Instant::now() - Duration::from_secs(10);
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let entry = |method: &str, start: u64, end: Option<u64>| Entry {
            method: method.into(),
            path: "/bkt/k".into(),
            query: String::new(),
            body_len: 0,
            status: None,
            response_body: Vec::new(),
            started: ms(start),
            finished: end.map(ms),
            injected: false,
            headers: Vec::new(),
        };
        let log = vec![
            entry("PUT", 0, Some(10)),
            entry("PUT", 5, Some(15)),
            // Starts as the first ends: half-open intervals do not overlap.
            entry("PUT", 10, Some(20)),
            entry("GET", 6, Some(7)),
        ];
        assert_eq!(peak_in_flight(&log, |e| e.method == "PUT"), 2);
        assert_eq!(peak_in_flight(&log, |_| true), 3);
        let mut log = log;
        // Unfinished: in flight until now.
        log.push(entry("PUT", 12, None));
        assert_eq!(peak_in_flight(&log, |e| e.method == "PUT"), 3);
        assert_eq!(peak_in_flight(&log, |e| e.method == "DELETE"), 0);
    }

    #[test]
    fn proxy_entry_helpers_decode() {
        let mut e = Entry {
            method: "POST".into(),
            path: "/bkt/dir/a%20b%2Bc".into(),
            query: "uploads".into(),
            body_len: 0,
            status: Some(200),
            response_body: b"<InitiateMultipartUploadResult><Bucket>bkt</Bucket>\
                <UploadId>x&amp;y</UploadId></InitiateMultipartUploadResult>"
                .to_vec(),
            started: Instant::now(),
            finished: None,
            injected: false,
            headers: vec!["x-amz-checksum-crc32c".into()],
        };
        assert_eq!(e.key(), "dir/a b+c");
        assert!(e.is_create_upload() && !e.is_complete());
        assert_eq!(e.upload_id_created().as_deref(), Some("x&y"));
        e.query = "uploadId=x%26y&partNumber=7".into();
        assert!(e.is_complete() && !e.is_create_upload() && e.upload_id_created().is_none());
        assert_eq!(e.query_param("uploadId").as_deref(), Some("x&y"));
        assert_eq!(e.query_param("uploads"), None);
        e.method = "PUT".into();
        assert!(e.is_upload_part());
        assert!(Match::part(7).matches("PUT", &e.path, &e.query, &e.headers, false));
        assert!(!Match::part(70).matches("PUT", &e.path, &e.query, &e.headers, false));
        assert!(!Match::part(7).matches("GET", &e.path, &e.query, &e.headers, false));
        assert!(Match::first_on_connection().matches("PUT", &e.path, &e.query, &e.headers, true));
        assert!(!Match::first_on_connection().matches("PUT", &e.path, &e.query, &e.headers, false));
        assert!(Match::query("partNumber=7")
            .and_path("dir/")
            .matches("PUT", &e.path, &e.query, &e.headers, false));
        assert!(e.has_header("X-Amz-Checksum-CRC32C") && !e.has_header("content-md5"));
        assert!(Match::part(7)
            .and_header("X-Amz-Checksum-Crc32c")
            .matches("PUT", &e.path, &e.query, &e.headers, false));
        assert!(!Match::part(7)
            .and_header("content-md5")
            .matches("PUT", &e.path, &e.query, &e.headers, false));
        e.method = "DELETE".into();
        assert!(e.is_abort());
    }
}

//! What the `batchput` command and the quickstart example show a person
//! while a job runs: the live progress bar, numbers read naturally, error
//! messages that say what to do, and Ctrl-C handling.
//!
//! It is a module of the cli crate's library only so that the command and
//! the example share one copy; it is not an API and may change at any time.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

use batchput::{Error, ErrorKind, FileState, Job, JobState, Progress};

// ---------------------------------------------------------------- numbers

/// `1536` -> `"1.5 KiB"`; binary units, one decimal above bytes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Bytes per second as `"41.2 MiB/s"`.
pub fn human_rate(bytes_per_sec: f64) -> String {
    if !bytes_per_sec.is_finite() || bytes_per_sec < 0.0 {
        return "- B/s".into();
    }
    format!("{}/s", human_bytes(bytes_per_sec.round() as u64))
}

/// `"850 ms"`, `"3.4 s"`, `"2m 05s"`, `"1h 02m"`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        let s = d.as_secs();
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        let m = d.as_secs() / 60;
        format!("{}h {:02}m", m / 60, m % 60)
    }
}

/// The lowercase name of a job state, as the report prints it.
pub fn job_state_name(s: JobState) -> &'static str {
    match s {
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Stopped => "stopped",
        JobState::Paused => "paused",
    }
}

/// The lowercase name of a file state, as the report prints it.
pub fn file_state_name(s: FileState) -> &'static str {
    match s {
        FileState::NotStarted => "not_started",
        FileState::Running => "running",
        FileState::Completed => "completed",
        FileState::Failed => "failed",
        FileState::Aborted => "aborted",
        FileState::Paused => "paused",
        FileState::AbortFailed => "abort_failed",
        FileState::Unknown => "unknown",
    }
}

// ---------------------------------------------------------------- environment

/// Option `key` from the usual AWS environment variables, for the options
/// the library itself does not read from there: `endpoint`
/// (AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL) and `region` (AWS_REGION,
/// then AWS_DEFAULT_REGION).
pub fn aws_env(key: &str) -> Option<String> {
    let names: &[&str] = match key {
        "endpoint" => &["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"],
        "region" => &["AWS_REGION", "AWS_DEFAULT_REGION"],
        _ => &[],
    };
    names
        .iter()
        .filter_map(|n| std::env::var(n).ok())
        .find(|v| !v.is_empty())
}

// ---------------------------------------------------------------- errors

/// Where a job was going, for messages that name the destination.
#[derive(Debug, Clone, Default)]
pub struct Destination {
    /// The bucket.
    pub bucket: String,
    /// The endpoint URL(s) as configured.
    pub endpoint: String,
}

/// One line a person can act on: what is wrong and what to check. The
/// engine's own message (operation, key, status, the server's words) is
/// kept for [`detail`]; this one leads with the cause.
pub fn explain(e: &Error, dest: &Destination) -> String {
    let endpoint = e.endpoint().unwrap_or(&dest.endpoint);
    let bucket = e.bucket().unwrap_or(&dest.bucket);
    let denied = |why: &str| match e.key() {
        Some(key) => format!("access denied for key '{key}': check the credentials{why}"),
        None => {
            format!("access denied to bucket '{bucket}' at {endpoint}: check the credentials{why}")
        }
    };
    match e.code() {
        Some("NoSuchBucket") => return format!("bucket '{bucket}' does not exist at {endpoint}"),
        Some("AccessDenied") => return denied(" and the bucket's policy"),
        Some("SignatureDoesNotMatch") => {
            return denied(" (the server computed another signature: is the secret key right?)")
        }
        Some("InvalidAccessKeyId") => {
            return denied(" (the server does not know this access key)")
        }
        Some("RequestTimeTooSkewed") => {
            return "the server rejects this machine's clock: set the time (NTP) and retry".into()
        }
        Some("PermanentRedirect") | Some("AuthorizationHeaderMalformed") => {
            return format!(
                "bucket '{bucket}' is not served at {endpoint} with this region: check --endpoint and --region ({})",
                e.message()
            )
        }
        _ => {}
    }
    match e.kind() {
        ErrorKind::Network => format!(
            "cannot reach {endpoint}: {}; is the server running, and are --endpoint and --proxy right?",
            e.message()
        ),
        _ => e.to_string(),
    }
}

/// The engine's full message when it adds to [`explain`]'s, else `None`.
pub fn detail(e: &Error, dest: &Destination) -> Option<String> {
    let full = e.to_string();
    (full != explain(e, dest)).then_some(full)
}

// ---------------------------------------------------------------- progress

/// The live progress line on a terminal: one bar with bytes acknowledged,
/// speed, ETA and files done. Hidden when not drawing to a terminal.
pub struct Display {
    bar: ProgressBar,
}

impl Display {
    /// A display for a job of `bytes_total` bytes. It draws on stderr, and
    /// only when `enabled` and both stdout and stderr are terminals: with
    /// the output piped or redirected, nothing but the final report shows.
    pub fn new(enabled: bool, bytes_total: u64) -> Display {
        let live = enabled && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        let bar = if live {
            let bar = ProgressBar::with_draw_target(
                Some(bytes_total),
                ProgressDrawTarget::term_like_with_hz(
                    Box::new(Narrowed(console::Term::stderr())),
                    10,
                ),
            );
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>4} {wide_bar} {msg}")
                    .expect("a valid progress template")
                    .progress_chars("=> "),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        // Log lines go above the bar while it is drawn, not through it.
        crate::logger::draw_above(&bar);
        Display { bar }
    }

    /// Whether the bar is drawn.
    pub fn is_live(&self) -> bool {
        !self.bar.is_hidden()
    }

    /// Redraws from a snapshot.
    pub fn update(&self, p: &Progress) {
        if self.bar.is_hidden() {
            return;
        }
        self.bar.set_length(p.bytes_total);
        self.bar.set_position(p.bytes_done);
        self.bar.set_message(progress_line(p));
        // The spinner turns while big parts are in flight and no byte is
        // acknowledged yet: alive, not stuck.
        self.bar.tick();
    }

    /// A line above the bar (or on stderr when there is no bar).
    pub fn note(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            // Not `println`: it pads the line to the width the bar was
            // told, which `Narrowed` shortens, and the bar would follow on
            // the same line.
            self.bar.suspend(|| eprintln!("{line}"));
        }
    }

    /// Removes the bar, leaving the terminal for the report.
    pub fn finish(&self) {
        crate::logger::no_bar();
        self.bar.finish_and_clear();
    }
}

/// Standard error, reported a few columns narrower than it is. A bar that
/// filled the last column would leave the cursor there, and the `^C` the
/// terminal echoes on Ctrl-C would wrap to a new line, stranding a stale
/// bar above the report; with the margin the echo stays on the bar's line,
/// which the next redraw clears.
#[derive(Debug)]
struct Narrowed(console::Term);

impl TermLike for Narrowed {
    fn width(&self) -> u16 {
        self.0.size().1.saturating_sub(3).max(20)
    }
    fn height(&self) -> u16 {
        self.0.size().0
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_up(n)
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_down(n)
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_right(n)
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_left(n)
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.0.write_line(s)
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.0.write_str(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.0.clear_line()
    }
    fn flush(&self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// `" 45%  58.0 MiB/128.0 MiB  41.2 MiB/s  ETA 2s  files 120/304"`.
pub fn progress_line(p: &Progress) -> String {
    let pct = if p.bytes_total == 0 {
        if p.files_done == p.files_total {
            100
        } else {
            0
        }
    } else {
        (p.bytes_done as u128 * 100 / p.bytes_total as u128) as u64
    };
    let eta = if p.speed_bps >= 1.0 && p.bytes_done < p.bytes_total {
        let secs = (p.bytes_total - p.bytes_done) as f64 / p.speed_bps;
        let secs = secs.ceil() as u64;
        if secs < 60 {
            format!("ETA {secs}s")
        } else {
            format!("ETA {}", human_duration(Duration::from_secs(secs)))
        }
    } else {
        "ETA -".into()
    };
    format!(
        "{pct:>3}%  {}/{}  {}  {eta}  files {}/{}",
        human_bytes(p.bytes_done),
        human_bytes(p.bytes_total),
        human_rate(p.speed_bps),
        p.files_done,
        p.files_total
    )
}

// ---------------------------------------------------------------- interrupts

static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);
static FIRST_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_interrupt(sig: libc::c_int) {
    // Only async-signal-safe work here: atomics, write(2), _exit(2).
    let _ = FIRST_SIGNAL.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    if INTERRUPTS.fetch_add(1, Ordering::SeqCst) >= 1 {
        const MSG: &[u8] = b"\nbatchput: interrupted again, exiting without cleanup; \
            open multipart uploads may remain ('batchput cleanup' aborts them)\n";
        // SAFETY: write(2) and _exit(2) are async-signal-safe; MSG is static.
        unsafe {
            libc::write(2, MSG.as_ptr().cast(), MSG.len());
            libc::_exit(128 + sig);
        }
    }
}

/// Catches SIGINT and SIGTERM: the first is recorded for [`interrupted`]
/// (the caller stops its job and cleans up); a second one exits at once.
pub fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask"
        // value; the handler only touches atomics and async-signal-safe
        // calls.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_interrupt as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The first signal caught by [`catch_interrupts`], if any.
pub fn interrupted() -> Option<i32> {
    match FIRST_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// How a watched job ended.
pub struct Outcome {
    /// The final snapshot.
    pub progress: Progress,
    /// The signal that stopped it, when one did.
    pub signal: Option<i32>,
}

impl Outcome {
    /// The process exit code: 0 success, 1 failure, 128 + signal when a
    /// signal stopped it (130 for Ctrl-C).
    pub fn exit_code(&self) -> u8 {
        match (self.progress.state, self.signal) {
            (JobState::Succeeded, _) => 0,
            (JobState::Stopped, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
            _ => 1,
        }
    }
}

/// Follows `job` to its end, redrawing `display`; on the first interrupt
/// it stops the job (every open upload is aborted) and keeps waiting for
/// that cleanup to finish.
pub fn watch(job: &Job, display: &Display) -> Outcome {
    let mut signal = None;
    loop {
        let finished = job.wait(Some(Duration::from_millis(100)));
        let p = job.progress();
        display.update(&p);
        if finished {
            display.finish();
            return Outcome {
                progress: p,
                signal,
            };
        }
        if signal.is_none() {
            if let Some(sig) = interrupted() {
                signal = Some(sig);
                job.stop();
                display.note(
                    "interrupted: stopping and aborting open uploads \
                     (press Ctrl-C again to quit at once)",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_numbers_read_naturally() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(128 << 20), "128.0 MiB");
        assert_eq!(human_rate(41.2 * 1048576.0), "41.2 MiB/s");
        assert_eq!(human_duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(human_duration(Duration::from_millis(3_400)), "3.4 s");
        assert_eq!(human_duration(Duration::from_secs(125)), "2m 05s");
        assert_eq!(human_duration(Duration::from_secs(3_720)), "1h 02m");
    }

    /// The error the library makes of a server's one answer to a GET of
    /// `a.jpg` in bucket `photos`, and the endpoint it was sent to.
    fn server_error(status: &str, code: &str, message: &str) -> (Error, String) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <Error><Code>{code}</Code><Message>{message}</Message></Error>"
        );
        let answer = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
                head.push(byte[0]);
            }
            conn.write_all(answer.as_bytes()).unwrap();
        });
        let store = batchput::store::Store::new(
            &batchput::Config::new()
                .endpoint(&endpoint)
                .bucket("photos")
                .credentials("AKID", "SECRET"),
        )
        .unwrap();
        let e = store.get_object("a.jpg").unwrap_err();
        server.join().unwrap();
        (e, endpoint)
    }

    #[test]
    fn errors_lead_with_the_cause() {
        let (e, endpoint) = server_error(
            "404 Not Found",
            "NoSuchBucket",
            "The specified bucket does not exist",
        );
        let dest = Destination {
            bucket: "photos".into(),
            endpoint: endpoint.clone(),
        };
        assert_eq!(
            explain(&e, &dest),
            format!("bucket 'photos' does not exist at {endpoint}")
        );
        assert!(detail(&e, &dest).unwrap().contains("HTTP 404 NoSuchBucket"));
        let (e, _) = server_error("403 Forbidden", "InvalidAccessKeyId", "denied");
        assert!(
            explain(&e, &dest).starts_with("access denied for key 'a.jpg': check the credentials"),
            "{}",
            explain(&e, &dest)
        );
        let e = Error::new(ErrorKind::LocalIo, "cannot read /x: permission denied");
        assert_eq!(explain(&e, &dest), "cannot read /x: permission denied");
        assert_eq!(detail(&e, &dest), None);
    }
}

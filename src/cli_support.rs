//! What the `batchput` command and the quickstart example show a person:
//! the live progress bar, the final report (text or JSON), error messages
//! that say what to do, and Ctrl-C handling.
//!
//! It lives in the library (behind the default `cli` feature, hidden from
//! the docs) only so that the command and the example share one copy; it
//! is not part of the API and may change at any time.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

use crate::{Error, ErrorKind, FileReport, FileState, Job, JobState, Progress};

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

// ---------------------------------------------------------------- reports

/// The totals in one or two lines, e.g.
/// `uploaded 304 files, 128.0 MiB to s3://b/p in 3.2 s (40.0 MiB/s average, 55.1 MiB/s peak)`.
pub fn summary(p: &Progress, files: &[FileReport], dest: &str) -> String {
    let mut out = String::new();
    // A job shorter than the speed's smoothing window has no peak yet; the
    // average is a lower bound of it.
    let speeds = format!(
        "{} average, {} peak",
        human_rate(p.avg_speed_bps),
        human_rate(p.peak_speed_bps.max(p.avg_speed_bps))
    );
    if p.state == JobState::Succeeded {
        let _ = write!(
            out,
            "uploaded {} file{}, {} to {dest} in {} ({speeds})",
            p.files_total,
            if p.files_total == 1 { "" } else { "s" },
            human_bytes(p.bytes_total),
            human_duration(p.elapsed),
        );
        return out;
    }
    let count = |s: FileState| files.iter().filter(|f| f.state == s).count();
    // Bytes of complete objects only: parts of an aborted upload are gone.
    let kept: u64 = files
        .iter()
        .filter(|f| f.state == FileState::Completed)
        .map(|f| f.size)
        .sum();
    let _ = write!(
        out,
        "{}: {} of {} files uploaded ({} of {}) to {dest} in {}",
        job_state_name(p.state),
        p.files_done,
        p.files_total,
        human_bytes(kept),
        human_bytes(p.bytes_total),
        human_duration(p.elapsed),
    );
    if p.bytes_done > 0 {
        let _ = write!(out, " ({speeds})");
    }
    let mut rest = Vec::new();
    for (state, what) in [
        (FileState::Failed, "failed"),
        (FileState::Aborted, "aborted"),
        (FileState::Paused, "paused (kept for resume)"),
        (
            FileState::AbortFailed,
            "NOT aborted (upload still open on the server)",
        ),
        (
            FileState::Unknown,
            "unknown (the server could not be asked)",
        ),
        (FileState::NotStarted, "not started"),
        (FileState::Running, "still running"),
    ] {
        let n = count(state);
        if n > 0 {
            rest.push(format!("{n} {what}"));
        }
    }
    if !rest.is_empty() {
        let _ = write!(out, "; {}", rest.join(", "));
    }
    if p.files_done > 0 && matches!(p.state, JobState::Failed | JobState::Stopped) {
        out.push_str("; the completed objects stay in the bucket");
    }
    out
}

/// One line per file (at most `limit`, then a count of the rest by state):
/// state, size, average and peak speed, ETag, key.
pub fn file_table(files: &[FileReport], limit: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<11} {:>10} {:>12} {:>12}  {:<36}  key",
        "state", "size", "avg speed", "peak speed", "etag"
    );
    for f in files.iter().take(limit) {
        let _ = writeln!(
            out,
            "{:<11} {:>10} {:>12} {:>12}  {:<36}  {}",
            file_state_name(f.state),
            human_bytes(f.size),
            human_rate(f.avg_speed_bps),
            human_rate(f.peak_speed_bps),
            f.etag.as_deref().unwrap_or("-"),
            f.key
        );
    }
    if files.len() > limit {
        let rest = &files[limit..];
        let mut by_state: Vec<(&str, usize)> = Vec::new();
        for f in rest {
            let name = file_state_name(f.state);
            match by_state.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => *c += 1,
                None => by_state.push((name, 1)),
            }
        }
        let counts: Vec<String> = by_state.iter().map(|(n, c)| format!("{c} {n}")).collect();
        let _ = writeln!(
            out,
            "... and {} more files: {}",
            rest.len(),
            counts.join(", ")
        );
    }
    out
}

/// The final report as one JSON object, for scripts: totals, the error and
/// every file (path, key, size, bytes done, state, average and peak speed,
/// ETag, error).
pub fn json_report(p: &Progress, files: &[FileReport], dest: &Destination) -> String {
    let mut o = String::from("{");
    field_str(&mut o, "state", job_state_name(p.state));
    field_str(&mut o, "bucket", &dest.bucket);
    field_str(&mut o, "endpoint", &dest.endpoint);
    field_num(&mut o, "files_total", p.files_total);
    field_num(&mut o, "files_done", p.files_done);
    field_num(&mut o, "files_failed", p.files_failed);
    field_num(&mut o, "parts_total", p.parts_total);
    field_num(&mut o, "parts_done", p.parts_done);
    field_num(&mut o, "bytes_total", p.bytes_total);
    field_num(&mut o, "bytes_done", p.bytes_done);
    field_f64(&mut o, "elapsed_secs", p.elapsed.as_secs_f64());
    field_f64(&mut o, "avg_speed_bps", p.avg_speed_bps);
    field_f64(&mut o, "peak_speed_bps", p.peak_speed_bps);
    key(&mut o, "error");
    json_error(&mut o, p.error.as_ref(), dest);
    key(&mut o, "files");
    o.push('[');
    for (i, f) in files.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        o.push('{');
        field_str(&mut o, "path", &f.path.to_string_lossy());
        field_str(&mut o, "key", &f.key);
        field_num(&mut o, "size", f.size);
        field_num(&mut o, "bytes_done", f.bytes_done);
        field_str(&mut o, "state", file_state_name(f.state));
        field_f64(&mut o, "avg_speed_bps", f.avg_speed_bps);
        field_f64(&mut o, "peak_speed_bps", f.peak_speed_bps);
        field_opt_str(&mut o, "etag", f.etag.as_deref());
        key(&mut o, "error");
        json_error(&mut o, f.error.as_ref(), dest);
        o.pop(); // the trailing comma
        o.push('}');
    }
    o.push_str("]}");
    o
}

fn json_error(o: &mut String, e: Option<&Error>, dest: &Destination) {
    let Some(e) = e else {
        o.push_str("null,");
        return;
    };
    o.push('{');
    field_str(o, "message", &explain(e, dest));
    field_str(o, "detail", &e.to_string());
    field_str(o, "kind", &snake_case(&format!("{:?}", e.kind())));
    field_opt_str(o, "code", e.code());
    match e.status() {
        Some(s) => field_num(o, "status", s.into()),
        None => field_raw(o, "status", "null"),
    }
    field_opt_str(o, "key", e.key());
    field_opt_str(o, "path", e.path().map(|p| p.to_string_lossy()).as_deref());
    field_opt_str(o, "request_id", e.request_id());
    o.pop();
    o.push_str("},");
}

fn snake_case(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn key(o: &mut String, name: &str) {
    json_string(o, name);
    o.push(':');
}

fn field_raw(o: &mut String, name: &str, raw: &str) {
    key(o, name);
    o.push_str(raw);
    o.push(',');
}

fn field_str(o: &mut String, name: &str, value: &str) {
    key(o, name);
    json_string(o, value);
    o.push(',');
}

fn field_opt_str(o: &mut String, name: &str, value: Option<&str>) {
    match value {
        Some(v) => field_str(o, name, v),
        None => field_raw(o, name, "null"),
    }
}

fn field_num(o: &mut String, name: &str, value: u64) {
    field_raw(o, name, &value.to_string());
}

fn field_f64(o: &mut String, name: &str, value: f64) {
    if value.is_finite() {
        // Rust never prints an exponent for f64, so this is valid JSON.
        field_raw(o, name, &format!("{:.1}", value));
    } else {
        field_raw(o, name, "null");
    }
}

/// A JSON string literal: quotes, backslashes and control characters
/// escaped; everything else (UTF-8 included) as is.
pub fn json_string(o: &mut String, s: &str) {
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_what_json_requires() {
        let mut o = String::new();
        json_string(&mut o, "a\"b\\c\nd\te\u{1}f é 😀");
        assert_eq!(o, r#""a\"b\\c\nd\te\u0001f é 😀""#);
    }

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

    #[test]
    fn errors_lead_with_the_cause() {
        let dest = Destination {
            bucket: "photos".into(),
            endpoint: "http://127.0.0.1:9000".into(),
        };
        let e = Error::new(ErrorKind::Server, "The specified bucket does not exist")
            .with_operation("PutObject")
            .with_key("a.jpg")
            .with_status(404)
            .with_code("NoSuchBucket");
        assert_eq!(
            explain(&e, &dest),
            "bucket 'photos' does not exist at http://127.0.0.1:9000"
        );
        assert!(detail(&e, &dest).unwrap().contains("HTTP 404 NoSuchBucket"));
        let e = Error::new(ErrorKind::Server, "denied")
            .with_key("a.jpg")
            .with_status(403)
            .with_code("InvalidAccessKeyId");
        assert!(
            explain(&e, &dest).starts_with("access denied for key 'a.jpg': check the credentials")
        );
        let e = Error::new(ErrorKind::LocalIo, "cannot read /x: permission denied");
        assert_eq!(explain(&e, &dest), "cannot read /x: permission denied");
        assert_eq!(detail(&e, &dest), None);
    }
}

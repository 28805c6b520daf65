//! What the `batchput` command and the quickstart example say to a
//! person: numbers read naturally, and error messages that lead with the
//! cause, in the command line's own terms (flags, durations as typed).
//!
//! It is a module of the cli crate's library only so that the command and
//! the example share one copy; it is not an API and may change at any time.

use std::time::Duration;

use batchput::{Error, ErrorKind, FileState, JobState, OPTIONS};

// ---------------------------------------------------------------- direction

/// Which way a job moves bytes: the words its progress line, its
/// interrupt notes and its report use. The engine runs both the same way;
/// only what a person reads differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Local files to objects.
    #[default]
    Upload,
    /// Objects to local files.
    Download,
}

impl Direction {
    /// `"upload"`, `"download"`.
    pub fn noun(self) -> &'static str {
        match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        }
    }

    /// `"uploaded"`, `"downloaded"`.
    pub fn past(self) -> &'static str {
        match self {
            Direction::Upload => "uploaded",
            Direction::Download => "downloaded",
        }
    }

    /// Where a finished part of an unfinished file waits for a resume.
    pub fn kept_where(self) -> &'static str {
        match self {
            Direction::Upload => "on the server",
            Direction::Download => "in temporary files",
        }
    }
}

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
    /// Options as the person typed them, by option key
    /// (`("stall_timeout_ms", "2s")`): messages quote these, not
    /// milliseconds the person never wrote.
    pub typed: Vec<(String, String)>,
}

impl Destination {
    /// Option `key` as typed, else its default as the help shows it.
    pub fn typed(&self, key: &str) -> String {
        if let Some((_, v)) = self.typed.iter().find(|(k, _)| k == key) {
            return v.clone();
        }
        let default = OPTIONS
            .iter()
            .find(|o| o.0 == key)
            .map(|o| o.1)
            .unwrap_or("");
        match default {
            "0" if key.ends_with("_ms") => "none".into(),
            ms if key.ends_with("_ms") => default_duration_text(ms),
            _ => default.to_string(),
        }
    }
}

/// A default in milliseconds (`"60000"`) as the help and messages show
/// it: `"60s"`.
pub fn default_duration_text(ms: &str) -> String {
    match ms.parse::<u64>() {
        Ok(ms) if ms % 1000 == 0 => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

/// `86400 s` -> `"24h"`, `1500 ms` -> `"1500ms"`: durations read the way
/// they are typed.
pub fn duration_text(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_millis() != 0 || (s == 0 && !d.is_zero()) {
        return format!("{}ms", d.as_millis());
    }
    match s {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3_600),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s >= 3_600 => format!("{}h {:02}m", s / 3_600, s % 3_600 / 60),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The flag that sets option `key` (`stall_timeout_ms` -> `--stall-timeout`).
pub fn flag_of(key: &str) -> String {
    let name = key.trim_end_matches("_ms").trim_end_matches(".NAME");
    format!("--{}", name.replace('_', "-"))
}

/// The library's messages in the command line's terms: `option
/// 'part_size': ...` names the flag (`--part-size: ...`), and an option
/// key quoted in parentheses, `(stall_timeout_ms)`, becomes its flag.
pub fn flag_message(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(at) = rest.find("option '") {
        let after = &rest[at + "option '".len()..];
        let Some(end) = after.find('\'') else { break };
        let key = &after[..end];
        let key = if key.starts_with("meta") { "meta" } else { key };
        out.push_str(&rest[..at]);
        out.push_str(&flag_of(key));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    for (key, _, _) in OPTIONS {
        out = out.replace(&format!("({key})"), &format!("({})", flag_of(key)));
    }
    out
}

/// A timeout's message in the person's terms: the limit as they typed it
/// (or its default) and the flag that sets it, without the engine's
/// milliseconds or the OS's words for a timed-out read.
fn timeout_words(e: &Error, dest: &Destination, endpoint: &str) -> Option<String> {
    let msg = e.message();
    if msg.starts_with("stalled: ") {
        let why = msg.split_once(") while ").map(|(_, w)| w);
        return Some(format!(
            "stalled: nothing sent or acknowledged for {} (--stall-timeout){}",
            dest.typed("stall_timeout_ms"),
            why.map(|w| format!(" while {w}")).unwrap_or_default()
        ));
    }
    if msg.starts_with("deadline of ") {
        return Some(format!(
            "the --deadline of {} passed before the job finished",
            dest.typed("deadline_ms")
        ));
    }
    if msg.starts_with("request timed out") {
        let what = match e.key() {
            Some(key) => format!(" to a request for '{key}'"),
            None => String::new(),
        };
        return Some(format!(
            "no answer from {endpoint}{what} within {} (--request-timeout); \
             is the server overloaded, or the network dropping packets?",
            dest.typed("request_timeout_ms")
        ));
    }
    None
}

/// The engine's text with the OS's words for a timed-out read (`Resource
/// temporarily unavailable (os error 11)`) said plainly.
fn plain(text: &str) -> String {
    let mut out = flag_message(text);
    for os in [
        "Resource temporarily unavailable (os error 11)",
        "Connection timed out (os error 110)",
        "timed out (os error 110)",
    ] {
        out = out.replace(os, "no data within the time allowed");
    }
    out
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
        // s3s answers NotSignedUp for an access key it does not know.
        Some("InvalidAccessKeyId") | Some("NotSignedUp") => {
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
            plain(e.message())
        ),
        ErrorKind::Timeout => {
            timeout_words(e, dest, endpoint).unwrap_or_else(|| plain(&e.to_string()))
        }
        _ => plain(&e.to_string()),
    }
}

/// The engine's full message when it adds to [`explain`]'s, else `None`.
pub fn detail(e: &Error, dest: &Destination) -> Option<String> {
    let full = plain(&e.to_string());
    (full != explain(e, dest)).then_some(full)
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
            typed: Vec::new(),
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
        let (e, _) = server_error(
            "403 Forbidden",
            "NotSignedUp",
            "Your account is not signed up",
        );
        assert!(
            explain(&e, &dest).contains("the server does not know this access key"),
            "{}",
            explain(&e, &dest)
        );
    }

    #[test]
    fn messages_name_flags_and_durations_as_typed() {
        assert_eq!(
            flag_message("option 'part_size': must be between 5MiB and 5GiB (got '1MiB')"),
            "--part-size: must be between 5MiB and 5GiB (got '1MiB')"
        );
        let dest = Destination {
            typed: vec![("stall_timeout_ms".into(), "2s".into())],
            ..Destination::default()
        };
        let e = Error::new(
            ErrorKind::Timeout,
            "stalled: nothing sent or acknowledged for 2034 ms (stall_timeout_ms) while 2 request(s) were in flight for 'a.bin'",
        );
        assert_eq!(
            explain(&e, &dest),
            "stalled: nothing sent or acknowledged for 2s (--stall-timeout) while 2 request(s) were in flight for 'a.bin'"
        );
        let e = Error::new(
            ErrorKind::Timeout,
            "deadline of 90000 ms (deadline_ms) passed with 0 of 53 files done",
        );
        assert_eq!(dest.typed("deadline_ms"), "none");
        let dest = Destination {
            typed: vec![("deadline_ms".into(), "90s".into())],
            ..dest
        };
        assert_eq!(
            explain(&e, &dest),
            "the --deadline of 90s passed before the job finished"
        );
        assert_eq!(dest.typed("request_timeout_ms"), "30s");
        assert_eq!(duration_text(Duration::from_secs(86_400)), "1d");
        assert_eq!(duration_text(Duration::from_secs(7_200)), "2h");
        assert_eq!(duration_text(Duration::from_secs(90)), "90s");
        assert_eq!(duration_text(Duration::from_secs(5_400)), "1h 30m");
        assert_eq!(duration_text(Duration::from_millis(1_500)), "1500ms");
    }
}

//! The final report of a job: the totals in a line or two, a table of
//! files, and the JSON object for scripts (`--json`).
//!
//! Like the rest of this crate's library, it is shared by the command and
//! the quickstart example; not an API.

use std::fmt::Write as _;

use batchput::{Error, FileReport, FileState, JobState, Progress};

use crate::ui::{
    detail, explain, file_state_name, human_bytes, human_duration, human_rate, job_state_name,
    Destination, Direction,
};

/// The totals in one or two lines, e.g.
/// `uploaded 304 files, 128.0 MiB to s3://b/p in 3.2 s (40.0 MiB/s average, 55.1 MiB/s peak)`;
/// for a download `dest` is the local directory
/// (`downloaded 304 files, 128.0 MiB to /data/in in 3.2 s (...)`).
///
/// Speeds count what this job moved: a resumed job's kept parts and
/// complete files are said apart, never as moved at memory speed.
/// `peak`: the highest speed the display measured, if it measured one.
pub fn summary(
    p: &Progress,
    files: &[FileReport],
    dest: &str,
    peak: Option<f64>,
    dir: Direction,
) -> String {
    let mut out = String::new();
    let (sent_word, kept_word) = match dir {
        Direction::Upload => ("sent", "were already on the server"),
        Direction::Download => ("received", "were already on disk"),
    };
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    let sent = p.bytes_done.saturating_sub(p.bytes_resumed);
    let secs = p.elapsed.as_secs_f64();
    let avg = if secs > 0.0 { sent as f64 / secs } else { 0.0 };
    // A job shorter than the speed's window has no peak: the average is a
    // lower bound of it.
    let speeds = format!(
        "{} average, {} peak",
        human_rate(avg),
        human_rate(peak.unwrap_or(0.0).max(avg))
    );
    if p.state == JobState::Succeeded {
        if p.bytes_resumed >= p.bytes_total && p.files_total > 0 {
            let _ = write!(
                out,
                "nothing left to {}: all {} file{} ({}) were already complete at {dest}",
                dir.noun(),
                p.files_total,
                plural(p.files_total),
                human_bytes(p.bytes_total),
            );
        } else if p.bytes_resumed > 0 {
            let _ = write!(
                out,
                "resumed: {} file{}, {} complete at {dest}; {sent_word} {} in {} ({speeds}), {} {kept_word}",
                p.files_total,
                plural(p.files_total),
                human_bytes(p.bytes_total),
                human_bytes(sent),
                human_duration(p.elapsed),
                human_bytes(p.bytes_resumed),
            );
        } else {
            let _ = write!(
                out,
                "{} {} file{}, {} to {dest} in {} ({speeds})",
                dir.past(),
                p.files_total,
                plural(p.files_total),
                human_bytes(p.bytes_total),
                human_duration(p.elapsed),
            );
        }
        return out;
    }
    let count = |s: FileState| files.iter().filter(|f| f.state == s).count();
    // Complete objects, and on a pause the parts kept for resume too:
    // the parts of an aborted upload are gone.
    let kept: u64 = if p.state == JobState::Paused {
        p.bytes_done
    } else {
        files
            .iter()
            .filter(|f| f.state == FileState::Completed)
            .map(|f| f.size)
            .sum()
    };
    let _ = write!(
        out,
        "{}: {} of {} files {} ({} of {} {}) to {dest} in {}",
        job_state_name(p.state),
        p.files_done,
        p.files_total,
        dir.past(),
        human_bytes(kept),
        human_bytes(p.bytes_total),
        match (p.state, dir) {
            (JobState::Paused, _) => dir.kept_where(),
            (_, Direction::Upload) => "in complete objects",
            (_, Direction::Download) => "in complete files",
        },
        human_duration(p.elapsed),
    );
    // A speed beside nothing kept reads as a contradiction.
    if kept > 0 && sent > 0 {
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
        out.push_str(match dir {
            Direction::Upload => "; the completed objects stay in the bucket",
            Direction::Download => "; the completed files stay in place",
        });
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

/// The final report as one JSON object, for scripts: totals, the integrity
/// mode used (`integrity_used`: null when the job sent nothing), the error and
/// every file (path, key, size, bytes done, state, average and peak speed,
/// ETag, upload id, `verified`: how a downloaded file was checked, "md5",
/// "multipart-etag", "crc32c" or "size", null for uploads and unfinished
/// files; error).
///
/// `skipped`: the special files the directory walks passed over, each as
/// `{"path": ..., "reason": ...}`.
pub fn json_report(
    p: &Progress,
    files: &[FileReport],
    dest: &Destination,
    skipped: &[batchput::Skipped],
) -> String {
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
    field_num(&mut o, "bytes_sent", p.bytes_sent);
    field_num(&mut o, "bytes_resumed", p.bytes_resumed);
    field_f64(&mut o, "elapsed_secs", p.elapsed.as_secs_f64());
    field_f64(&mut o, "avg_speed_bps", p.avg_speed_bps);
    field_f64(&mut o, "peak_speed_bps", p.peak_speed_bps);
    field_opt_str(
        &mut o,
        "integrity_used",
        p.integrity_used.map(|i| i.as_str()),
    );
    key(&mut o, "error");
    json_error(&mut o, p.error.as_ref(), dest, "transfer");
    key(&mut o, "skipped");
    o.push('[');
    for (i, s) in skipped.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        o.push('{');
        field_str(&mut o, "path", &s.path.to_string_lossy());
        field_str(&mut o, "reason", &s.to_string());
        o.pop();
        o.push('}');
    }
    o.push_str("],");
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
        field_opt_str(&mut o, "upload_id", f.upload_id.as_deref());
        field_opt_str(&mut o, "verified", f.verified.map(|v| v.name()));
        key(&mut o, "error");
        json_error(&mut o, f.error.as_ref(), dest, "transfer");
        o.pop(); // the trailing comma
        o.push('}');
    }
    o.push_str("]}");
    o
}

/// The report of a command that failed before any job ran (a missing or
/// unreadable file, a bad option, an unusable journal): the same object as
/// [`json_report`], with zero totals, no files, and an error whose `phase`
/// is `"preflight"`.
pub fn json_preflight_failure(e: &Error, dest: &Destination) -> String {
    let mut o = String::from("{");
    field_str(&mut o, "state", "failed");
    field_str(&mut o, "bucket", &dest.bucket);
    field_str(&mut o, "endpoint", &dest.endpoint);
    for name in [
        "files_total",
        "files_done",
        "files_failed",
        "parts_total",
        "parts_done",
        "bytes_total",
        "bytes_done",
        "bytes_sent",
        "bytes_resumed",
    ] {
        field_num(&mut o, name, 0);
    }
    for name in ["elapsed_secs", "avg_speed_bps", "peak_speed_bps"] {
        field_f64(&mut o, name, 0.0);
    }
    key(&mut o, "error");
    json_error(&mut o, Some(e), dest, "preflight");
    o.push_str("\"skipped\":[],\"files\":[]}");
    o
}

/// `phase`: `"preflight"` for what was found before any byte moved,
/// `"transfer"` for what happened while the job ran.
fn json_error(o: &mut String, e: Option<&Error>, dest: &Destination, phase: &str) {
    let Some(e) = e else {
        o.push_str("null,");
        return;
    };
    o.push('{');
    field_str(o, "message", &explain(e, dest));
    field_str(
        o,
        "detail",
        &detail(e, dest).unwrap_or_else(|| explain(e, dest)),
    );
    field_str(o, "kind", &snake_case(&format!("{:?}", e.kind())));
    field_str(o, "phase", phase);
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

    fn progress(state: JobState, done: u64, resumed: u64, files_done: u64) -> Progress {
        Progress {
            state,
            files_total: 3,
            files_done,
            files_failed: 0,
            parts_total: 0,
            parts_done: 0,
            bytes_total: 96 << 20,
            bytes_done: done,
            bytes_sent: done,
            bytes_resumed: resumed,
            speed_bps: 0.0,
            avg_speed_bps: 1e12,
            peak_speed_bps: 1e12,
            elapsed: std::time::Duration::from_secs(2),
            error: None,
            integrity_used: None,
        }
    }

    #[test]
    fn summaries_say_what_this_run_did() {
        // A finished journal resumed: nothing was sent, no speed.
        assert_eq!(
            summary(
                &progress(JobState::Succeeded, 96 << 20, 96 << 20, 3),
                &[],
                "s3://b/r/",
                None,
                Direction::Upload
            ),
            "nothing left to upload: all 3 files (96.0 MiB) were already complete at s3://b/r/"
        );
        // A resume: kept bytes are not counted as sent.
        assert_eq!(
            summary(
                &progress(JobState::Succeeded, 96 << 20, 80 << 20, 3),
                &[],
                "s3://b/r/",
                None,
                Direction::Upload
            ),
            "resumed: 3 files, 96.0 MiB complete at s3://b/r/; sent 16.0 MiB in 2.0 s \
             (8.0 MiB/s average, 8.0 MiB/s peak), 80.0 MiB were already on the server"
        );
        // Stopped with nothing kept: no speed beside 0 B.
        assert_eq!(
            summary(
                &progress(JobState::Stopped, 2 << 20, 0, 0),
                &[],
                "s3://b/",
                Some(1e6),
                Direction::Upload
            ),
            "stopped: 0 of 3 files uploaded (0 B of 96.0 MiB in complete objects) to s3://b/ in 2.0 s"
        );
    }

    #[test]
    fn a_download_is_said_in_its_own_words() {
        let d = Direction::Download;
        assert_eq!(
            summary(
                &progress(JobState::Succeeded, 96 << 20, 80 << 20, 3),
                &[],
                "/data/in",
                None,
                d
            ),
            "resumed: 3 files, 96.0 MiB complete at /data/in; received 16.0 MiB in 2.0 s \
             (8.0 MiB/s average, 8.0 MiB/s peak), 80.0 MiB were already on disk"
        );
        assert_eq!(
            summary(
                &progress(JobState::Paused, 32 << 20, 0, 0),
                &[],
                "/data/in",
                None,
                d
            ),
            "paused: 0 of 3 files downloaded (32.0 MiB of 96.0 MiB in temporary files) \
             to /data/in in 2.0 s (16.0 MiB/s average, 16.0 MiB/s peak)"
        );
        let mut failed = progress(JobState::Failed, 32 << 20, 0, 1);
        failed.files_failed = 1;
        let done = FileReport {
            path: "/data/in/a".into(),
            key: "p/a".into(),
            size: 1 << 20,
            bytes_done: 1 << 20,
            avg_speed_bps: 0.0,
            peak_speed_bps: 0.0,
            state: FileState::Completed,
            etag: None,
            upload_id: None,
            endpoint: None,
            error: None,
            verified: Some(batchput::Verification::Md5),
        };
        assert_eq!(
            summary(&failed, &[done], "/data/in", None, d),
            "failed: 1 of 3 files downloaded (1.0 MiB of 96.0 MiB in complete files) to /data/in \
             in 2.0 s (16.0 MiB/s average, 16.0 MiB/s peak); the completed files stay in place"
        );
    }

    #[test]
    fn json_strings_escape_what_json_requires() {
        let mut o = String::new();
        json_string(&mut o, "a\"b\\c\nd\te\u{1}f é 😀");
        assert_eq!(o, r#""a\"b\\c\nd\te\u0001f é 😀""#);
    }
}

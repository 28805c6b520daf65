//! `batchput ls`, `batchput rm` and `batchput presign`: what is stored,
//! listed, deleted by prefix, or shared through a presigned URL. Same
//! destination flags and environment as `upload`.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use batchput::{ListedObject, Uploader};
use batchput_cli::{self as ui, Destination};
use clap::Args;

use crate::args::{build_config, StoreArgs};
use crate::{bucket_of, endpoint_of, open, say_raw, Failure};

#[derive(Args)]
pub struct LsArgs {
    /// Only keys that start with this ("" for the whole bucket).
    #[arg(long, short = 'p', default_value = "", env = "BATCHPUT_PREFIX")]
    pub prefix: String,

    /// One JSON object per line (as s5cmd's --json): key, size, etag,
    /// last_modified (RFC 3339, UTC; null when the server does not say).
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Args)]
pub struct RmArgs {
    /// Delete every object whose key starts with this.
    #[arg(long, short = 'p', default_value = "")]
    pub prefix: String,

    /// With an empty --prefix: delete every object in the bucket.
    #[arg(long)]
    pub all: bool,

    /// List what would be deleted and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the result as one JSON object: deleted, and failed with each
    /// key's error code and message (with --dry-run: the keys).
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Args)]
pub struct PresignArgs {
    /// The object's key.
    #[arg(value_name = "KEY")]
    pub key: String,

    /// What the URL allows: GET downloads the object, PUT uploads it.
    #[arg(long, short = 'm', default_value = "GET", value_parser = ["GET", "PUT", "get", "put"])]
    pub method: String,

    /// How long the URL stays valid (1s to 7d; e.g. 90s, 15m, 1h, 7d).
    #[arg(long, short = 'e', default_value = "1h", value_parser = batchput::parse_duration)]
    pub expires: Duration,

    #[command(flatten)]
    pub store: StoreArgs,
}

/// The uploader for the destination flags, or the exit status of why not.
fn connect(
    store: &StoreArgs,
    command: &str,
    json: bool,
) -> Result<(Uploader, Destination), ExitCode> {
    let mut dest = Destination {
        bucket: store.bucket.clone().unwrap_or_default(),
        endpoint: store.endpoint.clone().unwrap_or_default(),
        typed: Vec::new(),
    };
    let opened: Result<_, Failure> = (|| {
        let bucket = bucket_of(&store.bucket)?;
        let endpoint = endpoint_of(&store.endpoint, None)?;
        let (cfg, typed) =
            build_config(store, &bucket, &endpoint, None, None, None).map_err(Failure::usage)?;
        open(cfg, typed, &mut dest)
    })();
    match opened {
        Ok(up) => Ok((up, dest)),
        Err(f) => Err(f.report(command, json, &dest)),
    }
}

pub fn ls(args: LsArgs) -> ExitCode {
    let (up, dest) = match connect(&args.store, "ls", false) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let objects = match up.list(&args.prefix) {
        Ok(o) => o,
        Err(e) => return Failure::of(e).report("ls", false, &dest),
    };
    let mut out = String::new();
    for o in &objects {
        if args.json {
            out.push_str(&object_json(o));
        } else {
            let date = o.last_modified.map_or_else(|| "-".repeat(19), date_text);
            out.push_str(&format!("{:>12}  {date}  {}", o.size, o.key));
        }
        out.push('\n');
    }
    say_raw(&out);
    ExitCode::SUCCESS
}

fn object_json(o: &ListedObject) -> String {
    let mut s = String::from("{\"key\":");
    ui::json_string(&mut s, &o.key);
    s.push_str(&format!(",\"size\":{},\"etag\":", o.size));
    ui::json_string(&mut s, &o.etag);
    s.push_str(",\"last_modified\":");
    match o.last_modified {
        Some(t) => s.push_str(&format!("\"{}Z\"", date_text(t).replace(' ', "T"))),
        None => s.push_str("null"),
    }
    s.push('}');
    s
}

pub fn rm(args: RmArgs) -> ExitCode {
    if args.prefix.is_empty() && !args.all {
        return Failure::usage(
            "refusing to delete the whole bucket: give --prefix PREFIX, or --all to mean it",
        )
        .report("rm", false, &Destination::default());
    }
    let (up, dest) = match connect(&args.store, "rm", args.json) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let target = format!("s3://{}/{}", dest.bucket, args.prefix);
    if args.dry_run {
        let objects = match up.list(&args.prefix) {
            Ok(o) => o,
            Err(e) => return Failure::of(e).report("rm", args.json, &dest),
        };
        if args.json {
            let mut s = String::from("{\"dry_run\":true,\"keys\":[");
            for (i, o) in objects.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                ui::json_string(&mut s, &o.key);
            }
            s.push_str("]}\n");
            say_raw(&s);
        } else {
            let mut s = String::new();
            for o in &objects {
                s.push_str(&format!("would delete  {}\n", o.key));
            }
            s.push_str(&format!(
                "dry run: {} object{} under {target} would be deleted; nothing was changed\n",
                objects.len(),
                plural(objects.len())
            ));
            say_raw(&s);
        }
        return ExitCode::SUCCESS;
    }
    let report = match up.delete_prefix(&args.prefix) {
        Ok(r) => r,
        Err(e) => return Failure::of(e).report("rm", args.json, &dest),
    };
    let (deleted, failed) = (report.deleted.len(), report.failed.len());
    if args.json {
        let mut s = format!("{{\"dry_run\":false,\"deleted\":{deleted},\"failed\":[");
        for (i, f) in report.failed.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str("{\"key\":");
            ui::json_string(&mut s, &f.key);
            s.push_str(",\"code\":");
            ui::json_string(&mut s, &f.code);
            s.push_str(",\"message\":");
            ui::json_string(&mut s, &f.message);
            s.push('}');
        }
        s.push_str("]}\n");
        say_raw(&s);
    } else {
        say_raw(&format!(
            "deleted {deleted} object{} under {target}, failed {failed}\n",
            plural(deleted)
        ));
        for f in &report.failed {
            let code = if f.code.is_empty() { "" } else { &f.code };
            eprintln!(
                "not deleted  {}: {code}{}{}",
                f.key,
                if code.is_empty() { "" } else { ": " },
                f.message
            );
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

pub fn presign(args: PresignArgs) -> ExitCode {
    let (up, dest) = match connect(&args.store, "presign", false) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match up.presign(&args.method, &args.key, args.expires) {
        Ok(url) => {
            say_raw(&format!("{url}\n"));
            ExitCode::SUCCESS
        }
        Err(e) => Failure::of(e).report("presign", false, &dest),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
fn date_text(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_civil() {
        let at = |s: u64| date_text(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01 00:00:00");
        assert_eq!(at(1_369_353_600), "2013-05-24 00:00:00");
        assert_eq!(at(951_825_599), "2000-02-29 11:59:59");
        assert_eq!(at(1_735_689_599), "2024-12-31 23:59:59");
    }
}

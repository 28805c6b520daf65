//! `batchput`, the command for people: upload files and directories to an
//! S3-compatible bucket with a live progress bar, continue an interrupted
//! upload from its journal, and abort multipart uploads left behind by
//! crashed processes.
//!
//! Every engine option is a flag, and every flag can also come from a
//! `BATCHPUT_*` environment variable (endpoint and region also from the
//! usual AWS ones). Exit codes: 0 success, 1 the job failed, 2 the command
//! line is wrong, 130 interrupted (Ctrl-C).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use batchput::{Batch, Config, ErrorKind, Job, Uploader, OPTIONS};
use batchput_cli::{self as ui, logger, Destination};
use clap::{ArgAction, Args, Parser, Subcommand};

// The worker mode (Redis Streams): `worker`, `enqueue`, `queue`.
mod admin;
mod queue;
mod runner;
mod task;
mod worker;

const AFTER_HELP: &str = "\
Exit status: 0 every file uploaded; 1 the job failed (completed objects stay, \
unfinished multipart uploads are aborted); 2 the command line is wrong; 130 \
interrupted by Ctrl-C (cleaned up the same way; a second Ctrl-C quits at once; \
143 for SIGTERM).";

#[derive(Parser)]
#[command(
    name = "batchput",
    version,
    about = "Upload batches of files to S3-compatible storage, fast, leaving no billed garbage behind",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Upload files and directories (recursively) to a bucket.
    ///
    /// A directory's files are keyed PREFIX + their path below that
    /// directory, with '/' separators; a file given directly is keyed
    /// PREFIX + its name. The first fatal error stops the whole batch: open
    /// multipart uploads are aborted, files not started never start,
    /// completed objects stay.
    #[command(after_help = AFTER_HELP)]
    Upload(UploadArgs),
    /// Continue an interrupted upload from its journal (see upload --journal).
    #[command(after_help = AFTER_HELP)]
    Resume(ResumeArgs),
    /// Abort multipart uploads left open by crashed processes (they are billed).
    Cleanup(CleanupArgs),
    /// Take upload tasks from a Redis stream and run them, until SIGTERM
    /// (see the README's "Many hosts").
    Worker(Box<worker::WorkerArgs>),
    /// Put a directory or files on a Redis stream as tasks for workers.
    Enqueue(admin::EnqueueArgs),
    /// Look at a Redis task queue (`queue status`).
    Queue(admin::QueueCmdArgs),
}

#[derive(Args)]
struct UploadArgs {
    /// Files and directories to upload.
    #[arg(value_name = "PATH", required = true)]
    paths: Vec<PathBuf>,

    /// Key prefix, prepended as is: end it with '/' to upload into a "folder".
    #[arg(long, short = 'p', default_value = "", env = "BATCHPUT_PREFIX")]
    prefix: String,

    /// Record the job in this file so that `batchput resume` can continue it
    /// after a crash or kill.
    #[arg(long, value_name = "FILE", env = "BATCHPUT_JOURNAL")]
    journal: Option<PathBuf>,

    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    tuning: TuningArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
struct ResumeArgs {
    /// The journal the interrupted upload was started with.
    #[arg(long, value_name = "FILE", required = true, env = "BATCHPUT_JOURNAL")]
    journal: PathBuf,

    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    tuning: TuningArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
struct CleanupArgs {
    /// Only uploads whose key starts with this.
    #[arg(long, short = 'p', default_value = "", env = "BATCHPUT_PREFIX")]
    prefix: String,

    /// Only uploads initiated longer ago than this (e.g. 24h, 7d, 30m).
    #[arg(long, value_name = "AGE", value_parser = parse_age, required = true)]
    older_than: Duration,

    /// List what would be aborted and change nothing.
    #[arg(long)]
    dry_run: bool,

    /// Print the result as JSON.
    #[arg(long)]
    json: bool,

    /// Log more on stderr: -v info, -vv debug (else warnings and errors,
    /// or what RUST_LOG says).
    #[arg(long, short = 'v', action = ArgAction::Count)]
    verbose: u8,

    #[command(flatten)]
    store: StoreArgs,
}

/// Where to upload and as whom.
#[derive(Args)]
#[command(next_help_heading = "Destination")]
struct StoreArgs {
    #[arg(long, short = 'b', env = "BATCHPUT_BUCKET", help = opt("bucket"), required = true)]
    bucket: String,

    #[arg(long, value_name = "URL", env = "BATCHPUT_ENDPOINT",
          help = format!("{} (or AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL)", opt("endpoint")))]
    endpoint: Option<String>,

    #[arg(long, env = "BATCHPUT_REGION",
          help = format!("{} (or AWS_REGION, AWS_DEFAULT_REGION)", opt("region")))]
    region: Option<String>,

    #[arg(long, value_name = "ID", env = "BATCHPUT_ACCESS_KEY", hide_env_values = true,
          help = opt("access_key"))]
    access_key: Option<String>,

    #[arg(long, value_name = "SECRET", env = "BATCHPUT_SECRET_KEY", hide_env_values = true,
          help = opt("secret_key"))]
    secret_key: Option<String>,

    #[arg(long, value_name = "TOKEN", env = "BATCHPUT_SESSION_TOKEN", hide_env_values = true,
          help = opt("session_token"))]
    session_token: Option<String>,

    #[arg(long, env = "BATCHPUT_ADDRESSING", value_parser = ["path", "virtual"],
          help = opt("addressing"))]
    addressing: Option<String>,

    #[arg(long, value_name = "PEM", env = "BATCHPUT_CA_FILE", help = opt("ca_file"))]
    ca_file: Option<PathBuf>,

    #[arg(long, value_name = "URL", env = "BATCHPUT_PROXY", help = opt("proxy"))]
    proxy: Option<String>,

    #[arg(long, value_name = "DURATION", value_parser = parse_age,
          env = "BATCHPUT_CONNECT_TIMEOUT", help = opt("connect_timeout_ms"))]
    connect_timeout: Option<Duration>,

    #[arg(long, value_name = "DURATION", value_parser = parse_age,
          env = "BATCHPUT_REQUEST_TIMEOUT", help = opt("request_timeout_ms"))]
    request_timeout: Option<Duration>,
}

/// How the upload runs and what the objects get.
#[derive(Args)]
#[command(next_help_heading = "Upload options")]
struct TuningArgs {
    #[arg(long, short = 'w', value_name = "N", env = "BATCHPUT_WORKERS", help = opt("workers"))]
    workers: Option<String>,

    #[arg(long, value_name = "SIZE", env = "BATCHPUT_PART_SIZE", help = opt("part_size"))]
    part_size: Option<String>,

    #[arg(long, value_name = "SIZE", env = "BATCHPUT_MULTIPART_THRESHOLD",
          help = opt("multipart_threshold"))]
    multipart_threshold: Option<String>,

    #[arg(long, value_name = "N", env = "BATCHPUT_RETRIES", help = opt("retries"))]
    retries: Option<String>,

    #[arg(long, value_name = "DURATION", value_parser = parse_age,
          env = "BATCHPUT_STALL_TIMEOUT", help = opt("stall_timeout_ms"))]
    stall_timeout: Option<Duration>,

    #[arg(long, value_name = "DURATION", value_parser = parse_age,
          env = "BATCHPUT_DEADLINE", help = opt("deadline_ms"))]
    deadline: Option<Duration>,

    #[arg(long, value_name = "N", env = "BATCHPUT_MAX_OPEN_FILES", help = opt("max_open_files"))]
    max_open_files: Option<String>,

    #[arg(long, value_name = "N", env = "BATCHPUT_MAX_PENDING_UPLOADS",
          help = opt("max_pending_uploads"))]
    max_pending_uploads: Option<String>,

    #[arg(long, value_name = "SIZE", env = "BATCHPUT_RATE_LIMIT", help = opt("rate_limit"))]
    rate_limit: Option<String>,

    #[arg(long, env = "BATCHPUT_ACL", help = opt("acl"))]
    acl: Option<String>,

    #[arg(long, value_name = "TYPE", env = "BATCHPUT_CONTENT_TYPE", help = opt("content_type"))]
    content_type: Option<String>,

    #[arg(long, value_name = "CLASS", env = "BATCHPUT_STORAGE_CLASS",
          help = opt("storage_class"))]
    storage_class: Option<String>,

    /// User metadata x-amz-meta-NAME=VALUE on every object (repeatable).
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_meta)]
    meta: Vec<(String, String)>,

    #[arg(long, env = "BATCHPUT_INTEGRITY",
          value_parser = ["etag-md5", "content-md5", "crc32c", "none"], help = opt("integrity"))]
    integrity: Option<String>,

    #[arg(long, value_name = "DURATION", value_parser = parse_age,
          env = "BATCHPUT_CLEANUP_TIMEOUT", help = opt("cleanup_timeout_ms"))]
    cleanup_timeout: Option<Duration>,

    #[arg(long, alias = "strict", help = opt("strict_inputs"))]
    strict_inputs: bool,
}

#[derive(Args)]
#[command(next_help_heading = "Output")]
struct OutputArgs {
    /// No live progress bar (it is shown only when stdout and stderr are terminals).
    #[arg(long)]
    no_progress: bool,

    /// Print the final report as JSON on stdout: totals, the error, and per
    /// file its path, key, size, state, average and peak speed, and ETag.
    #[arg(long)]
    json: bool,

    /// Also print one line per file: state, size, speeds, ETag, key; and
    /// log more on stderr: -v info, -vv debug (else warnings and errors, or
    /// what RUST_LOG says).
    #[arg(long, short = 'v', action = ArgAction::Count)]
    verbose: u8,
}

/// The help line of an engine option, from the library's own list, with
/// its default: the CLI and the README say the same.
fn opt(key: &str) -> String {
    let (_, default, what) = OPTIONS
        .iter()
        .find(|o| o.0 == key)
        .unwrap_or_else(|| panic!("option '{key}' is not in batchput::OPTIONS"));
    let default = match (key.ends_with("_ms"), *default) {
        (_, "") => return what.to_string(),
        (_, env) if env.starts_with('$') => format!("from {env}"),
        (true, "0") => "none".to_string(),
        (true, ms) => match ms.parse::<u64>() {
            Ok(ms) if ms % 1000 == 0 => format!("{}s", ms / 1000),
            _ => format!("{ms}ms"),
        },
        (false, d) => d.to_string(),
    };
    format!("{what} [default: {default}]")
}

/// The flag that sets option `key` (`stall_timeout_ms` -> `--stall-timeout`).
fn flag_of(key: &str) -> String {
    let name = key.trim_end_matches("_ms").trim_end_matches(".NAME");
    format!("--{}", name.replace('_', "-"))
}

fn parse_age(s: &str) -> Result<Duration, String> {
    batchput::parse_duration(s)
}

fn parse_meta(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err("expected NAME=VALUE".into()),
    }
}

/// Writes to stdout, ignoring a closed pipe (`batchput ... | head`): the
/// job's outcome, not the reader's patience, decides the exit status.
fn say_raw(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

macro_rules! say {
    ($($arg:tt)*) => {
        say_raw(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// A command-line mistake found after parsing: said like clap says its
/// own, with exit status 2.
fn usage_error(command: &str, message: &str) -> ExitCode {
    eprintln!("error: {message}\n\nFor more information, try 'batchput {command} --help'.");
    ExitCode::from(2)
}

/// A failure before or outside a job: exit status 1.
fn failure(message: &str, detail: Option<String>) -> ExitCode {
    eprintln!("error: {message}");
    if let Some(d) = detail {
        eprintln!("  ({d})");
    }
    ExitCode::from(1)
}

/// The library's option messages name the key (`option 'part_size': ...`);
/// here they name the flag the person typed (`--part-size: ...`).
fn flag_message(message: &str) -> String {
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
    out
}

fn build_config(store: &StoreArgs, tuning: Option<&TuningArgs>) -> Result<Config, String> {
    let mut cfg = Config::new();
    let mut settings: Vec<(String, String)> = Vec::new();
    let mut put = |key: &str, value: Option<String>| {
        if let Some(v) = value {
            settings.push((key.to_string(), v));
        }
    };
    let endpoint = store
        .endpoint
        .clone()
        .or_else(|| ui::aws_env("endpoint"))
        .ok_or_else(|| {
            "no endpoint: pass --endpoint URL or set BATCHPUT_ENDPOINT \
             (for AWS S3: --endpoint https://s3.REGION.amazonaws.com --addressing virtual)"
                .to_string()
        })?;
    put("endpoint", Some(endpoint));
    put("bucket", Some(store.bucket.clone()));
    put(
        "region",
        store.region.clone().or_else(|| ui::aws_env("region")),
    );
    put("access_key", store.access_key.clone());
    put("secret_key", store.secret_key.clone());
    put("session_token", store.session_token.clone());
    put("addressing", store.addressing.clone());
    put(
        "ca_file",
        store.ca_file.as_ref().map(|p| p.to_string_lossy().into()),
    );
    put("proxy", store.proxy.clone());
    let ms = |d: Option<Duration>| d.map(|d| d.as_millis().to_string());
    put("connect_timeout_ms", ms(store.connect_timeout));
    put("request_timeout_ms", ms(store.request_timeout));
    if let Some(t) = tuning {
        put("workers", t.workers.clone());
        put("part_size", t.part_size.clone());
        put("multipart_threshold", t.multipart_threshold.clone());
        put("retries", t.retries.clone());
        put("stall_timeout_ms", ms(t.stall_timeout));
        put("deadline_ms", ms(t.deadline));
        put("max_open_files", t.max_open_files.clone());
        put("max_pending_uploads", t.max_pending_uploads.clone());
        put("rate_limit", t.rate_limit.clone());
        put("acl", t.acl.clone());
        put("content_type", t.content_type.clone());
        put("storage_class", t.storage_class.clone());
        put("integrity", t.integrity.clone());
        put("cleanup_timeout_ms", ms(t.cleanup_timeout));
        if t.strict_inputs {
            put("strict_inputs", Some("true".into()));
        }
        for (name, value) in &t.meta {
            put(&format!("meta.{name}"), Some(value.clone()));
        }
    }
    for (key, value) in &settings {
        cfg.set(key, value)
            .map_err(|e| flag_message(&e.to_string()))?;
    }
    cfg.validate().map_err(|e| flag_message(&e.to_string()))?;
    Ok(cfg)
}

/// Builds the uploader, telling a configuration mistake (exit 2) from a
/// failure to start (exit 1).
fn uploader(command: &str, cfg: Config) -> Result<Uploader, ExitCode> {
    Uploader::new(cfg).map_err(|e| match e.kind() {
        ErrorKind::InvalidConfig => usage_error(command, &flag_message(&e.to_string())),
        _ => failure(&e.to_string(), None),
    })
}

fn destination(store: &StoreArgs, up: &Uploader) -> Destination {
    Destination {
        bucket: store.bucket.clone(),
        endpoint: up.store().endpoint_urls().join(","),
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let s = e.to_string();
            s.split(" (os error").next().unwrap_or(&s).to_lowercase()
        }
    }
}

/// The batch of every path on the command line, and the special files its
/// directories held (skipped with a warning each; an error when `strict`).
fn collect(
    paths: &[PathBuf],
    prefix: &str,
    strict: bool,
) -> Result<(Batch, Vec<batchput::Skipped>), String> {
    let mut batch = Batch::new();
    let mut skipped = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("cannot read {}: {}", path.display(), io_reason(&e)))?;
        if meta.is_dir() {
            let (found, passed_over) =
                Batch::from_dir_report(path, prefix, strict).map_err(|e| e.to_string())?;
            for (p, k) in found.files() {
                batch.add(p, k);
            }
            skipped.extend(passed_over);
        } else {
            let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
                format!(
                    "{} has a name that is not UTF-8, so it has no key",
                    path.display()
                )
            })?;
            batch.add(path, format!("{prefix}{name}"));
        }
    }
    if batch.is_empty() && skipped.is_empty() {
        let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(format!(
            "nothing to upload: no files in {}",
            list.join(", ")
        ));
    }
    if batch.is_empty() {
        return Err(format!(
            "nothing to upload: only special files ({} skipped)",
            skipped.len()
        ));
    }
    Ok((batch, skipped))
}

/// The configuration, the uploader and where it writes, for `command`; a
/// bad option is a usage error.
fn open(
    command: &str,
    store: &StoreArgs,
    tuning: &TuningArgs,
) -> Result<(Uploader, Destination), ExitCode> {
    let cfg = build_config(store, Some(tuning)).map_err(|m| usage_error(command, &m))?;
    let up = uploader(command, cfg)?;
    let dest = destination(store, &up);
    Ok((up, dest))
}

fn upload(args: UploadArgs) -> ExitCode {
    let (up, dest) = match open("upload", &args.store, &args.tuning) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let (mut batch, skipped) = match collect(&args.paths, &args.prefix, args.tuning.strict_inputs) {
        Ok(found) => found,
        Err(m) => return failure(&m, None),
    };
    if let Some(j) = &args.journal {
        batch.journal(j);
    }
    ui::catch_interrupts();
    let job = match up.start(&batch) {
        Ok(j) => j,
        Err(e) => return failure(&ui::explain(&e, &dest), ui::detail(&e, &dest)),
    };
    let target = format!("s3://{}/{}", args.store.bucket, args.prefix);
    follow(&job, &args.output, &dest, &target, &skipped)
}

fn resume(args: ResumeArgs) -> ExitCode {
    let (up, dest) = match open("resume", &args.store, &args.tuning) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    ui::catch_interrupts();
    let job = match up.resume(&args.journal) {
        Ok(j) => j,
        Err(e) => return failure(&ui::explain(&e, &dest), ui::detail(&e, &dest)),
    };
    let target = format!("s3://{}", args.store.bucket);
    follow(&job, &args.output, &dest, &target, &[])
}

/// Shows the job until it ends, then its report; returns the exit status.
fn follow(
    job: &Job,
    out: &OutputArgs,
    dest: &Destination,
    target: &str,
    skipped: &[batchput::Skipped],
) -> ExitCode {
    let display = ui::Display::new(!out.no_progress, job.progress().bytes_total);
    let outcome = ui::watch(job, &display);
    let p = &outcome.progress;
    let files = job.files();
    if out.json {
        say!("{}", ui::json_report(p, &files, dest, skipped));
    } else {
        if out.verbose > 0 {
            say_raw(&ui::file_table(&files, usize::MAX));
        }
        say!("{}", ui::summary(p, &files, target));
        if !skipped.is_empty() {
            say!(
                "skipped {} special file{} (not regular files; --strict-inputs makes them errors)",
                skipped.len(),
                if skipped.len() == 1 { "" } else { "s" }
            );
        }
    }
    if let Some(e) = p
        .error
        .as_ref()
        .filter(|_| p.state != batchput::JobState::Succeeded)
    {
        match outcome.signal {
            Some(sig) if e.kind() == ErrorKind::Stopped => {
                let name = if sig == libc::SIGTERM {
                    "SIGTERM"
                } else {
                    "Ctrl-C"
                };
                eprintln!("interrupted by {name}: {e}");
            }
            _ => {
                eprintln!("error: {}", ui::explain(e, dest));
                if let Some(d) = ui::detail(e, dest) {
                    eprintln!("  ({d})");
                }
            }
        }
    }
    ExitCode::from(outcome.exit_code())
}

fn cleanup(args: CleanupArgs) -> ExitCode {
    let cfg = match build_config(&args.store, None) {
        Ok(c) => c,
        Err(m) => return usage_error("cleanup", &m),
    };
    let up = match uploader("cleanup", cfg) {
        Ok(u) => u,
        Err(code) => return code,
    };
    let dest = destination(&args.store, &up);
    let age = age_text(args.older_than);
    let target = format!("s3://{}/{}", args.store.bucket, args.prefix);
    if args.dry_run {
        let stale = match up.stale_uploads(&args.prefix, args.older_than) {
            Ok(s) => s,
            Err(e) => return failure(&ui::explain(&e, &dest), ui::detail(&e, &dest)),
        };
        let now = SystemTime::now();
        if args.json {
            let mut o = String::from("{\"dry_run\":true,\"uploads\":[");
            for (i, u) in stale.iter().enumerate() {
                if i > 0 {
                    o.push(',');
                }
                o.push_str("{\"key\":");
                ui::json_string(&mut o, &u.key);
                o.push_str(",\"upload_id\":");
                ui::json_string(&mut o, &u.upload_id);
                o.push_str(",\"initiated_unix\":");
                match u
                    .initiated
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                {
                    Some(d) => o.push_str(&d.as_secs().to_string()),
                    None => o.push_str("null"),
                }
                o.push('}');
            }
            o.push_str("]}");
            say!("{o}");
        } else {
            for u in &stale {
                let when = match u.initiated.and_then(|t| now.duration_since(t).ok()) {
                    Some(d) => format!("initiated {} ago", age_text(d)),
                    None => "initiated at an unknown time".into(),
                };
                say!(
                    "would abort  {}  (upload id {}, {when})",
                    u.key,
                    u.upload_id
                );
            }
            say!(
                "dry run: {} multipart upload{} under {target} initiated more than {age} ago \
                 would be aborted; nothing was changed",
                stale.len(),
                if stale.len() == 1 { "" } else { "s" }
            );
        }
        return ExitCode::SUCCESS;
    }
    match up.cleanup(&args.prefix, args.older_than) {
        Ok(n) => {
            if args.json {
                say!("{{\"dry_run\":false,\"aborted\":{n}}}");
            } else {
                say!(
                    "aborted {n} multipart upload{} under {target} initiated more than {age} ago",
                    if n == 1 { "" } else { "s" }
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => failure(&ui::explain(&e, &dest), ui::detail(&e, &dest)),
    }
}

/// `86400 s` -> `"24h"`: ages read the way they are typed.
fn age_text(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 && !d.is_zero() {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    logger::init(match &cli.command {
        Command::Upload(a) => a.output.verbose,
        Command::Resume(a) => a.output.verbose,
        Command::Cleanup(a) => a.verbose,
        Command::Worker(a) => a.verbose,
        Command::Enqueue(_) | Command::Queue(_) => 0,
    });
    match cli.command {
        Command::Upload(a) => upload(a),
        Command::Resume(a) => resume(a),
        Command::Cleanup(a) => cleanup(a),
        Command::Worker(a) => worker::main(*a),
        Command::Enqueue(a) => admin::enqueue(a),
        Command::Queue(a) => admin::queue(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_engine_option_is_a_flag_of_upload() {
        let cmd = Cli::command();
        let upload = cmd.find_subcommand("upload").unwrap();
        let longs: Vec<String> = upload
            .get_arguments()
            .filter_map(|a| a.get_long())
            .map(|l| format!("--{l}"))
            .collect();
        for (key, _, _) in OPTIONS {
            let flag = flag_of(key);
            assert!(longs.contains(&flag), "no {flag} for option '{key}'");
        }
    }

    #[test]
    fn option_messages_name_the_flag() {
        assert_eq!(
            flag_message("option 'part_size': must be between 5MiB and 5GiB (got '1MiB')"),
            "--part-size: must be between 5MiB and 5GiB (got '1MiB')"
        );
        assert_eq!(
            flag_message("option 'stall_timeout_ms': must be more than 0"),
            "--stall-timeout: must be more than 0"
        );
        assert_eq!(
            opt("stall_timeout_ms").split('[').nth(1),
            Some("default: 60s]")
        );
    }

    #[test]
    fn ages_read_as_typed() {
        assert_eq!(age_text(Duration::from_secs(86_400)), "1d");
        assert_eq!(age_text(Duration::from_secs(7_200)), "2h");
        assert_eq!(age_text(Duration::from_secs(90)), "90s");
        assert_eq!(age_text(Duration::from_secs(5_400)), "1h 30m");
        assert_eq!(age_text(Duration::from_secs(90_000)), "1d 1h");
    }
}

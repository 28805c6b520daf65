//! `batchput`, the command for people: upload files and directories to an
//! S3-compatible bucket with a live progress bar, download a prefix
//! (`download`), continue an interrupted upload or download from its
//! journal, and abort multipart uploads left behind by crashed processes.
//!
//! Every engine option is a flag, and every flag can also come from a
//! `BATCHPUT_*` environment variable (endpoint and region also from the
//! usual AWS ones); see `args`. Exit codes: 0 success, 1 the job failed,
//! 2 the command line is wrong, 130 Ctrl-C, 143 SIGTERM. With `--json`,
//! stdout holds exactly one JSON object on every path but clap's own
//! usage errors.

mod args;
// `download`, and the direction a journal resumes in.
mod download;
// What is stored: `ls`, `rm`, `presign`.
mod objects;
// The worker mode (Redis Streams): `worker`, `enqueue`, `queue`.
mod admin;
mod queue;
mod runner;
mod task;
mod worker;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use batchput::{Batch, Error, ErrorKind, Job, JobState, JournalInfo, Uploader};
use batchput_cli::{self as ui, logger, Destination, Direction, OnInterrupt};
use clap::Parser;

use args::{build_config, CleanupArgs, Cli, Command, OutputArgs, ResumeArgs, UploadArgs};

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

/// Why a command ended before (or without) a job: said on stderr, and
/// with `--json` as the report on stdout too.
struct Failure {
    error: Error,
    /// A command-line mistake (exit 2) rather than a failure (exit 1).
    usage: bool,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure {
            error: Error::new(ErrorKind::InvalidConfig, message.into()),
            usage: true,
        }
    }

    fn of(error: Error) -> Failure {
        Failure {
            usage: error.kind() == ErrorKind::InvalidConfig,
            error,
        }
    }

    /// Says it and gives the exit status.
    fn report(self, command: &str, json: bool, dest: &Destination) -> ExitCode {
        if json {
            say!("{}", ui::json_preflight_failure(&self.error, dest));
        }
        if self.usage {
            let message = ui::flag_message(self.error.message());
            eprintln!("error: {message}\n\nFor more information, try 'batchput {command} --help'.");
            return ExitCode::from(2);
        }
        eprintln!("error: {}", ui::explain(&self.error, dest));
        if let Some(d) = ui::detail(&self.error, dest) {
            eprintln!("  ({d})");
        }
        ExitCode::from(1)
    }
}

/// The endpoint: the flag (or BATCHPUT_ENDPOINT), else what the journal
/// recorded, else the AWS variables.
fn endpoint_of(flag: &Option<String>, journal: Option<&str>) -> Result<String, Failure> {
    flag.clone()
        .or_else(|| journal.map(str::to_string))
        .or_else(|| ui::aws_env("endpoint"))
        .ok_or_else(|| {
            Failure::usage(
                "no endpoint: pass --endpoint URL or set BATCHPUT_ENDPOINT \
                 (for AWS S3: --endpoint https://s3.REGION.amazonaws.com --addressing virtual)",
            )
        })
}

fn bucket_of(flag: &Option<String>) -> Result<String, Failure> {
    flag.clone()
        .ok_or_else(|| Failure::usage("no bucket: pass --bucket NAME or set BATCHPUT_BUCKET"))
}

/// Builds the uploader and says where it writes.
fn open(
    cfg: batchput::Config,
    typed: Vec<(String, String)>,
    dest: &mut Destination,
) -> Result<Uploader, Failure> {
    let up = Uploader::new(cfg).map_err(Failure::of)?;
    dest.endpoint = up.store().endpoint_urls().join(",");
    dest.typed = typed;
    Ok(up)
}

// ------------------------------------------------- for the worker mode

/// A command-line mistake of a worker-mode command: exit status 2.
fn usage_error(command: &str, message: &str) -> ExitCode {
    let message = ui::flag_message(message);
    eprintln!("error: {message}\n\nFor more information, try 'batchput {command} --help'.");
    ExitCode::from(2)
}

/// A failure of a worker-mode command outside a job: exit status 1.
fn failure(message: &str, detail: Option<String>) -> ExitCode {
    eprintln!("error: {message}");
    if let Some(d) = detail {
        eprintln!("  ({d})");
    }
    ExitCode::from(1)
}

/// The part of an io error a person reads.
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

fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    batchput::parse_duration(s)
}

/// The configuration the flags give, for the worker mode (tasks may name
/// their own bucket and options on top of it).
fn base_config(
    store: &args::StoreArgs,
    plan: Option<&args::PlanArgs>,
    tuning: Option<&args::TuningArgs>,
    objects: Option<&args::ObjectArgs>,
) -> Result<batchput::Config, String> {
    let bucket = store
        .bucket
        .clone()
        .ok_or("no bucket: pass --bucket NAME or set BATCHPUT_BUCKET")?;
    let endpoint = endpoint_of(&store.endpoint, None).map_err(|f| f.error.message().to_string())?;
    build_config(store, &bucket, &endpoint, plan, tuning, objects).map(|(cfg, _)| cfg)
}

/// Turns a file the batch cannot take into the error a pre-flight check
/// reports: a missing path is bad input, an unreadable one local I/O.
fn unreadable(path: &Path, e: &std::io::Error) -> Error {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::InvalidInput,
        _ => ErrorKind::LocalIo,
    };
    Error::new(
        kind,
        format!("cannot read {}: {}", path.display(), io_reason(e)),
    )
}

/// The batch of every path on the command line, and the special files its
/// directories held (skipped with a warning each; an error when `strict`).
fn collect(
    paths: &[PathBuf],
    prefix: &str,
    strict: bool,
) -> Result<(Batch, Vec<batchput::Skipped>), Error> {
    let mut batch = Batch::new();
    let mut skipped = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| unreadable(path, &e))?;
        if meta.is_dir() {
            let (found, passed_over) = Batch::from_dir_report(path, prefix, strict)?;
            for (p, k) in found.files() {
                batch.add(p, k);
            }
            skipped.extend(passed_over);
        } else {
            let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{} has a name that is not UTF-8, so it has no key",
                        path.display()
                    ),
                )
            })?;
            batch.add(path, format!("{prefix}{name}"));
        }
    }
    let nothing = |why: String| Error::new(ErrorKind::InvalidInput, why);
    if batch.is_empty() && skipped.is_empty() {
        let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(nothing(format!(
            "nothing to upload: no files in {}",
            list.join(", ")
        )));
    }
    if batch.is_empty() {
        return Err(nothing(format!(
            "nothing to upload: only special files ({} skipped)",
            skipped.len()
        )));
    }
    Ok((batch, skipped))
}

fn upload(args: UploadArgs) -> ExitCode {
    let mut dest = Destination {
        bucket: args.store.bucket.clone().unwrap_or_default(),
        endpoint: args.store.endpoint.clone().unwrap_or_default(),
        typed: Vec::new(),
    };
    let json = args.output.json;
    let started: Result<_, Failure> = (|| {
        let bucket = bucket_of(&args.store.bucket)?;
        let endpoint = endpoint_of(&args.store.endpoint, None)?;
        let (cfg, typed) = build_config(
            &args.store,
            &bucket,
            &endpoint,
            Some(&args.plan),
            Some(&args.tuning),
            Some(&args.objects),
        )
        .map_err(Failure::usage)?;
        let up = open(cfg, typed, &mut dest)?;
        let (mut batch, skipped) =
            collect(&args.paths, &args.prefix, args.plan.strict_inputs).map_err(Failure::of)?;
        if let Some(j) = &args.journal {
            batch.journal(j);
        }
        ui::catch_interrupts();
        let job = up.start(&batch).map_err(Failure::of)?;
        Ok((up, job, skipped))
    })();
    let (_up, job, skipped) = match started {
        Ok(s) => s,
        Err(f) => return f.report("upload", json, &dest),
    };
    let on_interrupt = match &args.journal {
        Some(j) if !args.abort_on_interrupt => OnInterrupt::Pause(j.clone()),
        _ => OnInterrupt::Stop,
    };
    let target = format!("s3://{}/{}", dest.bucket, args.prefix);
    follow(
        &job,
        &args.output,
        &dest,
        &target,
        &skipped,
        &on_interrupt,
        Direction::Upload,
    )
}

/// The longest common prefix of `keys` that ends with '/': the "folder" a
/// batch went into.
fn folder_of(keys: &[String]) -> &str {
    let Some(first) = keys.first() else {
        return "";
    };
    let mut len = first.len();
    for k in &keys[1..] {
        len = first
            .bytes()
            .zip(k.bytes())
            .take(len)
            .take_while(|(a, b)| a == b)
            .count();
    }
    match first[..len].rfind('/') {
        Some(at) => &first[..=at],
        None => "",
    }
}

fn resume(args: ResumeArgs) -> ExitCode {
    let mut dest = Destination {
        bucket: args.store.bucket.clone().unwrap_or_default(),
        endpoint: args.store.endpoint.clone().unwrap_or_default(),
        typed: Vec::new(),
    };
    let json = args.output.json;
    let fixed = [
        ("--part-size", args.part_size.is_some()),
        ("--multipart-threshold", args.multipart_threshold.is_some()),
        ("--strict-inputs", args.strict_inputs),
        ("--prefix", args.prefix.is_some()),
    ];
    if let Some((flag, _)) = fixed.iter().find(|(_, given)| *given) {
        return Failure::usage(format!(
            "{flag} cannot apply to resume: the journal fixes the files, their keys and their parts"
        ))
        .report("resume", json, &dest);
    }
    let started: Result<_, Failure> = (|| {
        let info = JournalInfo::read(&args.journal).map_err(Failure::of)?;
        dest.bucket = args.store.bucket.clone().unwrap_or(info.bucket.clone());
        let endpoint = endpoint_of(&args.store.endpoint, info.endpoint.as_deref())?;
        dest.endpoint = endpoint.clone();
        // A download's resume takes no upload options (from the
        // environment, they are meant for uploads).
        let objects = (!info.download).then_some(&args.objects);
        let (cfg, typed) = build_config(
            &args.store,
            &dest.bucket,
            &endpoint,
            None,
            Some(&args.tuning),
            objects,
        )
        .map_err(Failure::usage)?;
        let up = open(cfg, typed, &mut dest)?;
        ui::catch_interrupts_for(if info.download {
            Direction::Download
        } else {
            Direction::Upload
        });
        let job = up.resume(&args.journal).map_err(Failure::of)?;
        Ok((up, job, info))
    })();
    let (_up, job, info) = match started {
        Ok(s) => s,
        Err(f) => return f.report("resume", json, &dest),
    };
    let on_interrupt = if args.abort_on_interrupt {
        OnInterrupt::Stop
    } else {
        OnInterrupt::Pause(args.journal.clone())
    };
    let (target, direction) = if info.download {
        let files = job.files();
        let paths: Vec<&Path> = files.iter().map(|f| f.path.as_path()).collect();
        let dir = download::common_dir(&paths);
        (dir.display().to_string(), Direction::Download)
    } else {
        let target = format!("s3://{}/{}", dest.bucket, folder_of(&info.keys));
        (target, Direction::Upload)
    };
    follow(
        &job,
        &args.output,
        &dest,
        &target,
        &[],
        &on_interrupt,
        direction,
    )
}

/// A path as a shell reads it back: quoted when it needs to be.
fn shell_word(p: &Path) -> String {
    let s = p.to_string_lossy();
    if !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Shows the job until it ends, then its report; returns the exit status.
/// `target`: where it went, as the summary names it (the bucket and
/// prefix of an upload, the directory of a download).
fn follow(
    job: &Job,
    out: &OutputArgs,
    dest: &Destination,
    target: &str,
    skipped: &[batchput::Skipped],
    on_interrupt: &OnInterrupt,
    direction: Direction,
) -> ExitCode {
    let display = ui::Display::new(!out.no_progress, job.progress().bytes_total, direction);
    let outcome = ui::watch(job, &display, on_interrupt);
    let p = &outcome.progress;
    let files = job.files();
    if out.json {
        say!("{}", ui::json_report(p, &files, dest, skipped));
    } else {
        if out.verbose > 0 {
            say_raw(&ui::file_table(&files, usize::MAX));
        }
        say!(
            "{}",
            ui::summary(p, &files, target, outcome.peak_bps, direction)
        );
        if !skipped.is_empty() {
            say!(
                "skipped {} special file{} (not regular files; --strict-inputs makes them errors)",
                skipped.len(),
                if skipped.len() == 1 { "" } else { "s" }
            );
        }
    }
    let Some(e) = p.error.as_ref().filter(|_| p.state != JobState::Succeeded) else {
        return ExitCode::from(outcome.exit_code());
    };
    match (outcome.signal, p.state, on_interrupt) {
        (Some(_), JobState::Paused, OnInterrupt::Pause(journal)) => {
            eprintln!(
                "paused: resume with `batchput resume --journal {}`",
                shell_word(journal)
            );
        }
        (Some(sig), JobState::Stopped, _) => {
            eprintln!(
                "stopped by {}: {}",
                ui::signal_name(sig),
                ui::explain(e, dest)
            );
        }
        _ => {
            eprintln!("error: {}", ui::explain(e, dest));
            if let Some(d) = ui::detail(e, dest) {
                eprintln!("  ({d})");
            }
        }
    }
    ExitCode::from(outcome.exit_code())
}

fn cleanup(args: CleanupArgs) -> ExitCode {
    let mut dest = Destination {
        bucket: args.store.bucket.clone().unwrap_or_default(),
        endpoint: args.store.endpoint.clone().unwrap_or_default(),
        typed: Vec::new(),
    };
    let opened: Result<_, Failure> = (|| {
        let bucket = bucket_of(&args.store.bucket)?;
        let endpoint = endpoint_of(&args.store.endpoint, None)?;
        let (cfg, typed) = build_config(&args.store, &bucket, &endpoint, None, None, None)
            .map_err(Failure::usage)?;
        open(cfg, typed, &mut dest)
    })();
    let up = match opened {
        Ok(u) => u,
        Err(f) => return f.report("cleanup", false, &dest),
    };
    let age = &args.older_than.text;
    let older_than = args.older_than.value;
    let target = format!("s3://{}/{}", dest.bucket, args.prefix);
    if args.dry_run {
        let stale = match up.stale_uploads(&args.prefix, older_than) {
            Ok(s) => s,
            Err(e) => return Failure::of(e).report("cleanup", false, &dest),
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
                    Some(d) => format!("initiated {} ago", ui::duration_text(d)),
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
    match up.cleanup(&args.prefix, older_than) {
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
        Err(e) => Failure::of(e).report("cleanup", false, &dest),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logger::init(match &cli.command {
        Command::Upload(a) => a.output.verbose,
        Command::Resume(a) => a.output.verbose,
        Command::Download(a) => a.output.verbose,
        Command::Cleanup(a) => a.verbose,
        Command::Worker(a) => a.verbose,
        Command::Enqueue(_) | Command::Queue(_) => 0,
        Command::Ls(_) | Command::Rm(_) | Command::Presign(_) => 0,
    });
    match cli.command {
        Command::Upload(a) => upload(a),
        Command::Resume(a) => resume(a),
        Command::Download(a) => download::download(*a),
        Command::Cleanup(a) => cleanup(a),
        Command::Worker(a) => worker::main(*a),
        Command::Enqueue(a) => admin::enqueue(a),
        Command::Queue(a) => admin::queue(a),
        Command::Ls(a) => objects::ls(a),
        Command::Rm(a) => objects::rm(a),
        Command::Presign(a) => objects::presign(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_folder_is_the_common_prefix_up_to_a_slash() {
        let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            folder_of(&keys(&["r/a.bin", "r/b.bin", "r/small.txt"])),
            "r/"
        );
        assert_eq!(folder_of(&keys(&["r/x/a", "r/x/b", "r/y"])), "r/");
        assert_eq!(folder_of(&keys(&["only/one.bin"])), "only/");
        assert_eq!(folder_of(&keys(&["a", "b"])), "");
        assert_eq!(folder_of(&[]), "");
    }

    #[test]
    fn journal_paths_are_quoted_for_the_shell_when_needed() {
        assert_eq!(shell_word(Path::new("/tmp/j.journal")), "/tmp/j.journal");
        assert_eq!(shell_word(Path::new("my job's.j")), r"'my job'\''s.j'");
    }
}

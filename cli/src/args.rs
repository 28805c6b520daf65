//! The command line's shape (clap) and the library configuration it
//! builds: every engine option is a flag, and every flag can also come
//! from a `BATCHPUT_*` environment variable.

use std::path::PathBuf;
use std::time::Duration;

use batchput::{Config, OPTIONS};
use batchput_cli::{self as ui, flag_message};
use clap::{ArgAction, Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Exit status: 0 every file uploaded (downloaded); 1 the job failed (completed \
objects and files stay, unfinished multipart uploads are aborted, unfinished \
downloads removed); 2 the command line is wrong; 130 interrupted by Ctrl-C, \
143 by SIGTERM (a journaled job is paused for `batchput resume`, any other \
stopped and cleaned up; a second Ctrl-C quits at once).";

#[derive(Parser)]
#[command(
    name = "batchput",
    version,
    about = "Upload batches of files to S3-compatible storage, fast, leaving no billed garbage behind",
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Upload files and directories (recursively) to a bucket.
    ///
    /// A directory's files are keyed PREFIX + their path below that
    /// directory, with '/' separators; a file given directly is keyed
    /// PREFIX + its name. The first fatal error stops the whole batch: open
    /// multipart uploads are aborted, files not started never start,
    /// completed objects stay.
    #[command(after_help = AFTER_HELP)]
    Upload(UploadArgs),
    /// Download every object under a prefix into a directory.
    ///
    /// Each file takes its name only once complete and checked against
    /// its ETag (or the store's full-object CRC32C); until then it is a
    /// temporary .NAME.batchput-partial beside it. Upload options (--acl,
    /// --integrity...) do not apply. A key that would land outside DIR
    /// refuses the whole job before anything is written. The first fatal error stops the batch: files
    /// not finished are removed, finished ones stay.
    #[command(after_help = AFTER_HELP)]
    Download(Box<crate::download::DownloadArgs>),
    /// Continue an interrupted upload or download from its journal (see
    /// upload --journal, download --journal).
    ///
    /// The bucket and endpoint come from the journal unless given; the
    /// files, their keys and their part sizes are the journal's.
    #[command(after_help = AFTER_HELP)]
    Resume(ResumeArgs),
    /// Abort multipart uploads left open by crashed processes (they are billed).
    Cleanup(CleanupArgs),
    /// Take upload tasks from a Redis stream and run them, until SIGTERM
    /// (see the README's "Many hosts").
    Worker(Box<crate::worker::WorkerArgs>),
    /// Put a directory or files on a Redis stream as tasks for workers.
    Enqueue(crate::admin::EnqueueArgs),
    /// Look at a Redis task queue (`queue status`).
    Queue(crate::admin::QueueCmdArgs),
    /// List the objects under a prefix: size, date (UTC), key.
    Ls(crate::objects::LsArgs),
    /// Delete every object under a prefix (--dry-run to see what would go).
    Rm(crate::objects::RmArgs),
    /// Print a presigned URL that lets anyone GET (or PUT) one object for a while.
    Presign(crate::objects::PresignArgs),
}

#[derive(Args)]
pub struct UploadArgs {
    /// Files and directories to upload.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,

    /// Key prefix, prepended as is: end it with '/' to upload into a "folder".
    #[arg(long, short = 'p', default_value = "", env = "BATCHPUT_PREFIX")]
    pub prefix: String,

    /// Record the job in this file so that `batchput resume` can continue
    /// it after Ctrl-C, a crash or a kill.
    #[arg(long, value_name = "FILE", env = "BATCHPUT_JOURNAL")]
    pub journal: Option<PathBuf>,

    /// With --journal: on Ctrl-C or SIGTERM, stop and abort the open
    /// uploads instead of pausing for resume.
    #[arg(long)]
    pub abort_on_interrupt: bool,

    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub plan: PlanArgs,
    #[command(flatten)]
    pub tuning: TuningArgs,
    #[command(flatten)]
    pub objects: ObjectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct ResumeArgs {
    /// The journal the interrupted upload was started with.
    #[arg(long, value_name = "FILE", required = true, env = "BATCHPUT_JOURNAL")]
    pub journal: PathBuf,

    /// On Ctrl-C or SIGTERM, stop and abort the open uploads instead of
    /// pausing again.
    #[arg(long)]
    pub abort_on_interrupt: bool,

    // Options the journal fixes: accepted here only to be refused with a
    // reason (not from the environment, where they are meant for uploads).
    #[arg(long, hide = true)]
    pub part_size: Option<String>,
    #[arg(long, hide = true)]
    pub multipart_threshold: Option<String>,
    #[arg(long, hide = true)]
    pub strict_inputs: bool,
    #[arg(long, short = 'p', hide = true)]
    pub prefix: Option<String>,

    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub tuning: TuningArgs,
    #[command(flatten)]
    pub objects: ObjectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct CleanupArgs {
    /// Only uploads whose key starts with this.
    #[arg(long, short = 'p', default_value = "", env = "BATCHPUT_PREFIX")]
    pub prefix: String,

    /// Only uploads initiated longer ago than this (e.g. 24h, 7d, 30m): a
    /// running upload elsewhere is younger.
    #[arg(long, value_name = "AGE", value_parser = typed_duration, default_value = "24h")]
    pub older_than: Typed,

    /// List what would be aborted and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,

    /// Log more on stderr: -v info, -vv debug (else warnings and errors,
    /// or what RUST_LOG says).
    #[arg(long, short = 'v', action = ArgAction::Count)]
    pub verbose: u8,

    #[command(flatten)]
    pub store: StoreArgs,
}

/// Where to upload and as whom.
#[derive(Args)]
#[command(next_help_heading = "Destination")]
pub struct StoreArgs {
    #[arg(long, short = 'b', env = "BATCHPUT_BUCKET", help = opt("bucket"))]
    pub bucket: Option<String>,

    #[arg(long, value_name = "URL", env = "BATCHPUT_ENDPOINT",
          help = format!("{} (or AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL)", opt("endpoint")))]
    pub endpoint: Option<String>,

    #[arg(long, env = "BATCHPUT_REGION",
          help = format!("{} (or AWS_REGION, AWS_DEFAULT_REGION)", opt("region")))]
    pub region: Option<String>,

    #[arg(long, value_name = "ID", env = "BATCHPUT_ACCESS_KEY", hide_env_values = true,
          help = opt("access_key"))]
    pub access_key: Option<String>,

    #[arg(long, value_name = "SECRET", env = "BATCHPUT_SECRET_KEY", hide_env_values = true,
          help = opt("secret_key"))]
    pub secret_key: Option<String>,

    #[arg(long, value_name = "TOKEN", env = "BATCHPUT_SESSION_TOKEN", hide_env_values = true,
          help = opt("session_token"))]
    pub session_token: Option<String>,

    #[arg(long, env = "BATCHPUT_ADDRESSING", value_parser = ["path", "virtual"],
          help = opt("addressing"))]
    pub addressing: Option<String>,

    #[arg(long, value_name = "PEM", env = "BATCHPUT_CA_FILE", help = opt("ca_file"))]
    pub ca_file: Option<PathBuf>,

    #[arg(long, value_name = "URL", env = "BATCHPUT_PROXY", help = opt("proxy"))]
    pub proxy: Option<String>,

    #[arg(long, value_name = "DURATION", value_parser = typed_duration,
          env = "BATCHPUT_CONNECT_TIMEOUT", help = opt("connect_timeout_ms"))]
    pub connect_timeout: Option<Typed>,

    #[arg(long, value_name = "DURATION", value_parser = typed_duration,
          env = "BATCHPUT_REQUEST_TIMEOUT", help = opt("request_timeout_ms"))]
    pub request_timeout: Option<Typed>,
}

/// What only a new upload can choose: how files are cut into parts.
#[derive(Args)]
#[command(next_help_heading = "Upload options")]
pub struct PlanArgs {
    #[arg(long, value_name = "SIZE", env = "BATCHPUT_PART_SIZE", help = opt("part_size"))]
    pub part_size: Option<String>,

    #[arg(long, value_name = "SIZE", env = "BATCHPUT_MULTIPART_THRESHOLD",
          help = opt("multipart_threshold"))]
    pub multipart_threshold: Option<String>,

    #[arg(long, alias = "strict", help = opt("strict_inputs"))]
    pub strict_inputs: bool,
}

/// How a job runs (uploads and downloads).
#[derive(Args)]
#[command(next_help_heading = "Transfer options")]
pub struct TuningArgs {
    #[arg(long, short = 'w', value_name = "N|auto", env = "BATCHPUT_WORKERS", help = opt("workers"))]
    pub workers: Option<String>,

    #[arg(long, value_name = "N", env = "BATCHPUT_MAX_WORKERS", help = opt("max_workers"))]
    pub max_workers: Option<String>,

    #[arg(long, value_name = "N", env = "BATCHPUT_RETRIES", help = opt("retries"))]
    pub retries: Option<String>,

    #[arg(long, value_name = "DURATION", value_parser = typed_duration,
          env = "BATCHPUT_STALL_TIMEOUT", help = opt("stall_timeout_ms"))]
    pub stall_timeout: Option<Typed>,

    #[arg(long, value_name = "DURATION", value_parser = typed_duration,
          env = "BATCHPUT_DEADLINE", help = opt("deadline_ms"))]
    pub deadline: Option<Typed>,

    #[arg(long, value_name = "N", env = "BATCHPUT_MAX_OPEN_FILES", help = opt("max_open_files"))]
    pub max_open_files: Option<String>,

    #[arg(long, value_name = "SIZE", env = "BATCHPUT_RATE_LIMIT", help = opt("rate_limit"))]
    pub rate_limit: Option<String>,

    #[arg(long, value_name = "DURATION", value_parser = typed_duration,
          env = "BATCHPUT_CLEANUP_TIMEOUT", help = opt("cleanup_timeout_ms"))]
    pub cleanup_timeout: Option<Typed>,
}

/// What uploaded objects get, and what only uploads have (open multipart
/// uploads, integrity modes): not options of a download, which refuses
/// them as flags and ignores them in the environment.
#[derive(Args)]
#[command(next_help_heading = "Upload options")]
pub struct ObjectArgs {
    #[arg(long, value_name = "N", env = "BATCHPUT_MAX_PENDING_UPLOADS",
          help = opt("max_pending_uploads"))]
    pub max_pending_uploads: Option<String>,

    #[arg(long, env = "BATCHPUT_ACL", help = opt("acl"))]
    pub acl: Option<String>,

    #[arg(long, value_name = "TYPE", env = "BATCHPUT_CONTENT_TYPE", help = opt("content_type"))]
    pub content_type: Option<String>,

    #[arg(long, value_name = "CLASS", env = "BATCHPUT_STORAGE_CLASS",
          help = opt("storage_class"))]
    pub storage_class: Option<String>,

    /// User metadata x-amz-meta-NAME=VALUE on every object (repeatable).
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_meta)]
    pub meta: Vec<(String, String)>,

    #[arg(long, env = "BATCHPUT_INTEGRITY",
          value_parser = ["auto", "etag-md5", "content-md5", "crc32c", "none"], help = opt("integrity"))]
    pub integrity: Option<String>,
}

#[derive(Args)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// No live progress bar (it is shown only when stdout and stderr are terminals).
    #[arg(long)]
    pub no_progress: bool,

    /// Print the final report as one JSON object on stdout, whatever the
    /// outcome: totals, the error, and per file its path, key, size,
    /// state, average and peak speed, and ETag.
    #[arg(long)]
    pub json: bool,

    /// Also print one line per file: state, size, speeds, ETag, key; and
    /// log more on stderr: -v info, -vv debug (else warnings and errors, or
    /// what RUST_LOG says).
    #[arg(long, short = 'v', action = ArgAction::Count)]
    pub verbose: u8,
}

/// A duration and how it was typed (`"90s"`), so messages can quote it.
#[derive(Clone, Debug)]
pub struct Typed {
    pub text: String,
    pub value: Duration,
}

fn typed_duration(s: &str) -> Result<Typed, String> {
    Ok(Typed {
        text: s.trim().to_string(),
        value: batchput::parse_duration(s)?,
    })
}

/// The help line of an engine option, from the library's own list, with
/// its default: the CLI and the README say the same.
pub fn opt(key: &str) -> String {
    let (_, default, what) = OPTIONS
        .iter()
        .find(|o| o.0 == key)
        .unwrap_or_else(|| panic!("option '{key}' is not in batchput::OPTIONS"));
    let default = match (key.ends_with("_ms"), *default) {
        (_, "") => return what.to_string(),
        (_, env) if env.starts_with('$') => format!("from {env}"),
        (true, "0") => "none".to_string(),
        (true, ms) => ui::default_duration_text(ms),
        (false, d) => d.to_string(),
    };
    format!("{what} [default: {default}]")
}

fn parse_meta(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err("expected NAME=VALUE".into()),
    }
}

/// The configuration for `bucket` at `endpoint` (already chosen: flag,
/// environment or journal), and the options as typed, by key. An error is
/// a message naming the flag.
pub fn build_config(
    store: &StoreArgs,
    bucket: &str,
    endpoint: &str,
    plan: Option<&PlanArgs>,
    tuning: Option<&TuningArgs>,
    objects: Option<&ObjectArgs>,
) -> Result<(Config, Vec<(String, String)>), String> {
    let mut cfg = Config::new();
    let mut settings: Vec<(String, String)> = Vec::new();
    let mut typed: Vec<(String, String)> = Vec::new();
    let mut put = |key: &str, value: Option<String>| {
        if let Some(v) = value {
            settings.push((key.to_string(), v));
        }
    };
    let mut put_duration =
        |key: &str, value: &Option<Typed>, put: &mut dyn FnMut(&str, Option<String>)| {
            if let Some(t) = value {
                typed.push((key.to_string(), t.text.clone()));
                put(key, Some(t.value.as_millis().to_string()));
            }
        };
    put("endpoint", Some(endpoint.to_string()));
    put("bucket", Some(bucket.to_string()));
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
    put_duration("connect_timeout_ms", &store.connect_timeout, &mut put);
    put_duration("request_timeout_ms", &store.request_timeout, &mut put);
    if let Some(p) = plan {
        put("part_size", p.part_size.clone());
        put("multipart_threshold", p.multipart_threshold.clone());
        if p.strict_inputs {
            put("strict_inputs", Some("true".into()));
        }
    }
    if let Some(t) = tuning {
        put("workers", t.workers.clone());
        put("max_workers", t.max_workers.clone());
        put("retries", t.retries.clone());
        put_duration("stall_timeout_ms", &t.stall_timeout, &mut put);
        put_duration("deadline_ms", &t.deadline, &mut put);
        put("max_open_files", t.max_open_files.clone());
        put("rate_limit", t.rate_limit.clone());
        put_duration("cleanup_timeout_ms", &t.cleanup_timeout, &mut put);
    }
    if let Some(o) = objects {
        put("max_pending_uploads", o.max_pending_uploads.clone());
        put("acl", o.acl.clone());
        put("content_type", o.content_type.clone());
        put("storage_class", o.storage_class.clone());
        put("integrity", o.integrity.clone());
        for (name, value) in &o.meta {
            put(&format!("meta.{name}"), Some(value.clone()));
        }
    }
    for (key, value) in &settings {
        cfg.set(key, value)
            .map_err(|e| flag_message(&e.to_string()))?;
    }
    cfg.validate().map_err(|e| flag_message(&e.to_string()))?;
    Ok((cfg, typed))
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
            let flag = ui::flag_of(key);
            assert!(longs.contains(&flag), "no {flag} for option '{key}'");
        }
    }

    #[test]
    fn option_help_gives_defaults_as_typed() {
        assert_eq!(
            opt("stall_timeout_ms").split('[').nth(1),
            Some("default: 60s]")
        );
        assert_eq!(opt("deadline_ms").split('[').nth(1), Some("default: none]"));
    }
}

//! `batchput download`: every object under a prefix into a local
//! directory, with the upload's display, report, exit codes and interrupt
//! handling (pause with a journal, `batchput resume` continues it); and
//! what `resume` needs to tell a download's journal from an upload's.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use batchput_cli::{self as ui, Destination, Direction, OnInterrupt};
use clap::Args;

use crate::args::{build_config, OutputArgs, PlanArgs, StoreArgs, TuningArgs};
use crate::{bucket_of, endpoint_of, follow, open, Failure};

#[derive(Args)]
pub struct DownloadArgs {
    /// The directory to download into (made if missing). An object's path
    /// below it is what follows the prefix's last '/'.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,

    /// Only keys that start with this ("" for the whole bucket): with
    /// "photos/2024-", "photos/2024-01/a.jpg" lands at DIR/2024-01/a.jpg.
    #[arg(long, short = 'p', default_value = "", env = "BATCHPUT_PREFIX")]
    pub prefix: String,

    /// Record the job in this file so that `batchput resume` can continue
    /// it after Ctrl-C, a crash or a kill (fetching only what is missing).
    #[arg(long, value_name = "FILE", env = "BATCHPUT_JOURNAL")]
    pub journal: Option<PathBuf>,

    /// With --journal: on Ctrl-C or SIGTERM, stop and remove the
    /// temporary files instead of pausing for resume.
    #[arg(long)]
    pub abort_on_interrupt: bool,

    /// Objects of at least --multipart-threshold are fetched in ranges of
    /// this size (or along their own parts, to check their ETag).
    #[arg(long, value_name = "SIZE", env = "BATCHPUT_PART_SIZE",
          help_heading = "Download options", help = crate::args::opt("part_size"))]
    pub part_size: Option<String>,

    #[arg(long, value_name = "SIZE", env = "BATCHPUT_MULTIPART_THRESHOLD",
          help_heading = "Download options", help = crate::args::opt("multipart_threshold"))]
    pub multipart_threshold: Option<String>,

    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub tuning: TuningArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn download(args: DownloadArgs) -> ExitCode {
    let mut dest = Destination {
        bucket: args.store.bucket.clone().unwrap_or_default(),
        endpoint: args.store.endpoint.clone().unwrap_or_default(),
        typed: Vec::new(),
    };
    let json = args.output.json;
    let plan = PlanArgs {
        part_size: args.part_size.clone(),
        multipart_threshold: args.multipart_threshold.clone(),
        strict_inputs: false,
    };
    let started: Result<_, Failure> = (|| {
        let bucket = bucket_of(&args.store.bucket)?;
        let endpoint = endpoint_of(&args.store.endpoint, None)?;
        let (cfg, typed) = build_config(
            &args.store,
            &bucket,
            &endpoint,
            Some(&plan),
            Some(&args.tuning),
            None,
        )
        .map_err(Failure::usage)?;
        let up = open(cfg, typed, &mut dest)?;
        // Before the listing: a signal while it lists is seen at once.
        ui::catch_interrupts_for(Direction::Download);
        let job = up
            .download_prefix(&args.prefix, &args.dir, args.journal.as_deref())
            .map_err(Failure::of)?;
        Ok((up, job))
    })();
    let (_up, job) = match started {
        Ok(s) => s,
        Err(f) => return f.report("download", json, &dest),
    };
    let on_interrupt = match &args.journal {
        Some(j) if !args.abort_on_interrupt => OnInterrupt::Pause(j.clone()),
        _ => OnInterrupt::Stop,
    };
    let target = args.dir.display().to_string();
    follow(
        &job,
        &args.output,
        &dest,
        &target,
        &[],
        &on_interrupt,
        Direction::Download,
    )
}

/// The deepest directory that holds every path: where a resumed
/// download writes, as its report names it.
pub fn common_dir(paths: &[&Path]) -> PathBuf {
    let Some(first) = paths.first() else {
        return PathBuf::new();
    };
    let mut dir = first.parent().unwrap_or(Path::new("")).to_path_buf();
    for p in &paths[1..] {
        while !p.starts_with(&dir) {
            if !dir.pop() {
                return PathBuf::new();
            }
        }
    }
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_download_is_named_by_the_directory_of_its_files() {
        let p = |s: &'static str| Path::new(s);
        assert_eq!(
            common_dir(&[p("/in/a/x"), p("/in/a/y/z"), p("/in/a/w")]),
            p("/in/a")
        );
        assert_eq!(common_dir(&[p("/in/a/x"), p("/in/b/y")]), p("/in"));
        assert_eq!(common_dir(&[p("/in/only")]), p("/in"));
        assert_eq!(common_dir(&[]), p(""));
    }
}

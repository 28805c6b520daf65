//! The entry points: [`Uploader`] and [`Batch`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::engine::{abort_and_verify, reconcile, Queued, Runner};
use crate::error::Result;
use crate::job::{FileIdentity, Job, JobShared};
use crate::journal::Journal;
use crate::store::{ListedUpload, Store};

/// Files to upload, each with its destination key, in upload order.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub(crate) files: Vec<(PathBuf, String)>,
    pub(crate) journal: Option<PathBuf>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Adds a file and the key it uploads to.
    pub fn add(&mut self, path: impl Into<PathBuf>, key: impl Into<String>) -> &mut Batch {
        self.files.push((path.into(), key.into()));
        self
    }

    /// Records the job in a journal at `path`, which makes pause and resume
    /// possible.
    pub fn journal(&mut self, path: impl Into<PathBuf>) -> &mut Batch {
        self.journal = Some(path.into());
        self
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no file was added.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The files and their keys, in upload order.
    pub fn files(&self) -> impl Iterator<Item = (&Path, &str)> {
        self.files.iter().map(|(p, k)| (p.as_path(), k.as_str()))
    }
}

/// Uploads batches to one bucket.
///
/// An uploader owns the S3 client, a fixed pool of `workers` threads and
/// one coordinator thread. Jobs started on it run one after another, in
/// the order they were started. Dropping it stops every job that has not
/// finished (aborting their open uploads) and joins its threads.
pub struct Uploader {
    runner: Runner,
}

impl Uploader {
    /// Validates the configuration and starts the threads.
    pub fn new(cfg: Config) -> Result<Uploader> {
        Ok(Uploader {
            runner: Runner::new(cfg)?,
        })
    }

    /// Validates and plans `batch`, then queues it. Everything that can be
    /// known to be wrong — a missing or unreadable file, a directory, an
    /// empty, invalid, over-long or duplicate key — is an error here, before
    /// any byte moves.
    pub fn start(&self, batch: &Batch) -> Result<Job> {
        let cfg = &self.runner.engine.cfg;
        let plans = crate::plan::plan(&batch.files, cfg)?;
        self.submit_new(plans, batch.journal.as_deref())
    }

    fn submit(
        &self,
        plans: Vec<crate::plan::FilePlan>,
        journal: Option<Journal>,
        priors: Option<Vec<crate::engine::Prior>>,
    ) -> Result<Job> {
        let identities = plans
            .iter()
            .map(|p| FileIdentity {
                path: p.path.clone(),
                key: p.key.clone(),
                size: p.size,
            })
            .collect();
        let bytes_total = plans.iter().map(|p| p.size).sum();
        let parts_total = plans.iter().map(|p| p.parts as u64).sum();
        let shared = Arc::new(JobShared::new(
            identities,
            bytes_total,
            parts_total,
            journal.is_some(),
        ));
        // What a resume finds on the server is known now, before the job
        // runs: a report can tell it from what this job sends.
        let resumed: u64 = priors
            .iter()
            .flatten()
            .zip(&plans)
            .map(|(prior, plan)| match prior {
                crate::engine::Prior::Fresh => 0,
                crate::engine::Prior::Done { .. } => plan.size,
                crate::engine::Prior::Upload { parts, .. } => parts
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.is_some())
                    .map(|(i, _)| plan.part_range(i as u32 + 1).1)
                    .sum(),
            })
            .sum();
        shared.published.lock().progress.bytes_resumed = resumed;
        self.runner.submit(Queued {
            shared: shared.clone(),
            plans,
            journal,
            priors,
        })?;
        Ok(Job { shared })
    }

    /// Downloads `batch`, whose entries are (local destination path, key)
    /// pairs, with the guarantees of an upload: fail-fast, bounded stop,
    /// a truthful report, a journal for pause and resume. Checked before any
    /// byte moves: every key, every destination (not a directory, no two
    /// keys to one path), every object's size and ETag (HeadObject, in
    /// parallel). Each object is fetched into a temporary file beside its
    /// destination (`.NAME.batchput-partial`) and renamed into place only
    /// once complete and checked ([`FileReport::verified`](crate::FileReport::verified)).
    pub fn download(&self, batch: &Batch) -> Result<Job> {
        let plans = crate::engine::download::plan::plan(&self.runner.engine, &batch.files, None)?;
        self.submit_new(plans, batch.journal.as_deref())
    }

    /// Downloads every object under `prefix` into `dir`: an object's path
    /// is what follows the prefix's last `/` (`photos/2024-` and
    /// `photos/2024-01/a.jpg` give `dir/2024-01/a.jpg`), as s5cmd and the
    /// aws cli map them. Folder markers (keys ending in `/`) are skipped; a
    /// key that would land outside `dir` (an empty, `.` or `..` segment, a
    /// backslash, a NUL) is refused before anything is written, naming it.
    /// Otherwise as [`download`](Uploader::download), with the listing's
    /// sizes and ETags (no HeadObject per object).
    pub fn download_prefix(&self, prefix: &str, dir: &Path, journal: Option<&Path>) -> Result<Job> {
        use crate::engine::download::plan::{map_below, plan, Known};
        let listed = self.store().list_objects(prefix)?;
        let objects = listed
            .into_iter()
            .map(|o| (o.key, Known::listed(o.size, o.etag)))
            .collect();
        let (entries, known) = map_below(prefix, dir, objects)?;
        let plans = plan(&self.runner.engine, &entries, Some(known))?;
        self.submit_new(plans, journal)
    }

    /// Plans a new batch's journal (if any) and queues the batch.
    fn submit_new(&self, plans: Vec<crate::plan::FilePlan>, journal: Option<&Path>) -> Result<Job> {
        let cfg = &self.runner.engine.cfg;
        let journal = match journal {
            Some(path) => Some(Journal::create_for(
                path,
                &cfg.bucket,
                &self.store().endpoint_urls().join(","),
                &plans,
            )?),
            None => None,
        };
        self.submit(plans, journal, None)
    }

    /// Starts a batch of every regular file under `dir` (recursively), keyed
    /// `prefix` + the path relative to `dir` with `/` separators. Entries
    /// that are not regular files are skipped with a warning, or refused
    /// with `strict_inputs` (see [`Batch::from_dir_report`]).
    pub fn start_dir(&self, dir: &Path, prefix: &str) -> Result<Job> {
        let strict = self.runner.engine.cfg.strict_inputs;
        self.start(&Batch::from_dir_report(dir, prefix, strict)?.0)
    }

    /// Continues the job recorded in the journal at `path` — paused,
    /// crashed or killed, in this process or another. Files that changed
    /// since are restarted (their old upload aborted); the others upload
    /// only their missing parts. Fails with
    /// [`JournalLocked`](crate::ErrorKind::JournalLocked) when another
    /// process is running that journal.
    ///
    /// Reconciling with the server (ListParts for each open upload, a
    /// HeadObject for each file that may have landed unrecorded) happens
    /// here, before the job is queued. A journal whose files are all
    /// complete gives a job that succeeds at once.
    pub fn resume(&self, path: &Path) -> Result<Job> {
        let (mut journal, recorded) = Journal::open(path)?;
        let bucket = &self.runner.engine.cfg.bucket;
        if recorded.bucket != *bucket {
            return Err(crate::Error::new(
                crate::ErrorKind::Journal,
                format!(
                    "journal {} records a batch for bucket '{}', but this uploader writes to '{bucket}'",
                    path.display(),
                    recorded.bucket
                ),
            ));
        }
        let engine = &self.runner.engine;
        let (plans, priors) = reconcile(&engine.store, &engine.cfg, &recorded, &mut journal)?;
        journal.resumed()?;
        self.submit(plans, Some(journal), Some(priors))
    }

    /// Multipart uploads under `prefix` initiated more than `older_than`
    /// ago: what [`cleanup`](Uploader::cleanup) would abort.
    pub fn stale_uploads(&self, prefix: &str, older_than: Duration) -> Result<Vec<ListedUpload>> {
        let now = SystemTime::now();
        Ok(self
            .runner
            .engine
            .store
            .list_multipart_uploads(prefix)?
            .into_iter()
            .filter(|u| match u.initiated {
                Some(t) => now.duration_since(t).unwrap_or_default() >= older_than,
                // No date: only an age of zero covers it.
                None => older_than.is_zero(),
            })
            .collect())
    }

    /// The janitor: aborts every multipart upload under `prefix` initiated
    /// more than `older_than` ago (uploads left by crashed processes that
    /// kept no journal). Returns how many it aborted.
    pub fn cleanup(&self, prefix: &str, older_than: Duration) -> Result<u64> {
        let store = &self.runner.engine.store;
        let mut aborted = 0;
        for u in self.stale_uploads(prefix, older_than)? {
            abort_and_verify(store, &u.key, &u.upload_id)?;
            aborted += 1;
        }
        Ok(aborted)
    }

    /// The S3 client this uploader uses.
    pub fn store(&self) -> &Store {
        &self.runner.engine.store
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &Config {
        &self.runner.engine.cfg
    }
}

/// Why a directory walk left an entry out.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// A symbolic link whose target does not exist.
    DanglingSymlink,
    /// A symbolic link that leads to itself (ELOOP).
    SymlinkLoop,
    /// A symbolic link to a directory: not followed, so a link loop cannot
    /// make the walk endless.
    DirectorySymlink,
    /// A FIFO (named pipe): reading it would wait for a writer.
    Fifo,
    /// A Unix domain socket.
    Socket,
    /// A character or block device.
    Device,
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SkipReason::DanglingSymlink => "a symbolic link to nothing",
            SkipReason::SymlinkLoop => "a symbolic link loop",
            SkipReason::DirectorySymlink => "a symbolic link to a directory (not followed)",
            SkipReason::Fifo => "a FIFO",
            SkipReason::Socket => "a socket",
            SkipReason::Device => "a device",
        })
    }
}

/// An entry a directory walk did not upload, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The entry, under the walked directory.
    pub path: PathBuf,
    /// What it is.
    pub reason: SkipReason,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is {}, not a regular file",
            self.path.display(),
            self.reason
        )
    }
}

impl Batch {
    /// Every regular file under `dir`, recursively, in sorted order, keyed
    /// `prefix` + the path relative to `dir` (with `/` separators). Links
    /// to files are followed; links to directories are not. Entries that
    /// cannot be uploaded are skipped with a warning (see
    /// [`from_dir_report`](Batch::from_dir_report)).
    pub fn from_dir(dir: &Path, prefix: &str) -> Result<Batch> {
        Ok(Batch::from_dir_report(dir, prefix, false)?.0)
    }

    /// The same walk, which also returns the entries it skipped: dangling
    /// symbolic links, link loops, links to directories, FIFOs, sockets and
    /// devices, each logged with `log::warn!`. With `strict` (the
    /// `strict_inputs` option), the first such entry is an
    /// [`InvalidInput`](crate::ErrorKind::InvalidInput) error naming it.
    pub fn from_dir_report(
        dir: &Path,
        prefix: &str,
        strict: bool,
    ) -> Result<(Batch, Vec<Skipped>)> {
        let mut batch = Batch::new();
        let mut stack = vec![dir.to_path_buf()];
        let mut found = Vec::new();
        let mut skipped = Vec::new();
        while let Some(d) = stack.pop() {
            let entries = std::fs::read_dir(&d)
                .map_err(|e| crate::Error::local_io("read directory", &d, &e))?;
            for entry in entries {
                let entry = entry.map_err(|e| crate::Error::local_io("read directory", &d, &e))?;
                let path = entry.path();
                let kind = entry
                    .file_type()
                    .map_err(|e| crate::Error::local_io("read", &path, &e))?;
                let reason = if kind.is_dir() {
                    stack.push(path);
                    continue;
                } else if kind.is_file() {
                    found.push(path);
                    continue;
                } else if kind.is_symlink() {
                    // A link to a file uploads that file; a link to a
                    // directory is not followed (a link loop would never end).
                    match std::fs::metadata(&path) {
                        Ok(target) if target.is_file() => {
                            found.push(path);
                            continue;
                        }
                        Ok(target) if target.is_dir() => SkipReason::DirectorySymlink,
                        Ok(target) => special(target.file_type()),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            SkipReason::DanglingSymlink
                        }
                        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => SkipReason::SymlinkLoop,
                        Err(e) => return Err(crate::Error::local_io("read", &path, &e)),
                    }
                } else {
                    special(kind)
                };
                let skip = Skipped { path, reason };
                if strict {
                    return Err(
                        crate::Error::input(format!("{skip} (strict_inputs)")).with_path(skip.path)
                    );
                }
                log::warn!("skipped {skip}");
                skipped.push(skip);
            }
        }
        found.sort();
        skipped.sort_by(|a, b| a.path.cmp(&b.path));
        for path in found {
            let rel = path.strip_prefix(dir).unwrap_or(&path);
            let mut parts = Vec::new();
            for c in rel.components() {
                // A key must be UTF-8; guessing would upload to a key
                // nobody asked for.
                let name = c.as_os_str().to_str().ok_or_else(|| {
                    crate::Error::input(format!(
                        "{} has a name that is not UTF-8, so it has no key",
                        path.display()
                    ))
                    .with_path(path.clone())
                })?;
                parts.push(name);
            }
            let key = format!("{prefix}{}", parts.join("/"));
            batch.add(path, key);
        }
        Ok((batch, skipped))
    }
}

/// The reason for an entry that is neither a file, a directory nor a link.
fn special(kind: std::fs::FileType) -> SkipReason {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        SkipReason::Fifo
    } else if kind.is_socket() {
        SkipReason::Socket
    } else {
        SkipReason::Device
    }
}

#[allow(dead_code)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Uploader>();
    is::<Job>();
    is::<Store>();
}

//! The coordinator: the one owner of a job's state.
//!
//! ## Overview
//! One thread per uploader runs its jobs one after another. For a job it
//! opens files lazily (one `Arc<File>` each, closed after the last part),
//! creates uploads (at most `max_pending_uploads` initiated and not yet
//! completed), hands part work to the pool in file-major order (never more
//! tasks than workers, so "queued work" is only ever the next few units and
//! a stop drops it for free), completes uploads, and on failure, stop or
//! pause cuts everything and cleans up.
//!
//! ## Message queue
//! Workers report by message only. The loop drains every message that is
//! ready, then blocks with a short timeout as a heartbeat: the heartbeat
//! samples speed, checks the stall timeout and the deadline, and notices a
//! stop or pause request. After each round it publishes a snapshot for
//! `poll`.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

mod cleanup;
mod concurrency;
mod progress;

use super::download::{self, Fetch, Finish};
use super::messages::{Msg, Source, Task, Unsettled, Work};
use super::worker::{self, multipart_etag, JobContext};
use super::{probe, Engine};
use crate::config::Integrity;
use crate::error::{Error, ErrorKind};
use crate::job::{FileState, Halt, JobShared, JobState};
use crate::journal::Journal;
use crate::plan::FilePlan;
use crate::store::CompletedPart;

/// Heartbeat of the loop: speed sampling, stall and deadline checks.
const TICK: Duration = Duration::from_millis(100);
/// How often speeds are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// The window the current speed is smoothed over.
const SPEED_WINDOW: Duration = Duration::from_secs(3);
/// After a stop or failure, how long in-flight requests get to report
/// before cleanup starts anyway. Their sockets were shut down when the end
/// began, so they end within moments; only a request stuck outside the
/// network (a name lookup, a slow disk) can take this long.
const GRACE: Duration = Duration::from_secs(2);

/// Where a multipart file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    Creating,
    Uploading,
    Completing,
    Done,
}

/// One acknowledged part.
#[derive(Clone)]
pub(crate) struct DonePart {
    pub etag: String,
    pub md5: Option<[u8; 16]>,
    pub crc32c: Option<u32>,
}

/// Where a resumed file starts from.
pub(crate) enum Prior {
    /// From nothing.
    Fresh,
    /// Already a complete object.
    Done { etag: String },
    /// An open upload with some parts already on the server.
    Upload {
        upload_id: String,
        parts: Vec<Option<DonePart>>,
    },
}

/// The coordinator's view of one file.
struct FileRun {
    phase: Phase,
    state: FileState,
    source: Option<Source>,
    upload_id: Option<Arc<str>>,
    /// Next part to dispatch (1-based).
    next_part: u32,
    parts_in_flight: u32,
    parts: Vec<Option<DonePart>>,
    parts_done: u32,
    /// Holds a slot of the open-file budget.
    holds_fd: bool,
    bytes_done: u64,
    started: Option<Instant>,
    finished: Option<Instant>,
    /// (time, bytes_done) at the last speed sample, and the peak seen.
    sample: (Instant, u64),
    peak: f64,
    etag: Option<String>,
    /// The endpoint that completed it.
    endpoint: Option<String>,
    error: Option<Error>,
    /// A request of it that may have acted without our knowing; cleanup
    /// asks the server before the file gets its final state.
    unsettled: Option<Unsettled>,
    /// A part of it was cut off after its whole body was sent: the server
    /// may still be storing it, so its abort waits a moment.
    part_cut_after_send: bool,
    /// A download's temporary file exists (made or kept by this job).
    has_temp: bool,
    /// How a download was checked.
    verified: Option<download::Verification>,
}

/// Why the job is ending early.
enum Ending {
    Failed(Error),
    Halted(Halt),
}

pub(crate) struct Coordinator<'a> {
    engine: &'a Engine,
    shared: Arc<JobShared>,
    plans: Vec<FilePlan>,
    keys: Vec<Arc<str>>,
    paths: Vec<Arc<std::path::Path>>,
    files: Vec<FileRun>,
    ctx: Arc<JobContext>,
    rx: Receiver<Msg>,
    /// Requests in flight allowed now (fixed, or adapting: `concurrency`).
    concurrency: concurrency::Concurrency,
    max_open_files: usize,
    max_pending_uploads: usize,

    next_file: usize,
    /// Multipart files started and not done, in batch order.
    active: Vec<usize>,
    /// Files whose parts are all acknowledged, waiting for a worker to complete them.
    to_complete: VecDeque<usize>,
    /// Parts of active files not yet dispatched: new files start only when
    /// this cannot keep the free workers busy, so uploads are not opened
    /// earlier than needed.
    backlog: u64,
    in_flight: usize,
    open_files: usize,
    pending_uploads: usize,

    files_done: u64,
    files_failed: u64,
    parts_done: u64,
    bytes_done: u64,
    /// What a resumed job found on the server: not part of its speed.
    bytes_resumed: u64,
    dirty: Vec<usize>,

    started: Instant,
    last_progress: Instant,
    last_sent: u64,
    samples: VecDeque<(Instant, u64)>,
    last_sample: Instant,
    speed: f64,
    peak: f64,

    ending: Option<Ending>,
    ending_since: Option<Instant>,

    journal: Option<Journal>,
    /// Where each file starts from (all `Fresh` for a new batch).
    priors: Vec<Prior>,
}

impl<'a> Coordinator<'a> {
    pub fn new(
        engine: &'a Engine,
        shared: Arc<JobShared>,
        plans: Vec<FilePlan>,
        journal: Option<Journal>,
        priors: Option<Vec<Prior>>,
    ) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        let now = Instant::now();
        let cfg = &engine.cfg;
        let ctx = Arc::new(JobContext {
            store: engine.store.clone(),
            // Replaced by what the probe says (`choose_integrity`) before
            // any task runs.
            integrity: match cfg.integrity {
                Integrity::Auto => Integrity::EtagMd5,
                configured => configured,
            },
            attempts: cfg.retries.max(1),
            cancel: shared.cancel.clone(),
            scope: crate::store::interrupt::Scope::new(shared.interrupt.clone()),
            request_timeout: cfg.request_timeout,
            bytes_sent: Default::default(),
            activity: Default::default(),
            rate: engine.rate.clone(),
            pressure: Default::default(),
            tx,
            uploads: Default::default(),
        });
        let files = plans
            .iter()
            .map(|p| FileRun {
                phase: Phase::Waiting,
                state: FileState::NotStarted,
                source: None,
                upload_id: None,
                next_part: 1,
                parts_in_flight: 0,
                parts: if p.multipart {
                    vec![None; p.parts as usize]
                } else {
                    Vec::new()
                },
                parts_done: 0,
                holds_fd: false,
                bytes_done: 0,
                started: None,
                finished: None,
                sample: (now, 0),
                peak: 0.0,
                etag: None,
                endpoint: None,
                error: None,
                unsettled: None,
                part_cut_after_send: false,
                has_temp: false,
                verified: None,
            })
            .collect();
        let priors = priors.unwrap_or_else(|| plans.iter().map(|_| Prior::Fresh).collect());
        let mut c = Coordinator {
            keys: plans.iter().map(|p| Arc::from(p.key.as_str())).collect(),
            paths: plans.iter().map(|p| Arc::from(p.path.as_path())).collect(),
            files,
            ctx,
            rx,
            concurrency: concurrency::Concurrency::new(
                cfg.adaptive_workers,
                cfg.workers,
                cfg.max_workers,
                now,
            ),
            max_open_files: cfg.effective_max_open_files(),
            max_pending_uploads: cfg.max_pending_uploads,
            next_file: 0,
            active: Vec::new(),
            to_complete: VecDeque::new(),
            backlog: 0,
            in_flight: 0,
            open_files: 0,
            pending_uploads: 0,
            files_done: 0,
            files_failed: 0,
            parts_done: 0,
            bytes_done: 0,
            bytes_resumed: 0,
            dirty: Vec::new(),
            started: now,
            last_progress: now,
            last_sent: 0,
            samples: VecDeque::new(),
            last_sample: now,
            speed: 0.0,
            peak: 0.0,
            ending: None,
            ending_since: None,
            engine,
            shared,
            plans,
            journal,
            priors,
        };
        c.apply_priors(now);
        // What a resumed job already has counts as sent.
        c.ctx.bytes_sent.store(c.bytes_done, Ordering::Relaxed);
        c
    }

    /// Counts what a resumed job already has: done files, and the parts
    /// already on the server of its open uploads.
    fn apply_priors(&mut self, now: Instant) {
        for f in 0..self.plans.len() {
            match &mut self.priors[f] {
                Prior::Fresh => {}
                Prior::Done { etag } => {
                    let etag = std::mem::take(etag);
                    let plan = &self.plans[f];
                    self.bytes_done += plan.size;
                    self.parts_done += plan.parts as u64;
                    let run = &mut self.files[f];
                    run.bytes_done = plan.size;
                    run.started = Some(now);
                    self.complete_file(f, etag, now);
                }
                Prior::Upload { parts, .. } => {
                    let parts = std::mem::take(parts);
                    for (i, p) in parts.into_iter().enumerate() {
                        if let Some(p) = p {
                            let (_, len) = self.plans[f].part_range(i as u32 + 1);
                            self.bytes_done += len;
                            self.parts_done += 1;
                            let run = &mut self.files[f];
                            run.bytes_done += len;
                            run.parts_done += 1;
                            run.parts[i] = Some(p);
                        }
                    }
                    skip_done_parts(&mut self.files[f]);
                }
            }
        }
    }

    /// Runs the job to its end and publishes the final state.
    pub fn run(mut self) {
        // A job stopped while still queued never starts.
        let queued_halt = *self.shared.halt.lock();
        if let Some(halt) = queued_halt {
            self.ending = Some(Ending::Halted(halt));
            self.finish();
            return;
        }
        let now = Instant::now();
        self.started = now;
        self.last_progress = now;
        self.last_sample = now;
        // What a resumed job already had is not speed.
        self.bytes_resumed = self.bytes_done;
        self.samples.push_back((now, self.bytes_done));
        self.shared.published.lock().progress.state = JobState::Running;
        let integrity = self.choose_integrity();
        // A stop or pause that came while the probe ran: nothing has started.
        let halt = *self.shared.halt.lock();
        if let Some(halt) = halt {
            self.ending = Some(Ending::Halted(halt));
            self.finish();
            return;
        }
        self.shared.published.lock().progress.integrity_used = integrity;

        loop {
            if self.ending.is_none() {
                self.dispatch();
            }
            if self.ending.is_none() && self.files_done == self.plans.len() as u64 {
                break;
            }
            if let Some(since) = self.ending_since {
                if since.elapsed() >= TICK {
                    // A gentle request's answer had its moment.
                    self.shared.interrupt.cancel();
                }
                if self.in_flight == 0 || since.elapsed() >= GRACE {
                    break;
                }
            }
            match self.rx.recv_timeout(TICK) {
                Ok(msg) => {
                    self.handle(msg);
                    while let Ok(msg) = self.rx.try_recv() {
                        self.handle(msg);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    unreachable!("the coordinator holds a sender")
                }
            }
            self.heartbeat();
            if let Some(j) = &mut self.journal {
                if let Err(e) = j.flush(false) {
                    self.fail_job(e);
                }
            }
            self.publish();
        }
        self.finish();
    }

    /// Settles the job's integrity mode (probing the store for `auto`, see
    /// `probe`). A job with no data left to send (a resume that only has
    /// uploads to complete) does not probe: `None`.
    fn choose_integrity(&mut self) -> Option<Integrity> {
        let first = (0..self.plans.len()).find(|&f| {
            let (run, plan) = (&self.files[f], &self.plans[f]);
            run.phase != Phase::Done && !(plan.multipart && run.parts_done == plan.parts)
        })?;
        if self.plans[first].object.is_some() {
            // A download: the check of its bytes is decided per object.
            return None;
        }
        let mode = probe::job_integrity(self.engine, &self.keys[first], &self.shared.interrupt);
        Arc::get_mut(&mut self.ctx)
            .expect("no task holds the job context before the first dispatch")
            .integrity = mode;
        Some(mode)
    }

    // ------------------------------------------------------------ dispatch

    fn dispatch(&mut self) {
        while self.in_flight < self.concurrency.limit() && self.ending.is_none() {
            if let Some(f) = self.to_complete.pop_front() {
                self.spawn_complete(f);
            } else if let Some(f) = self.next_dispatchable_part() {
                self.spawn_part(f);
            } else if !self.start_next_file() {
                return;
            }
        }
        // Every slot is taken: is work waiting for one?
        if self.ending.is_none()
            && (!self.to_complete.is_empty()
                || self.backlog > 0
                || self.next_file < self.plans.len())
        {
            self.concurrency.note_held_back();
        }
    }

    /// The first active file (batch order) with a part ready to go.
    fn next_dispatchable_part(&mut self) -> Option<usize> {
        for i in 0..self.active.len() {
            let f = self.active[i];
            let run = &self.files[f];
            if run.phase != Phase::Uploading || run.next_part > self.plans[f].parts {
                continue;
            }
            if run.source.is_none() {
                if self.open_files >= self.max_open_files {
                    continue;
                }
                if !self.open_source(f) {
                    return None;
                }
            }
            return Some(f);
        }
        None
    }

    /// Starts the next file of the batch, if the budgets allow and the
    /// active files cannot keep the free workers busy.
    fn start_next_file(&mut self) -> bool {
        let free = self.concurrency.limit().saturating_sub(self.in_flight) as u64;
        if self.next_file >= self.plans.len() || self.backlog >= free {
            return false;
        }
        let f = self.next_file;
        if self.files[f].phase == Phase::Done {
            // Completed before this job was resumed.
            self.next_file += 1;
            return true;
        }
        if self.plans[f].object.is_some() {
            return self.start_download(f);
        }
        if self.plans[f].multipart {
            if self.pending_uploads >= self.max_pending_uploads {
                return false;
            }
            self.next_file += 1;
            self.pending_uploads += 1;
            self.active.push(f);
            self.mark_started(f);
            let run = &self.files[f];
            self.backlog += (self.plans[f].parts - run.parts_done) as u64;
            if let Prior::Upload { upload_id, .. } = &self.priors[f] {
                // A resumed upload: its id is in the journal already.
                let id = upload_id.clone();
                self.ctx
                    .uploads
                    .lock()
                    .open
                    .insert(f, (self.keys[f].clone(), id.clone()));
                let run = &mut self.files[f];
                run.upload_id = Some(Arc::from(id.as_str()));
                run.phase = Phase::Uploading;
                if run.parts_done == self.plans[f].parts {
                    self.to_complete.push_back(f);
                }
                return true;
            }
            // The intent is durable before the request leaves, so resume
            // can find the upload even if its answer is lost in a crash.
            if let Some(j) = &mut self.journal {
                if let Err(e) = j.intent(f) {
                    self.fail_job(e);
                    return false;
                }
            }
            self.files[f].phase = Phase::Creating;
            self.spawn(f, Work::Create, None);
        } else {
            if self.open_files >= self.max_open_files {
                return false;
            }
            self.next_file += 1;
            self.mark_started(f);
            if let Some(j) = &mut self.journal {
                // Group-committed: losing it costs a re-sent small file.
                j.record_intent(f);
            }
            if !self.open_source(f) {
                return false;
            }
            let source = self.files[f].source.take();
            let size = self.plans[f].size;
            self.spawn(f, Work::Put, source.map(|s| (s, 0, size)));
        }
        true
    }

    /// Starts downloading file `f`: no request, its temporary file is made
    /// when its first part is dispatched. Downloads in progress count
    /// against `max_pending_uploads`.
    fn start_download(&mut self, f: usize) -> bool {
        if self.pending_uploads >= self.max_pending_uploads {
            return false;
        }
        self.next_file += 1;
        self.pending_uploads += 1;
        self.active.push(f);
        self.mark_started(f);
        if let Some(j) = &mut self.journal {
            j.record_intent(f);
        }
        let parts = self.plans[f].parts;
        let run = &mut self.files[f];
        self.backlog += (parts - run.parts_done) as u64;
        run.phase = Phase::Uploading;
        if run.parts_done == parts {
            // Resumed with every part in its temporary file.
            run.has_temp = true;
            self.to_complete.push_back(f);
        }
        true
    }

    fn mark_started(&mut self, f: usize) {
        let run = &mut self.files[f];
        run.state = FileState::Running;
        let now = Instant::now();
        run.started = Some(now);
        run.sample = (now, 0);
        self.dirty.push(f);
    }

    /// Opens file `f` once; every part shares the descriptor. A file that
    /// cannot be opened, is no longer a regular file (a FIFO swapped in
    /// must not block the job), or no longer looks as planned, fails the job.
    fn open_source(&mut self, f: usize) -> bool {
        let plan = &self.plans[f];
        if plan.object.is_some() {
            // A download's "source" is its temporary file, written to.
            let keep = self.files[f].parts_done > 0;
            return match download::open_temp(&plan.path, plan.size, keep) {
                Ok(file) => {
                    self.open_files += 1;
                    let run = &mut self.files[f];
                    run.holds_fd = true;
                    run.has_temp = true;
                    run.source = Some(Source {
                        file: Arc::new(file),
                        size: plan.size,
                        mtime: None,
                    });
                    true
                }
                Err(e) => {
                    let e = e.with_key(plan.key.clone());
                    self.fail(f, e);
                    false
                }
            };
        }
        let opened = crate::plan::open_regular(&plan.path).and_then(|(file, meta)| {
            if meta.len() != plan.size {
                return Err(Error::new(
                    ErrorKind::FileChanged,
                    format!(
                        "{} changed before it was uploaded: its size went from {} to {} bytes",
                        plan.path.display(),
                        plan.size,
                        meta.len()
                    ),
                ));
            }
            Ok(file)
        });
        match opened {
            Ok(file) => {
                self.open_files += 1;
                let run = &mut self.files[f];
                run.holds_fd = true;
                run.source = Some(Source {
                    file: Arc::new(file),
                    size: plan.size,
                    mtime: plan.mtime,
                });
                true
            }
            Err(e) => {
                let e = e.with_key(plan.key.clone()).with_path(plan.path.clone());
                self.fail(f, e);
                false
            }
        }
    }

    fn spawn_part(&mut self, f: usize) {
        let plan = &self.plans[f];
        let run = &mut self.files[f];
        let part = run.next_part;
        let (offset, len) = plan.part_range(part);
        let source = run.source.clone().expect("opened before dispatch");
        run.next_part += 1;
        skip_done_parts(run);
        run.parts_in_flight += 1;
        if run.next_part > plan.parts {
            // Last part handed out: the descriptor closes when it returns.
            run.source = None;
        }
        let upload_id = run.upload_id.clone();
        self.backlog -= 1;
        let work = match &plan.object {
            Some(object) => Work::Get(Fetch {
                part,
                parts: plan.parts,
                object_size: plan.size,
                object: object.clone(),
                hash: download::hash_while_fetching(object, plan.parts),
            }),
            None => Work::Part {
                part,
                upload_id: upload_id.expect("created before parts"),
            },
        };
        self.spawn(f, work, Some((source, offset, len)));
    }

    fn spawn_complete(&mut self, f: usize) {
        let run = &mut self.files[f];
        run.phase = Phase::Completing;
        if let Some(object) = &self.plans[f].object {
            // Planned without an ETag: the one its GET saw.
            let object = match (&object.etag, run.parts.first()) {
                (e, Some(Some(part))) if e.is_empty() => Arc::new(super::RemoteObject {
                    etag: part.etag.clone(),
                    ..(**object).clone()
                }),
                _ => object.clone(),
            };
            let how = Finish {
                size: self.plans[f].size,
                object,
                md5s: run
                    .parts
                    .iter()
                    .map(|p| p.as_ref().and_then(|p| p.md5))
                    .collect(),
                part_size_hint: self.engine.cfg.part_size,
            };
            self.spawn(f, Work::Finish(how), None);
            return;
        }
        let upload_id = run.upload_id.clone().expect("created before complete");
        let done: Vec<&DonePart> = run
            .parts
            .iter()
            .map(|p| p.as_ref().expect("all parts done"))
            .collect();
        let parts = done
            .iter()
            .enumerate()
            .map(|(i, p)| CompletedPart {
                number: i as u32 + 1,
                etag: p.etag.clone(),
                crc32c: p.crc32c.map(crate::store::crc32c_base64),
            })
            .collect();
        let md5s: Option<Vec<[u8; 16]>> = done.iter().map(|p| p.md5).collect();
        let expected_etag = md5s.map(|m| multipart_etag(&m));
        self.spawn(
            f,
            Work::Complete {
                upload_id,
                parts,
                expected_etag,
            },
            None,
        );
    }

    fn spawn(&mut self, f: usize, work: Work, data: Option<(Source, u64, u64)>) {
        self.in_flight += 1;
        let task = Task {
            file: f,
            key: self.keys[f].clone(),
            path: self.paths[f].clone(),
            work,
            data,
        };
        let ctx = self.ctx.clone();
        self.engine.pool.spawn(move || worker::run(&ctx, task));
    }

    // ------------------------------------------------------------ messages

    fn handle(&mut self, msg: Msg) {
        self.in_flight -= 1;
        let now = Instant::now();
        match msg {
            Msg::PutDone {
                file,
                etag,
                endpoint,
            } => {
                self.files[file].endpoint = Some(endpoint);
                let size = self.plans[file].size;
                self.release_fd(file);
                self.acknowledge(file, size, now);
                self.parts_done += 1;
                self.journal_done(file, &etag, false);
                self.complete_file(file, etag, now);
            }
            Msg::Created { file, upload_id } => {
                // Durable before any part of it is sent.
                if let Some(j) = &mut self.journal {
                    if let Err(e) = j.upload(file, &upload_id) {
                        self.fail_job(e);
                    }
                }
                let run = &mut self.files[file];
                run.upload_id = Some(Arc::from(upload_id.as_str()));
                run.phase = Phase::Uploading;
                self.last_progress = now;
                self.dirty.push(file);
            }
            Msg::PartDone {
                file,
                part,
                etag,
                md5,
                crc32c,
            } => {
                let (_, len) = self.plans[file].part_range(part);
                if let Some(j) = &mut self.journal {
                    j.part(file, part, &etag, md5, crc32c);
                }
                let run = &mut self.files[file];
                run.parts_in_flight -= 1;
                run.parts[part as usize - 1] = Some(DonePart { etag, md5, crc32c });
                run.parts_done += 1;
                let all_done = run.parts_done == self.plans[file].parts;
                self.parts_done += 1;
                self.after_part_returns(file);
                self.acknowledge(file, len, now);
                if all_done && self.ending.is_none() {
                    self.to_complete.push_back(file);
                }
            }
            Msg::Completed {
                file,
                etag,
                endpoint,
            } => {
                self.files[file].endpoint = Some(endpoint);
                self.pending_uploads -= 1;
                self.active.retain(|&a| a != file);
                self.journal_done(file, &etag, true);
                self.complete_file(file, etag, now);
            }
            Msg::Fetched {
                file,
                etag,
                verified,
            } => {
                self.files[file].verified = Some(verified);
                self.files[file].has_temp = false;
                self.pending_uploads -= 1;
                self.active.retain(|&a| a != file);
                // Synced for objects in parts, as for uploads: losing it
                // would cost their whole download again.
                let sync = self.plans[file].parts > 1;
                self.journal_done(file, &etag, sync);
                self.complete_file(file, etag, now);
            }
            Msg::Unsettled { file, error, what } => {
                if !self.plans[file].multipart {
                    self.release_fd(file);
                }
                self.files[file].unsettled = Some(what);
                if error.kind() != ErrorKind::Stopped {
                    self.fail(file, error);
                }
            }
            Msg::Failed { file, part, error } => {
                if part.is_some() && error.outcome_unknown() {
                    self.files[file].part_cut_after_send = true;
                }
                if part.is_some() {
                    self.files[file].parts_in_flight -= 1;
                    self.after_part_returns(file);
                } else if !self.plans[file].multipart {
                    self.release_fd(file);
                }
                // A task cut short by the job's own end is a consequence,
                // not a cause.
                if error.kind() != ErrorKind::Stopped {
                    self.fail(file, error);
                }
            }
        }
    }

    fn after_part_returns(&mut self, f: usize) {
        let run = &self.files[f];
        if run.parts_in_flight == 0 && run.next_part > self.plans[f].parts {
            self.release_fd(f);
        }
    }

    fn release_fd(&mut self, f: usize) {
        let run = &mut self.files[f];
        if run.holds_fd {
            run.holds_fd = false;
            run.source = None;
            self.open_files -= 1;
        }
    }

    fn acknowledge(&mut self, f: usize, bytes: u64, now: Instant) {
        self.files[f].bytes_done += bytes;
        self.bytes_done += bytes;
        self.last_progress = now;
        self.dirty.push(f);
    }

    fn complete_file(&mut self, f: usize, etag: String, now: Instant) {
        let run = &mut self.files[f];
        run.phase = Phase::Done;
        run.state = FileState::Completed;
        run.etag = Some(etag);
        run.upload_id = None;
        run.finished = Some(now);
        self.files_done += 1;
        self.last_progress = now;
        self.dirty.push(f);
    }

    fn journal_done(&mut self, f: usize, etag: &str, sync: bool) {
        if let Some(j) = &mut self.journal {
            if let Err(e) = j.done(f, etag, sync) {
                self.fail_job(e);
            }
        }
    }

    /// A fatal error that belongs to no file (the journal, say).
    fn fail_job(&mut self, error: Error) {
        if self.ending.is_none() {
            log::error!("job failed: {error}");
            self.begin_ending(Ending::Failed(error));
        }
    }

    /// Records a fatal error; the first one wins and ends the job.
    fn fail(&mut self, f: usize, error: Error) {
        let run = &mut self.files[f];
        if run.state != FileState::Failed && run.state != FileState::Completed {
            run.state = FileState::Failed;
            run.error = Some(error.clone());
            run.finished = Some(Instant::now());
            self.files_failed += 1;
            self.dirty.push(f);
        }
        if self.ending.is_none() {
            log::error!("job failed: {error}");
            self.begin_ending(Ending::Failed(error));
        }
    }

    fn begin_ending(&mut self, ending: Ending) {
        // Every request in flight is cut off now: none waits for its server
        // (a CreateMultipartUpload's answer gets one tick more, below).
        self.shared.interrupt.cancel_gently();
        self.ending = Some(ending);
        self.ending_since = Some(Instant::now());
        self.to_complete.clear();
    }
}

/// Moves `next_part` past parts a resumed upload already has.
fn skip_done_parts(run: &mut FileRun) {
    while (run.next_part as usize) <= run.parts.len()
        && run.parts[run.next_part as usize - 1].is_some()
    {
        run.next_part += 1;
    }
}

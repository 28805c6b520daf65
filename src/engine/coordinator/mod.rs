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
mod dispatch;
mod progress;

use super::download;
use super::messages::{Msg, Source, Unsettled};
use super::worker::JobContext;
use super::{probe, Engine};
use crate::config::Integrity;
use crate::error::{Error, ErrorKind};
use crate::job::{FileState, Halt, JobShared, JobState};
use crate::journal::Journal;
use crate::plan::FilePlan;

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
    /// A download of one GET, run as one task from its temporary file to
    /// its final name: it never joins the active files.
    whole: bool,
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
    /// Tasks handed to the pool and not reported yet: requests in flight,
    /// and tasks queued behind them (see `dispatch_limit`).
    in_flight: usize,
    /// The job's requests are small enough to queue tasks behind them.
    queue_behind: bool,
    /// The limit fell while more tasks than it allows were out: none is
    /// queued behind the others until the tasks out are within it again
    /// (see `dispatch_limit`).
    draining: bool,
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
    /// The aborts of the integrity probe's uploads, running beside the
    /// job: joined before the job ends (see `probe`).
    probe_cleanups: Vec<std::thread::JoinHandle<()>>,
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
            failing: Default::default(),
            tx,
            uploads: Default::default(),
            hasher: engine.hasher.handle(),
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
                whole: false,
                verified: None,
            })
            .collect();
        let priors = priors.unwrap_or_else(|| plans.iter().map(|_| Prior::Fresh).collect());
        let request_size = mean_request_size(&plans);
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
            )
            .with_request_size(request_size),
            max_open_files: cfg.effective_max_open_files(),
            max_pending_uploads: cfg.max_pending_uploads,
            next_file: 0,
            active: Vec::new(),
            to_complete: VecDeque::new(),
            backlog: 0,
            in_flight: 0,
            queue_behind: request_size <= dispatch::QUEUE_BEHIND_UP_TO,
            draining: false,
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
            probe_cleanups: Vec::new(),
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
        // A store known to be far (from an earlier job, or this one's
        // probe) gets the requests in flight its round trip needs from the
        // first dispatch on.
        let floor = self.engine.store.answer_floor();
        let sent = self.ctx.activity.load(Ordering::Relaxed);
        let pressure = self.ctx.pressure.load(Ordering::Relaxed);
        if let Some(limit) = self.concurrency.tick(Instant::now(), sent, pressure, floor) {
            log::debug!("requests in flight: up to {limit} from the start (answers take {floor:?} at least)");
        }

        loop {
            if self.ending.is_none() {
                self.dispatch();
            }
            if self.ending.is_none() && self.files_done == self.plans.len() as u64 {
                break;
            }
            if let Some(since) = self.ending_since {
                if self.queue_behind {
                    // Tasks queued behind others (see `dispatch_limit`) end
                    // at once now (their requests are refused); an idle
                    // thread takes them rather than wait for a busy one,
                    // which may work for another job.
                    self.engine.pool.wake_for_queued();
                }
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
        let mode = probe::job_integrity(
            self.engine,
            &self.keys[first],
            &self.shared.interrupt,
            &mut self.probe_cleanups,
        );
        Arc::get_mut(&mut self.ctx)
            .expect("no task holds the job context before the first dispatch")
            .integrity = mode;
        Some(mode)
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
                if self.files[file].whole {
                    let size = self.plans[file].size;
                    self.release_fd(file);
                    self.acknowledge(file, size, now);
                    self.parts_done += 1;
                } else {
                    self.pending_uploads -= 1;
                    self.active.retain(|&a| a != file);
                }
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
                } else {
                    // A PutObject or a whole download held its file; a
                    // multipart upload's or download's other tasks hold
                    // none (a no-op then).
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

/// The bytes a request of the batch carries, on average (a part, or a
/// whole file sent or fetched in one request).
fn mean_request_size(plans: &[FilePlan]) -> u64 {
    let bytes: u64 = plans.iter().map(|p| p.size).sum();
    let requests: u64 = plans.iter().map(|p| u64::from(p.parts.max(1))).sum();
    bytes.checked_div(requests).unwrap_or(0)
}

/// Moves `next_part` past parts a resumed upload already has.
fn skip_done_parts(run: &mut FileRun) {
    while (run.next_part as usize) <= run.parts.len()
        && run.parts[run.next_part as usize - 1].is_some()
    {
        run.next_part += 1;
    }
}

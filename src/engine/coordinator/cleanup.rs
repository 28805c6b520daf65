//! The end of a job: cleanup after a failure, stop or pause, within a
//! budget, and the final state of every file as the server has it.
//!
//! ## Overview
//! When the end begins (see `begin_ending`), the job's interrupt has already
//! cut every request in flight; the main loop waits up to `GRACE` for their
//! messages. Then [`Coordinator::finish`]:
//! 1. closes the registry of open uploads (a CreateMultipartUpload answered
//!    from now on is aborted by its own worker);
//! 2. if a part, a PutObject or a CompleteMultipartUpload was cut off after
//!    its whole request was sent, waits a moment ([`SETTLE`]) for the server to finish
//!    it, so the abort or the HeadObject that follows sees the outcome
//!    rather than racing it (a resume checks again in any case);
//! 3. runs the cleanup tasks on a few threads of its own, each request with
//!    fresh connections and short timeouts: abort every open upload and
//!    check it is gone (not on pause), look for the object of every request
//!    that went out in full without an answer (HeadObject, ETag compared),
//!    look for uploads a CreateMultipartUpload without an answer may have
//!    made;
//! 4. when `cleanup_timeout` (counted from the start of the end) runs out,
//!    cancels the cleanup's own interrupt: what is in flight is cut, what
//!    has not started does not start, and every upload not confirmed gone is
//!    reported as [`FileState::AbortFailed`] with its id;
//! 5. gives every file its final state from what the server said, never from
//!    a guess: an object found is `Completed`, a file nobody could ask about
//!    is `Unknown`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::{Coordinator, Ending};
use crate::engine::abort::{abort_and_verify_until, abort_strays, cleanup_scope, AbortOutcome};
use crate::engine::download;
use crate::engine::messages::Unsettled;
use crate::engine::worker::completed_object;
use crate::error::{Error, ErrorKind};
use crate::job::{FileState, Halt, JobState};
use crate::store::interrupt::{in_scope, Interrupt};
use crate::store::Store;

/// Threads that run cleanup requests at once.
const CLEANUP_THREADS: usize = 8;

/// How long an abort waits when a part of its upload was cut off after its
/// whole body was sent: the server may still be storing that part, and a
/// part stored after the abort is left behind (S3 takes a second abort;
/// some stores cannot remove it at all). Within the cleanup budget.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(750);

/// One thing cleanup asks of the server.
enum Task {
    /// Abort an open upload and check it is gone. `complete`: a
    /// CompleteMultipartUpload of it went out without an answer (with the
    /// ETag it would give), so the object may exist instead.
    Abort {
        file: usize,
        key: Arc<str>,
        upload_id: String,
        complete: Option<Option<String>>,
        parts: usize,
    },
    /// Look for the object a request without an answer may have made: a
    /// PutObject (`md5`, `size`) or a CompleteMultipartUpload (`etag`).
    Look {
        file: usize,
        key: Arc<str>,
        expect: Expect,
    },
    /// Look for uploads a CreateMultipartUpload without an answer made.
    Strays {
        file: usize,
        key: Arc<str>,
        since: SystemTime,
    },
}

/// What identifies our object at a key.
enum Expect {
    Put { md5: Option<[u8; 16]>, size: u64 },
    Complete { etag: Option<String>, parts: usize },
}

/// What cleanup learned about one file.
enum Outcome {
    /// We aborted its upload (confirmed gone).
    Aborted,
    /// Its object is at the key: it completed after all.
    Completed(String),
    /// No object of ours at the key (and its upload, if any, is gone).
    Absent,
    /// Its upload could not be aborted in time: still open.
    AbortFailed(Error),
    /// The server could not be asked: the object may or may not exist.
    Unknown(Error),
    /// Uploads an unanswered CreateMultipartUpload may have made were
    /// looked for (and aborted).
    StraysHandled,
}

impl Coordinator<'_> {
    /// Cleans up after an early end, sets every file's final state and
    /// publishes the terminal snapshot.
    pub(super) fn finish(mut self) {
        // Messages that came after the main loop stopped listening.
        while let Ok(msg) = self.rx.try_recv() {
            self.handle(msg);
        }
        let ending = self.ending.take();
        if ending.is_some() {
            // Gentle requests included, should the loop have ended first.
            self.shared.interrupt.cancel();
        }
        let pause = matches!(ending, Some(Ending::Halted(Halt::Pause)));
        // Close the registry: from here on, a late CreateMultipartUpload
        // answer is aborted by its own worker.
        #[allow(clippy::type_complexity)]
        let (open, renamed): (Vec<(usize, (Arc<str>, String))>, _) = {
            let mut reg = self.ctx.uploads.lock();
            reg.closed = true;
            (
                std::mem::take(&mut reg.open).into_iter().collect(),
                std::mem::take(&mut reg.renamed),
            )
        };
        // Downloads that took their final name, whether or not their
        // message arrived: they are complete.
        for (f, etag, verified) in renamed {
            self.files[f].verified = Some(verified);
            self.files[f].has_temp = false;
            self.settle_completed(f, etag, Instant::now());
        }
        let mut outcomes = HashMap::new();
        if ending.is_some() {
            // A part, a PutObject or a CompleteMultipartUpload cut off after
            // its whole request went out may still be on its way to the
            // server or at work there: a HeadObject at once could miss an
            // object that lands a moment later, and report it absent.
            let at_work = self.files.iter().any(|r| {
                (r.part_cut_after_send && !pause)
                    || matches!(
                        r.unsettled,
                        Some(Unsettled::Complete { .. } | Unsettled::Put { .. })
                    )
            });
            if at_work {
                let budget_end = self.ending_since.unwrap_or_else(Instant::now)
                    + self.engine.cfg.cleanup_timeout;
                let left = budget_end.saturating_duration_since(Instant::now());
                std::thread::sleep(SETTLE.min(left / 2));
            }
            let tasks = self.cleanup_tasks(&open, pause);
            if !tasks.is_empty() {
                let cfg = &self.engine.cfg;
                let budget_end =
                    self.ending_since.unwrap_or_else(Instant::now) + cfg.cleanup_timeout;
                outcomes = run_cleanup(&self.ctx.store, tasks, budget_end, cfg.request_timeout);
            }
        }
        // The probe's upload is gone, or reported, before the job ends.
        for cleanup in self.probe_cleanups.drain(..) {
            let _ = cleanup.join();
        }
        self.settle(ending, pause, &open, outcomes);
    }

    /// What to ask the server, file by file.
    fn cleanup_tasks(&self, open: &[(usize, (Arc<str>, String))], pause: bool) -> Vec<Task> {
        let mut tasks = Vec::new();
        let started = SystemTime::now() - self.started.elapsed();
        for (f, run) in self.files.iter().enumerate() {
            let key = self.keys[f].clone();
            let upload = open.iter().find(|(o, _)| *o == f).map(|(_, (_, id))| id);
            let complete = match &run.unsettled {
                Some(Unsettled::Complete { expected_etag }) => Some(expected_etag.clone()),
                _ => None,
            };
            let parts = self.plans[f].parts as usize;
            match (upload, &run.unsettled) {
                (Some(id), _) if !pause => tasks.push(Task::Abort {
                    file: f,
                    key,
                    upload_id: id.clone(),
                    complete,
                    parts,
                }),
                (_, Some(Unsettled::Complete { expected_etag })) => tasks.push(Task::Look {
                    file: f,
                    key,
                    expect: Expect::Complete {
                        etag: expected_etag.clone(),
                        parts,
                    },
                }),
                (_, Some(Unsettled::Put { md5 })) => tasks.push(Task::Look {
                    file: f,
                    key,
                    expect: Expect::Put {
                        md5: *md5,
                        size: self.plans[f].size,
                    },
                }),
                // A pause keeps the journal's intent: resume looks for it.
                (None, Some(Unsettled::Create)) if !pause => tasks.push(Task::Strays {
                    file: f,
                    key,
                    since: started,
                }),
                _ => {}
            }
        }
        tasks
    }

    /// Sets every file's final state from what happened and what cleanup
    /// learned, and publishes the terminal snapshot.
    fn settle(
        mut self,
        ending: Option<Ending>,
        pause: bool,
        open: &[(usize, (Arc<str>, String))],
        mut outcomes: HashMap<usize, Outcome>,
    ) {
        let now = Instant::now();
        let mut notes: Vec<String> = Vec::new();
        for f in 0..self.files.len() {
            let upload = open.iter().find(|(o, _)| *o == f).map(|(_, (_, id))| id);
            match outcomes.remove(&f) {
                Some(Outcome::Completed(etag)) => self.settle_completed(f, etag, now),
                Some(Outcome::Aborted) => {
                    if let (Some(j), Some(id)) = (&mut self.journal, upload) {
                        j.aborted(f, id);
                    }
                    self.settle_ended(f, FileState::Aborted);
                }
                Some(Outcome::Absent) => {
                    if let (Some(j), Some(id), false) = (&mut self.journal, upload, pause) {
                        j.aborted(f, id);
                    }
                    let state = if pause && upload.is_some() {
                        FileState::Paused
                    } else {
                        FileState::Aborted
                    };
                    self.settle_ended(f, state);
                }
                Some(Outcome::AbortFailed(e)) => {
                    log::error!("{e}");
                    notes.push(e.to_string());
                    let run = &mut self.files[f];
                    run.error.get_or_insert(e);
                    // The id stays in the report (and open in the journal).
                    run.upload_id = upload.map(|id| Arc::from(id.as_str()));
                    self.settle_ended(f, FileState::AbortFailed);
                }
                Some(Outcome::Unknown(e)) => {
                    let e = Error::new(
                        ErrorKind::Network,
                        format!(
                            "whether '{}' was stored is unknown: its request got no answer and \
                             the server could not be asked afterwards ({e})",
                            self.keys[f]
                        ),
                    )
                    .with_key(&*self.keys[f]);
                    log::error!("{e}");
                    notes.push(e.to_string());
                    self.files[f].error.get_or_insert(e);
                    self.settle_ended(f, FileState::Unknown);
                }
                Some(Outcome::StraysHandled) | None => {}
            }
            if self.plans[f].object.is_some() {
                self.settle_download(f, pause);
            }
            let run = &mut self.files[f];
            match run.state {
                FileState::Running if pause && upload.is_some() => {
                    run.state = FileState::Paused;
                    run.upload_id = upload.map(|id| Arc::from(id.as_str()));
                }
                FileState::Running => {
                    run.state = FileState::Aborted;
                    run.upload_id = None;
                }
                _ => {}
            }
            if run.started.is_some() && run.finished.is_none() {
                run.finished = Some(now);
            }
            self.dirty.push(f);
        }
        let (state, error) = match ending {
            None => (JobState::Succeeded, None),
            Some(Ending::Failed(e)) => (JobState::Failed, Some(e)),
            Some(Ending::Halted(Halt::Stop)) => (
                JobState::Stopped,
                Some(Error::new(ErrorKind::Stopped, "stopped by the caller")),
            ),
            Some(Ending::Halted(Halt::Pause)) => (
                JobState::Paused,
                Some(Error::new(ErrorKind::Paused, "paused by the caller")),
            ),
        };
        let error = error.map(|mut e| {
            for note in &notes {
                e = e.with_note(note);
            }
            e
        });
        if let Some(j) = &mut self.journal {
            // The uploads are settled whatever the journal says; a resume
            // of a journal without its end record checks with the server.
            if let Err(e) = j.ended(state) {
                log::error!("{e}");
            }
        }
        // Release the journal's lock before anyone can see the job end.
        drop(self.journal.take());
        self.publish();
        {
            let mut p = self.shared.published.lock();
            p.progress.state = state;
            p.progress.error = error;
        }
        self.shared.finished.notify_all();
    }

    /// File `f` turned out complete on the server after all.
    fn settle_completed(&mut self, f: usize, etag: String, now: Instant) {
        if self.files[f].state == FileState::Completed {
            return;
        }
        if self.files[f].state == FileState::Failed {
            self.files_failed -= 1;
        }
        let size = self.plans[f].size;
        let run = &mut self.files[f];
        let missing = size - run.bytes_done.min(size);
        self.bytes_done += missing;
        run.bytes_done = size;
        run.error = None;
        if let Some(j) = &mut self.journal {
            if let Err(e) = j.done(f, &etag, true) {
                log::error!("{e}");
            }
        }
        self.complete_file(f, etag, now);
    }

    /// A download that did not finish: on pause its temporary file is kept
    /// (with the journal, resume fetches only what it lacks); otherwise it
    /// is removed, so nothing half-written is left behind.
    fn settle_download(&mut self, f: usize, pause: bool) {
        let run = &mut self.files[f];
        if run.state == FileState::Completed || run.started.is_none() {
            return;
        }
        if pause && run.state == FileState::Running && run.has_temp {
            run.state = FileState::Paused;
            return;
        }
        download::remove_temp(&self.plans[f].path);
        run.has_temp = false;
        if run.state == FileState::Running {
            run.state = FileState::Aborted;
        }
    }

    /// File `f` ends in `state`, unless its own error already made it
    /// Failed (the cause of the job's end stays visible) and the new state
    /// says nothing more.
    fn settle_ended(&mut self, f: usize, state: FileState) {
        let run = &mut self.files[f];
        let keep_failed = run.state == FileState::Failed
            && matches!(state, FileState::Aborted | FileState::Paused);
        if !keep_failed {
            if run.state == FileState::Failed {
                self.files_failed -= 1;
            }
            run.state = state;
        }
        if state != FileState::AbortFailed && state != FileState::Paused {
            run.upload_id = None;
        }
    }
}

/// Runs the cleanup tasks on up to [`CLEANUP_THREADS`] threads until they
/// are done or `budget_end` passes; then cuts off what is left.
fn run_cleanup(
    store: &Store,
    tasks: Vec<Task>,
    budget_end: Instant,
    request_timeout: std::time::Duration,
) -> HashMap<usize, Outcome> {
    let budget = Arc::new(Interrupt::new());
    let scope = cleanup_scope(budget.clone(), request_timeout);
    let next = AtomicUsize::new(0);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut outcomes = HashMap::new();
    std::thread::scope(|s| {
        for _ in 0..tasks.len().min(CLEANUP_THREADS) {
            let tx = tx.clone();
            let (tasks, next, scope, budget) = (&tasks, &next, &scope, &budget);
            s.spawn(move || {
                in_scope(scope, || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(task) = tasks.get(i) else { break };
                    let _ = tx.send(run_task(store, task, budget.flag()));
                })
            });
        }
        drop(tx);
        loop {
            match rx.recv_deadline(budget_end) {
                Ok((file, outcome)) => {
                    outcomes.insert(file, outcome);
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    // The budget is spent: cut what is in flight; the
                    // threads report their last outcomes within moments.
                    log::warn!("the cleanup budget (cleanup_timeout_ms) ran out");
                    budget.cancel();
                    for (file, outcome) in rx.iter() {
                        outcomes.insert(file, outcome);
                    }
                    break;
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
        }
    });
    // Tasks no thread reached before the budget ran out.
    for task in &tasks {
        let (file, why) = match task {
            Task::Abort {
                file,
                key,
                upload_id,
                ..
            } => (
                *file,
                Outcome::AbortFailed(budget_spent(&format!(
                    "could not abort upload {upload_id} of '{key}' before the cleanup budget ran out; \
                     it is still open and billed: `batchput cleanup` or a resume of the journal will find it"
                ))),
            ),
            Task::Look { file, .. } => (
                *file,
                Outcome::Unknown(budget_spent("the cleanup budget ran out")),
            ),
            Task::Strays { file, .. } => (
                *file,
                Outcome::Unknown(budget_spent("the cleanup budget ran out")),
            ),
        };
        outcomes.entry(file).or_insert(why);
    }
    outcomes
}

fn budget_spent(message: &str) -> Error {
    Error::new(ErrorKind::Timeout, message)
}

/// Asks the server one thing; gives up when `give_up` is set.
fn run_task(
    store: &Store,
    task: &Task,
    give_up: &std::sync::atomic::AtomicBool,
) -> (usize, Outcome) {
    match task {
        Task::Abort {
            file,
            key,
            upload_id,
            complete,
            parts,
        } => {
            let outcome = match abort_and_verify_until(store, key, upload_id, give_up) {
                Ok(AbortOutcome::Aborted) => Outcome::Aborted,
                // Gone before our abort: an unanswered Complete may have
                // made the object, so ask.
                Ok(AbortOutcome::AlreadyGone) => match complete {
                    Some(etag) => look(store, key, &expect_complete(etag, *parts)),
                    None => Outcome::Aborted,
                },
                Err(e) => match complete {
                    Some(etag) => match look(store, key, &expect_complete(etag, *parts)) {
                        found @ Outcome::Completed(_) => found,
                        _ => Outcome::AbortFailed(e),
                    },
                    None => Outcome::AbortFailed(e),
                },
            };
            (*file, outcome)
        }
        Task::Look { file, key, expect } => (*file, look(store, key, expect)),
        Task::Strays { file, key, since } => match abort_strays(store, key, None, *since) {
            Ok(_) => (*file, Outcome::StraysHandled),
            // The upload it may have made cannot be looked for.
            Err(e) => (*file, Outcome::Unknown(e)),
        },
    }
}

fn expect_complete(etag: &Option<String>, parts: usize) -> Expect {
    Expect::Complete {
        etag: etag.clone(),
        parts,
    }
}

/// HeadObject: is our object at `key`?
fn look(store: &Store, key: &str, expect: &Expect) -> Outcome {
    let found = match expect {
        Expect::Complete { etag, parts } => completed_object(store, key, *parts, etag.as_deref()),
        Expect::Put { md5, size } => store.head_object(key).map(|obj| {
            obj.and_then(|obj| {
                let ours = obj.size == *size
                    && md5.is_none_or(|m| {
                        obj.etag.eq_ignore_ascii_case(&crate::engine::etag::hex(&m))
                    });
                ours.then_some(obj.etag)
            })
        }),
    };
    match found {
        Ok(Some(etag)) => Outcome::Completed(etag),
        Ok(None) => Outcome::Absent,
        // The server refuses these credentials (or has no such bucket): the
        // request they signed cannot have stored anything either.
        Err(e) if refuses_every_request(&e) => Outcome::Absent,
        Err(e) => Outcome::Unknown(e),
    }
}

/// Whether an error says that no request of ours, whatever it was, can
/// have taken effect: the signature or key is refused, or the bucket does
/// not exist. (AccessDenied alone does not: a policy may allow PUT and
/// deny HEAD.)
fn refuses_every_request(e: &Error) -> bool {
    matches!(
        e.code(),
        Some("SignatureDoesNotMatch")
            | Some("InvalidAccessKeyId")
            | Some("NotSignedUp")
            | Some("NoSuchBucket")
    )
}

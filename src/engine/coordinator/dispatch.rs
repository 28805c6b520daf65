//! Dispatch: what the coordinator hands to the pool next — a completion,
//! the next part of an active file, or a new file — within the limit of
//! requests in flight, the open-file budget and the pending-upload budget;
//! and, for a download, its temporary file and its last step.

use std::sync::Arc;
use std::time::Instant;

use super::{skip_done_parts, Coordinator, DonePart, Phase, Prior};
use crate::engine::download::{self, Fetch, Finish};
use crate::engine::etag::multipart_etag;
use crate::engine::messages::{Source, Task, Work};
use crate::engine::worker;
use crate::error::{Error, ErrorKind};
use crate::job::FileState;
use crate::store::CompletedPart;

/// Jobs whose requests carry this much or less on average queue tasks
/// behind the requests in flight (see `dispatch_limit`). Beyond it a
/// thread's wake-up is nothing beside its request, and big parts are left
/// as they were: with 4 x 256 MiB queued too, the client's CPU spread
/// over 0.8-1.6 s in alternating runs either way (how full the MD5
/// thread's lanes run varies that much), too wide to show a gain.
pub(super) const QUEUE_BEHIND_UP_TO: u64 = 1 << 20;

impl Coordinator<'_> {
    // ------------------------------------------------------------ dispatch

    pub(super) fn dispatch(&mut self) {
        if self.draining && self.in_flight <= self.concurrency.limit() {
            // Drained: the tasks out are within the limit that fell.
            self.draining = false;
        }
        while self.in_flight < self.dispatch_limit() && self.ending.is_none() {
            if let Some(f) = self.to_complete.pop_front() {
                self.spawn_complete(f);
            } else if let Some(f) = self.next_dispatchable_part() {
                self.spawn_part(f);
            } else if !self.start_next_file() {
                if self.queue_behind && self.in_flight < self.concurrency.limit() {
                    // Below the limit with nothing new: tasks queued behind
                    // others when it was reached need not wait for them.
                    self.engine.pool.wake_for_queued();
                }
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
        let free = self.dispatch_limit().saturating_sub(self.in_flight) as u64;
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
            if !self.admit_in_parts(f) {
                return false;
            }
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
            if !self.start_single_request(f) {
                return false;
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
        if self.plans[f].parts == 1 && self.files[f].parts_done == 0 {
            return self.start_whole_download(f);
        }
        if !self.admit_in_parts(f) {
            return false;
        }
        if let Some(j) = &mut self.journal {
            j.record_intent(f);
        }
        let parts = self.plans[f].parts;
        let run = &mut self.files[f];
        run.phase = Phase::Uploading;
        if run.parts_done == parts {
            // Resumed with every part in its temporary file.
            run.has_temp = true;
            self.to_complete.push_back(f);
        }
        true
    }

    /// Starts downloading file `f`, an object of one GET, as one task that
    /// makes its temporary file, fetches, checks and renames it (see
    /// `download::fetch_whole`). Like a PutObject it holds a slot of the
    /// open-file budget while it runs and does not count against
    /// `max_pending_uploads`.
    fn start_whole_download(&mut self, f: usize) -> bool {
        if !self.start_single_request(f) {
            return false;
        }
        self.open_files += 1;
        let run = &mut self.files[f];
        run.holds_fd = true;
        // Made by the task: cleanup removes it should the task not.
        run.has_temp = true;
        run.whole = true;
        run.phase = Phase::Completing;
        let object = self.plans[f].object.clone().expect("a download");
        let work = Work::GetWhole {
            fetch: Fetch {
                part: 1,
                parts: 1,
                object_size: self.plans[f].size,
                hash: download::hash_while_fetching(&object, 1),
                object,
            },
            finish: self.finish_of(f),
        };
        self.spawn(f, work, None);
        true
    }

    /// Starts file `f`, moved by one request (a PutObject, a whole GET), if
    /// the open-file budget allows.
    fn start_single_request(&mut self, f: usize) -> bool {
        if self.open_files >= self.max_open_files {
            return false;
        }
        self.next_file += 1;
        self.mark_started(f);
        if let Some(j) = &mut self.journal {
            // Group-committed: losing it costs that one request again.
            j.record_intent(f);
        }
        true
    }

    /// Takes file `f`, sent or fetched in parts, into the active files if
    /// `max_pending_uploads` allows: its parts still to do join the backlog.
    fn admit_in_parts(&mut self, f: usize) -> bool {
        if self.pending_uploads >= self.max_pending_uploads {
            return false;
        }
        self.next_file += 1;
        self.pending_uploads += 1;
        self.active.push(f);
        self.mark_started(f);
        self.backlog += (self.plans[f].parts - self.files[f].parts_done) as u64;
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
        if self.plans[f].object.is_some() {
            let how = self.finish_of(f);
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

    /// The last step of download `f`, from what its parts brought.
    fn finish_of(&self, f: usize) -> Finish {
        let (plan, run) = (&self.plans[f], &self.files[f]);
        let object = plan.object.as_ref().expect("a download");
        // Planned without an ETag: the one its GET saw.
        let object = match (&object.etag, run.parts.first()) {
            (e, Some(Some(part))) if e.is_empty() => Arc::new(crate::engine::RemoteObject {
                etag: part.etag.clone(),
                ..(**object).clone()
            }),
            _ => object.clone(),
        };
        Finish {
            size: plan.size,
            object,
            md5s: run
                .parts
                .iter()
                .map(|p| p.as_ref().and_then(|p| p.md5))
                .collect(),
            crcs: run
                .parts
                .iter()
                .map(|p| p.as_ref().and_then(|p| p.crc32c))
                .collect(),
            part_size: plan.part_size,
            part_size_hint: self.engine.cfg.part_size,
        }
    }

    /// Tasks handed to the pool at most: the requests the job keeps in
    /// flight and, for small requests, as many again as half of them
    /// queued behind those, so that a worker done with one request goes on
    /// to the next without waiting for this thread to hand it one (a
    /// wake-up each: 20,000 files of 1 KiB cost 44 K context switches, 25 K
    /// with the queue; bench/NOTES.md).
    ///
    /// Not while the job drains after its limit fell: a thread done with a
    /// request takes the task queued behind it, so the threads at work
    /// never become fewer while the queue is fed. A cut from 24 to 16
    /// requests would keep 23 at work: nothing is queued behind until no
    /// more than the new limit are out.
    fn dispatch_limit(&self) -> usize {
        let limit = self.concurrency.limit();
        if self.queue_behind && !self.draining {
            limit + limit.div_ceil(2)
        } else {
            limit
        }
    }

    fn spawn(&mut self, f: usize, work: Work, data: Option<(Source, u64, u64)>) {
        let behind = self.in_flight >= self.concurrency.limit();
        self.in_flight += 1;
        let task = Task {
            file: f,
            key: self.keys[f].clone(),
            path: self.paths[f].clone(),
            work,
            data,
        };
        let ctx = self.ctx.clone();
        if behind {
            self.engine
                .pool
                .spawn_behind(move || worker::run(&ctx, task));
        } else {
            self.engine.pool.spawn(move || worker::run(&ctx, task));
        }
    }
}

//! The batch engine: a fixed pool of workers (see `pool`), one coordinator
//! thread per uploader that runs jobs one after another, and the messages
//! between them.
//!
//! Threads are the pool, the coordinator and the MD5 thread (`hasher`), for
//! the uploader's life; none is created per part or per file. The
//! coordinator is the only owner of a job's state (see `coordinator`);
//! workers get owned copies of their work and report by message (see
//! `messages`, `worker`).

mod abort;
mod coordinator;
pub(crate) mod download;
mod etag;
mod hasher;
mod messages;
mod pool;
mod probe;
mod rate;
mod resume;
mod retry;
mod worker;

use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use parking_lot::Mutex;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::job::{Halt, JobShared};
use crate::plan::FilePlan;
use crate::store::Store;

pub(crate) use abort::abort_and_verify;
pub(crate) use download::RemoteObject;
pub use download::Verification;
pub(crate) use etag::hex;

/// What an uploader's jobs share: the client, the pool, the rate limit,
/// and what `integrity=auto` learnt of each endpoint.
pub(crate) struct Engine {
    pub cfg: Config,
    pub store: Store,
    pub pool: pool::Pool,
    pub rate: Option<Arc<rate::TokenBucket>>,
    /// Per endpoint, the mode its integrity probe chose (`Crc32c` or
    /// `EtagMd5`); `None` until a probe got an answer (see `probe`).
    pub probed: Mutex<Vec<Option<crate::Integrity>>>,
    /// The MD5 thread of the `etag-md5` and `content-md5` modes and of
    /// download checks.
    pub hasher: hasher::Hasher,
}

/// A job waiting for the coordinator thread.
pub(crate) struct Queued {
    pub shared: Arc<JobShared>,
    pub plans: Vec<FilePlan>,
    pub journal: Option<crate::journal::Journal>,
    /// Where each file starts from, for a resumed job.
    pub priors: Option<Vec<coordinator::Prior>>,
}

pub(crate) use coordinator::Prior;
pub(crate) use resume::reconcile;

/// The coordinator thread and its FIFO of jobs.
pub(crate) struct Runner {
    queue: Option<Sender<Queued>>,
    thread: Option<JoinHandle<()>>,
    /// Every job submitted, so dropping the uploader can stop them.
    jobs: Mutex<Vec<Weak<JobShared>>>,
    /// Its pool's threads are joined when the last owner drops it (this
    /// one, once the coordinator is joined: worker tasks hold no
    /// `Arc<Engine>`), so no library thread outlives the uploader.
    pub engine: Arc<Engine>,
}

impl Runner {
    pub fn new(cfg: Config) -> Result<Runner> {
        cfg.validate()?;
        let store = Store::new(&cfg)?;
        let pool = pool::Pool::new(cfg.pool_size(), "batchput-worker")
            .map_err(|e| Error::internal(format!("cannot start the worker pool: {e}")))?;
        let rate = (cfg.rate_limit > 0).then(|| Arc::new(rate::TokenBucket::new(cfg.rate_limit)));
        let probed = Mutex::new(vec![None; store.endpoint_urls().len()]);
        let hasher = hasher::Hasher::new()
            .map_err(|e| Error::internal(format!("cannot start the MD5 thread: {e}")))?;
        let engine = Arc::new(Engine {
            cfg,
            store,
            pool,
            rate,
            probed,
            hasher,
        });
        let (tx, rx) = crossbeam_channel::unbounded::<Queued>();
        let e = engine.clone();
        let thread = std::thread::Builder::new()
            .name("batchput-coordinator".into())
            .spawn(move || {
                for job in rx {
                    let shared = job.shared.clone();
                    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        coordinator::Coordinator::new(
                            &e,
                            job.shared,
                            job.plans,
                            job.journal,
                            job.priors,
                        )
                        .run()
                    }));
                    if run.is_err() {
                        // A coordinator bug must still end the job visibly.
                        shared.interrupt.cancel();
                        let mut p = shared.published.lock();
                        p.progress.state = crate::JobState::Failed;
                        p.progress.error = Some(Error::internal("the coordinator panicked"));
                        drop(p);
                        shared.finished.notify_all();
                    }
                }
            })
            .map_err(|e| Error::internal(format!("cannot start the coordinator: {e}")))?;
        Ok(Runner {
            queue: Some(tx),
            thread: Some(thread),
            jobs: Mutex::new(Vec::new()),
            engine,
        })
    }

    pub fn submit(&self, job: Queued) -> Result<()> {
        let shared = job.shared.clone();
        let mut jobs = self.jobs.lock();
        jobs.retain(|j| j.strong_count() > 0);
        jobs.push(Arc::downgrade(&shared));
        drop(jobs);
        self.queue
            .as_ref()
            .expect("queue lives until drop")
            .send(job)
            .map_err(|_| Error::internal("the coordinator thread is gone"))
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        for job in self.jobs.lock().drain(..) {
            if let Some(j) = job.upgrade() {
                j.request_halt(Halt::Stop);
            }
        }
        // Closing the queue ends the coordinator's loop once the stopped
        // jobs have cleaned up.
        drop(self.queue.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

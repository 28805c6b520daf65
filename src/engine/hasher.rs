//! The uploader's MD5 thread: workers hand it byte ranges of open files and
//! go on sending or fetching; it reads the ranges back from the page cache
//! and hashes up to eight of them at once in the lanes of one register
//! (`md5_lanes`). Hashing each range on its own worker costs about 1.9 CPU
//! s/GiB here; eight at a time about a sixth of that (bench/NOTES.md).
//!
//! What is hashed is the file, read again, not the bytes a worker sent or
//! wrote: an upload's digest is compared with the ETag the server computed
//! from what it received, a download's with the object's ETag, so a match
//! still proves the bytes at both ends equal, and a file changed meanwhile
//! shows as a mismatch.
//!
//! A download's long ranges are handed over before their bytes arrive
//! ([`HashHandle::submit_as_written`]) and hashed as they are written: the
//! ranges in flight then share the lanes, where hashed once complete they
//! mostly came one at a time (4 x 256 MiB from s3s-fs: client CPU 2.0 ->
//! 1.8 s, bench/NOTES.md). A range waiting for bytes gives its lane to one
//! that can go on, and a round waits a moment for more lanes to hold bytes
//! (a round costs the same however few do).
//!
//! Small ranges in the file in full (a small object fetched, a part about
//! to be sent) come one at a time, so a round is held back a moment
//! ([`GATHER_WAIT`]) for more of them, but only while it costs nobody
//! anything: while no worker waits for one of the digests yet (an upload
//! sends its part meanwhile), or while the workers that wait know of GETs
//! in flight whose ranges will come ([`HashHandle::expect_range`]). 2,000
//! objects of 64 KiB from s3s-fs: client CPU 0.73 -> 0.57 s (bench/NOTES.md).
//!
//! One thread for the uploader's life, like the pool; it holds no job state
//! beyond the ranges in its lanes, and ends when the uploader is dropped.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use md5_lanes::LANES;

/// Bytes read into a lane at a time (a multiple of 64): the measured best
/// range was flat from 64 KiB to 1 MiB; eight lanes of this are the
/// thread's memory.
const CHUNK: usize = 128 * 1024;

/// The longest a range in the file in full waits for others to share its
/// round (see `Lanes::gather`): small files come in a stream, one every
/// few hundred microseconds here, and a round costs the same however few
/// lanes hold bytes. Tried: 0.2, 0.5, 1, 2 and 4 ms; 2 and 4 were best.
const GATHER_WAIT: Duration = Duration::from_millis(2);

/// How long the thread sleeps when every range in its lanes waits for
/// bytes still being downloaded (see [`HashHandle::submit_as_written`]).
const WRITTEN_WAIT: Duration = Duration::from_millis(1);

/// The longest the thread holds back a round while some of the lanes
/// still wait for bytes being written (see `Lanes::worth_a_round`).
const ROUND_WAIT: Duration = Duration::from_millis(4);

/// A range to hash.
struct Job {
    file: Arc<File>,
    offset: u64,
    len: u64,
    /// Bytes of the range from `offset` already in the file, when it is
    /// still being written; `None`: all of it.
    written: Option<Arc<AtomicU64>>,
    /// Whether anyone still wants, and already waits for, its digest.
    interest: Arc<Interest>,
    /// When it was handed over (a round is held back for it at most
    /// [`GATHER_WAIT`] from then).
    arrived: Instant,
    reply: ReplyTx,
}

/// The thread's answer for one range, a slot the worker sleeps on. Not a
/// channel: crossbeam's `recv` spins and calls `sched_yield` before it
/// sleeps, and on two cores shared with the server a yield can hand the
/// core away (2,000 objects of 64 KiB downloaded: 4,836 of the workers'
/// 25,054 context switches were those yields).
#[derive(Default)]
struct Reply {
    digest: Mutex<Option<io::Result<[u8; 16]>>>,
    ready: Condvar,
}

/// The thread's end of a [`Reply`]; dropped unsent (the uploader being
/// dropped), it answers that hashing was stopped.
struct ReplyTx(Arc<Reply>);

impl ReplyTx {
    /// Answers, once: a later answer (the drop's) is ignored.
    fn send(&self, digest: io::Result<[u8; 16]>) {
        let mut slot = self.0.digest.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(digest);
            // One worker waits for it.
            self.0.ready.notify_one();
        }
    }
}

impl Drop for ReplyTx {
    fn drop(&mut self) {
        self.send(Err(gone()));
    }
}

/// What the thread knows of a range's [`PendingDigest`].
struct Interest {
    /// Cleared when the [`PendingDigest`] is dropped: nobody waits for the
    /// digest any more (the task gave up, the job stopped), so the range is
    /// dropped instead of hashed.
    wanted: AtomicBool,
    /// Set when a worker begins to wait for the digest: from then on, a
    /// round held back for more ranges costs that worker time.
    waited: AtomicBool,
}

/// The thread and the way to it; dropping it ends the thread (ranges still
/// in its lanes get an error) and joins it.
pub(crate) struct Hasher {
    handle: HashHandle,
    /// Never sent on: dropping it is what tells the thread to end, even
    /// while job contexts still hold a `HashHandle`.
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// How workers reach the thread.
#[derive(Clone)]
pub(crate) struct HashHandle {
    jobs: Sender<Job>,
    /// Wakes the thread when a worker begins to wait (bounded to one: a
    /// nudge only says "look again").
    nudge: Sender<()>,
    /// Ranges announced by [`expect_range`](HashHandle::expect_range) and
    /// not handed over yet.
    upcoming: Arc<AtomicUsize>,
}

/// A digest being computed; dropping it withdraws the range.
pub(crate) struct PendingDigest {
    reply: Arc<Reply>,
    interest: Arc<Interest>,
    nudge: Sender<()>,
}

/// A range announced to the thread and not handed over yet (see
/// [`HashHandle::expect_range`]); dropping it withdraws the announcement.
pub(crate) struct UpcomingRange(Arc<AtomicUsize>);

impl Drop for UpcomingRange {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Hasher {
    pub fn new() -> io::Result<Hasher> {
        Hasher::gathering_for(GATHER_WAIT)
    }

    /// With another [`GATHER_WAIT`] (tests make it long enough to see).
    fn gathering_for(gather_wait: Duration) -> io::Result<Hasher> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let (nudge, nudged) = crossbeam_channel::bounded::<()>(1);
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let upcoming = Arc::new(AtomicUsize::new(0));
        let inbox = Inbox {
            jobs: rx,
            nudged,
            stopped,
            upcoming: upcoming.clone(),
            gather_wait,
        };
        let thread = std::thread::Builder::new()
            .name("batchput-md5".into())
            .spawn(move || Lanes::new().run(&inbox))?;
        Ok(Hasher {
            handle: HashHandle {
                jobs: tx,
                nudge,
                upcoming,
            },
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn handle(&self) -> HashHandle {
        self.handle.clone()
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl HashHandle {
    /// Starts hashing `len` bytes of `file` from `offset`.
    pub fn submit(&self, file: Arc<File>, offset: u64, len: u64) -> PendingDigest {
        self.submit_job(file, offset, len, None)
    }

    /// Starts hashing a range that is still being written, front to back:
    /// `written` says how many of its bytes from `offset` are in the file
    /// (it may only grow; bytes written again must be the same). The range
    /// is hashed as it arrives, beside the other ranges in flight, rather
    /// than alone once complete: a download's parts stream at once, so
    /// they fill the lanes.
    pub fn submit_as_written(
        &self,
        file: Arc<File>,
        offset: u64,
        len: u64,
        written: Arc<AtomicU64>,
    ) -> PendingDigest {
        self.submit_job(file, offset, len, Some(written))
    }

    /// Announces a range that will be submitted once in the file in full
    /// (a small object's GET in flight, to be hashed when it is complete):
    /// rounds of other such ranges are held back for it a moment (see
    /// [`GATHER_WAIT`]) even while their workers wait. Drop it once the
    /// range is submitted (before waiting for its digest, which tells the
    /// thread to look again), or given up.
    pub fn expect_range(&self) -> UpcomingRange {
        self.upcoming.fetch_add(1, Ordering::Relaxed);
        UpcomingRange(self.upcoming.clone())
    }

    fn submit_job(
        &self,
        file: Arc<File>,
        offset: u64,
        len: u64,
        written: Option<Arc<AtomicU64>>,
    ) -> PendingDigest {
        let reply = Arc::new(Reply::default());
        let interest = Arc::new(Interest {
            wanted: AtomicBool::new(true),
            waited: AtomicBool::new(false),
        });
        // A send fails only once the uploader is being dropped; the
        // dropped reply then tells `wait`.
        let _ = self.jobs.send(Job {
            file,
            offset,
            len,
            written,
            interest: interest.clone(),
            arrived: Instant::now(),
            reply: ReplyTx(reply.clone()),
        });
        PendingDigest {
            reply,
            interest,
            nudge: self.nudge.clone(),
        }
    }
}

/// How often [`PendingDigest::wait_unless`] looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(10);

impl PendingDigest {
    /// The MD5 of the range, or why it could not be read (a file that
    /// shrank is `UnexpectedEof`; an uploader being dropped `Interrupted`).
    /// For bytes the server or the file already holds: their record must
    /// not be lost to a stop or pause that comes meanwhile.
    pub fn wait(&self) -> io::Result<[u8; 16]> {
        self.waiting();
        let mut slot = self
            .reply
            .ready
            .wait_while(self.slot(), |digest| digest.is_none())
            .unwrap_or_else(|p| p.into_inner());
        slot.take().expect("woken with a digest")
    }

    /// [`wait`](Self::wait), or `Interrupted` soon after `stop` is set
    /// (the range stays asked for until this is dropped).
    pub fn wait_unless(&self, stop: &AtomicBool) -> io::Result<[u8; 16]> {
        self.waiting();
        let mut slot = self.slot();
        loop {
            // The stop first, as the channel this replaced did: a stopped
            // wait ends even with the digest there.
            if stop.load(Ordering::Relaxed) {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "stopped"));
            }
            if let Some(digest) = slot.take() {
                return digest;
            }
            slot = self
                .reply
                .ready
                .wait_timeout(slot, STOP_POLL)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn slot(&self) -> MutexGuard<'_, Option<io::Result<[u8; 16]>>> {
        self.reply.digest.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PendingDigest {
    /// Tells the thread, once, that a worker now waits for this digest.
    fn waiting(&self) {
        if !self.interest.waited.swap(true, Ordering::Relaxed) {
            let _ = self.nudge.try_send(());
        }
    }
}

impl Drop for PendingDigest {
    fn drop(&mut self) {
        self.interest.wanted.store(false, Ordering::Relaxed);
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, "hashing was stopped")
}

/// One range in progress in a lane.
struct Lane {
    job: Job,
    state: [u32; 4],
    /// Bytes of the range read so far.
    read: u64,
    /// `buf[used..filled]` is still to be hashed; the last fill ends with
    /// MD5's padding, so it is whole blocks.
    used: usize,
    filled: usize,
    padded: bool,
}

/// What the thread listens to.
struct Inbox {
    jobs: Receiver<Job>,
    nudged: Receiver<()>,
    /// Disconnected when the uploader drops the [`Hasher`].
    stopped: Receiver<()>,
    upcoming: Arc<AtomicUsize>,
    gather_wait: Duration,
}

struct Lanes {
    lanes: [Option<Lane>; LANES],
    bufs: Vec<Vec<u8>>,
    /// Ranges without a lane, none of their bytes in a buffer: new ones,
    /// and ones that gave their lane up while waiting for bytes still
    /// being written (their MD5 state goes with them).
    parked: VecDeque<Lane>,
}

impl Lane {
    fn new(job: Job) -> Lane {
        Lane {
            job,
            state: md5_lanes::INIT,
            read: 0,
            used: 0,
            filled: 0,
            padded: false,
        }
    }

    /// The next piece to read: its length, and whether it is in the file.
    fn next_piece(&self) -> (usize, bool) {
        let want = (self.job.len - self.read).min(CHUNK as u64) as usize;
        let written = self.job.written.as_ref().map(|w| w.load(Ordering::Acquire));
        (want, written.is_none_or(|w| w >= self.read + want as u64))
    }

    /// Bytes in its buffer to hash, or its next piece in the file.
    fn can_go_on(&self) -> bool {
        self.used < self.filled || (!self.padded && self.next_piece().1)
    }
}

impl Lanes {
    fn new() -> Lanes {
        Lanes {
            lanes: Default::default(),
            bufs: Vec::new(),
            parked: VecDeque::new(),
        }
    }

    fn run(mut self, inbox: &Inbox) {
        let (jobs, stopped) = (&inbox.jobs, &inbox.stopped);
        let mut last_round = std::time::Instant::now();
        loop {
            if self.lanes.iter().all(Option::is_none) && self.parked.is_empty() {
                crossbeam_channel::select! {
                    recv(jobs) -> job => match job {
                        Ok(job) => self.place(job),
                        Err(_) => return,
                    },
                    recv(stopped) -> _ => return,
                }
            }
            if !matches!(
                stopped.try_recv(),
                Err(crossbeam_channel::TryRecvError::Empty)
            ) {
                return;
            }
            while let Ok(job) = jobs.try_recv() {
                self.place(job);
            }
            self.seat();
            self.gather(inbox);
            self.fill();
            if self.worth_a_round(last_round.elapsed()) && self.hash() {
                last_round = std::time::Instant::now();
            } else {
                // No round now: every range here waits for bytes still
                // being written, or the round waits for more lanes to hold
                // some. A new range or a moment.
                crossbeam_channel::select! {
                    recv(jobs) -> job => match job {
                        Ok(job) => self.place(job),
                        Err(_) => return,
                    },
                    recv(stopped) -> _ => return,
                    default(WRITTEN_WAIT) => {}
                }
            }
        }
    }

    /// Whether to hash now: a round costs the same however few lanes hold
    /// bytes, so while ranges being written fill only some of the lanes,
    /// the others get a moment ([`ROUND_WAIT`]) to catch up, or until six
    /// of the eight hold bytes (four, tried first, left a big download's
    /// rounds half full: 4 x 256 MiB, 8 alternating pairs, client CPU
    /// median 2.28 -> 2.08 s with six). A range in the file in full, or a
    /// single lane, goes at once.
    fn worth_a_round(&self, since_last: Duration) -> bool {
        let occupied = self.lanes.iter().flatten().count();
        let ready = || self.lanes.iter().flatten().filter(|l| l.used < l.filled);
        let ready_count = ready().count();
        occupied <= 1
            || ready_count == occupied
            || ready_count * 4 >= LANES * 3
            || since_last >= ROUND_WAIT
            || ready().any(|l| {
                l.job
                    .written
                    .as_ref()
                    .is_none_or(|w| w.load(Ordering::Relaxed) >= l.job.len)
            })
    }

    /// Holds the next round back while only some lanes hold ranges, each
    /// in the file in full and not begun, for more such ranges to join it:
    /// at most the inbox's gather wait from the oldest one's arrival, and
    /// only while it delays nobody (no worker waits for these digests yet)
    /// or more are on their way (ranges announced, see
    /// [`HashHandle::expect_range`]). Hashed alone, a 64 KiB range costs
    /// what eight do.
    fn gather(&mut self, inbox: &Inbox) {
        loop {
            let seated = || self.lanes.iter().flatten();
            let count = seated().count();
            let all_new = seated().all(|l| l.read == 0 && l.job.written.is_none());
            if count == 0 || count == LANES || !all_new {
                return;
            }
            let waited = seated().any(|l| l.job.interest.waited.load(Ordering::Relaxed));
            if waited && inbox.upcoming.load(Ordering::Relaxed) == 0 {
                return;
            }
            let Some(left) = seated()
                .map(|l| l.job.arrived)
                .min()
                .map(|oldest| oldest + inbox.gather_wait)
                .and_then(|end| end.checked_duration_since(Instant::now()))
            else {
                return;
            };
            crossbeam_channel::select! {
                recv(inbox.jobs) -> job => match job {
                    Ok(job) => {
                        self.place(job);
                        self.seat();
                    }
                    Err(_) => return,
                },
                // A worker began to wait, or the uploader is going: look again.
                recv(inbox.nudged) -> _ => {}
                recv(inbox.stopped) -> _ => return,
                default(left) => return,
            }
        }
    }

    fn place(&mut self, job: Job) {
        if self.bufs.is_empty() {
            // Allocated at the first range, not with the uploader.
            self.bufs = (0..LANES).map(|_| vec![0u8; CHUNK + 128]).collect();
        }
        self.parked.push_back(Lane::new(job));
    }

    /// Gives the lanes to ranges that can go on: a range waiting for bytes
    /// still being written leaves its lane to a parked one that can go on
    /// (a range written in full, say), and free lanes take parked ranges,
    /// those that can go on first. Ranges nobody wants any more are
    /// dropped.
    fn seat(&mut self) {
        self.parked
            .retain(|l| l.job.interest.wanted.load(Ordering::Relaxed));
        for slot in &mut self.lanes {
            let stuck = slot.as_ref().is_some_and(|l| !l.can_go_on());
            if stuck && self.parked.iter().any(Lane::can_go_on) {
                self.parked.extend(slot.take());
            }
        }
        for slot in self.lanes.iter_mut().filter(|l| l.is_none()) {
            let next = self
                .parked
                .iter()
                .position(Lane::can_go_on)
                .or((!self.parked.is_empty()).then_some(0));
            match next {
                Some(i) => *slot = self.parked.remove(i),
                None => break,
            }
        }
    }

    /// Reads the next piece into every lane that has hashed all it held;
    /// ends the lanes nobody waits for any more or whose read failed.
    fn fill(&mut self) {
        for (slot, buf) in self.lanes.iter_mut().zip(&mut self.bufs) {
            let Some(lane) = slot else { continue };
            if !lane.job.interest.wanted.load(Ordering::Relaxed) {
                *slot = None;
                continue;
            }
            if lane.used < lane.filled {
                continue;
            }
            let (want, in_file) = lane.next_piece();
            if !in_file {
                // Not in the file yet: this lane sits out the next round.
                continue;
            }
            if let Err(e) = read_exact_at(
                &lane.job.file,
                &mut buf[..want],
                lane.job.offset + lane.read,
            ) {
                lane.job.reply.send(Err(e));
                *slot = None;
                continue;
            }
            lane.read += want as u64;
            lane.used = 0;
            lane.filled = want;
            if lane.read == lane.job.len {
                // The last piece: its tail and the padding as whole blocks.
                let whole = want / 64 * 64;
                let mut pad = [0u8; 128];
                let n = md5_lanes::final_blocks(&buf[whole..want], lane.job.len, &mut pad);
                buf[whole..whole + n].copy_from_slice(&pad[..n]);
                lane.filled = whole + n;
                lane.padded = true;
            }
        }
    }

    /// Hashes as many blocks as every lane with bytes to hash holds (a
    /// lane waiting for bytes still being written sits out), then answers
    /// the lanes that are done. `false` when no lane had any.
    fn hash(&mut self) -> bool {
        let busy: [bool; LANES] =
            std::array::from_fn(|j| self.lanes[j].as_ref().is_some_and(|l| l.used < l.filled));
        let Some(blocks) = self
            .lanes
            .iter()
            .zip(busy)
            .filter_map(|(l, b)| l.as_ref().filter(|_| b))
            .map(|l| (l.filled - l.used) / 64)
            .min()
        else {
            return false;
        };
        let mut states = [md5_lanes::INIT; LANES];
        for (j, lane) in self.lanes.iter().enumerate() {
            if let Some(l) = lane.as_ref().filter(|_| busy[j]) {
                states[j] = l.state;
            }
        }
        let data: [&[u8]; LANES] = std::array::from_fn(|j| match &self.lanes[j] {
            Some(l) if busy[j] => &self.bufs[j][l.used..],
            _ => &self.bufs[j][..],
        });
        if busy.iter().filter(|&&b| b).count() == 1 {
            // One stream alone runs faster on the scalar path than in a lane.
            let j = busy.iter().position(|&b| b).expect("one busy lane");
            let (chunks, _) = data[j][..blocks * 64].as_chunks::<64>();
            md5::block_api::compress(&mut states[j], chunks);
        } else {
            md5_lanes::compress(&mut states, data, blocks);
        }
        for ((slot, state), busy) in self.lanes.iter_mut().zip(states).zip(busy) {
            let Some(lane) = slot.as_mut().filter(|_| busy) else {
                continue;
            };
            lane.state = state;
            lane.used += blocks * 64;
            if lane.padded && lane.used == lane.filled {
                lane.job.reply.send(Ok(md5_lanes::digest(&lane.state)));
                *slot = None;
            }
        }
        true
    }
}

/// Fills `buf` from `offset`; a file that ends first has changed.
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the file ends before byte {}", offset + buf.len() as u64),
            )
        } else {
            e
        }
    })
}

#[cfg(test)]
mod tests;

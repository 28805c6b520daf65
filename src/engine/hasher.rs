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
//! One thread for the uploader's life, like the pool; it holds no job state
//! beyond the ranges in its lanes, and ends when the uploader is dropped.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use md5_lanes::LANES;

/// Bytes read into a lane at a time (a multiple of 64): the measured best
/// range was flat from 64 KiB to 1 MiB; eight lanes of this are the
/// thread's memory.
const CHUNK: usize = 128 * 1024;

/// How long a range alone waits for a second one before it is hashed on
/// its own (see `Lanes::run`).
const PAIR_WAIT: Duration = Duration::from_micros(200);

/// A range to hash.
struct Job {
    file: Arc<File>,
    offset: u64,
    len: u64,
    /// Cleared when its [`PendingDigest`] is dropped: nobody waits for the
    /// digest any more (the task gave up, the job stopped), so the range is
    /// dropped instead of hashed.
    wanted: Arc<AtomicBool>,
    reply: Sender<io::Result<[u8; 16]>>,
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
pub(crate) struct HashHandle(Sender<Job>);

/// A digest being computed; dropping it withdraws the range.
pub(crate) struct PendingDigest {
    rx: Receiver<io::Result<[u8; 16]>>,
    wanted: Arc<AtomicBool>,
}

impl Hasher {
    pub fn new() -> io::Result<Hasher> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("batchput-md5".into())
            .spawn(move || Lanes::new().run(&rx, &stopped))?;
        Ok(Hasher {
            handle: HashHandle(tx),
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
        let (reply, rx) = crossbeam_channel::bounded(1);
        let wanted = Arc::new(AtomicBool::new(true));
        // A send fails only once the uploader is being dropped; the
        // dropped reply then tells `wait`.
        let _ = self.0.send(Job {
            file,
            offset,
            len,
            wanted: wanted.clone(),
            reply,
        });
        PendingDigest { rx, wanted }
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
        self.rx.recv().unwrap_or_else(|_| Err(gone()))
    }

    /// [`wait`](Self::wait), or `Interrupted` soon after `stop` is set
    /// (the range stays asked for until this is dropped).
    pub fn wait_unless(&self, stop: &AtomicBool) -> io::Result<[u8; 16]> {
        loop {
            if stop.load(Ordering::Relaxed) {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "stopped"));
            }
            match self.rx.recv_timeout(STOP_POLL) {
                Ok(digest) => return digest,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(gone()),
            }
        }
    }
}

impl Drop for PendingDigest {
    fn drop(&mut self) {
        self.wanted.store(false, Ordering::Relaxed);
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

struct Lanes {
    lanes: [Option<Lane>; LANES],
    bufs: Vec<Vec<u8>>,
}

impl Lanes {
    fn new() -> Lanes {
        Lanes {
            lanes: Default::default(),
            bufs: Vec::new(),
        }
    }

    fn run(mut self, jobs: &Receiver<Job>, stopped: &Receiver<()>) {
        loop {
            if self.lanes.iter().all(Option::is_none) {
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
            while self.lanes.iter().any(Option::is_none) {
                match jobs.try_recv() {
                    Ok(job) => self.place(job),
                    Err(_) => break,
                }
            }
            if self.alone_and_new() {
                // Hashed alone, a range takes the scalar path, at about six
                // times a lane's cost per byte: a second range arriving
                // within moments (small files come in streams) joins it.
                if let Ok(job) = jobs.recv_timeout(PAIR_WAIT) {
                    self.place(job);
                }
            }
            self.fill();
            self.hash();
        }
    }

    /// One range in the lanes, not begun yet.
    fn alone_and_new(&self) -> bool {
        let mut busy = self.lanes.iter().flatten();
        matches!((busy.next(), busy.next()), (Some(lane), None) if lane.read == 0)
    }

    fn place(&mut self, job: Job) {
        if self.bufs.is_empty() {
            // Allocated at the first range, not with the uploader.
            self.bufs = (0..LANES).map(|_| vec![0u8; CHUNK + 128]).collect();
        }
        let free = self
            .lanes
            .iter_mut()
            .find(|l| l.is_none())
            .expect("a free lane");
        *free = Some(Lane {
            job,
            state: md5_lanes::INIT,
            read: 0,
            used: 0,
            filled: 0,
            padded: false,
        });
    }

    /// Reads the next piece into every lane that has hashed all it held;
    /// ends the lanes nobody waits for any more or whose read failed.
    fn fill(&mut self) {
        for (slot, buf) in self.lanes.iter_mut().zip(&mut self.bufs) {
            let Some(lane) = slot else { continue };
            if !lane.job.wanted.load(Ordering::Relaxed) {
                *slot = None;
                continue;
            }
            if lane.used < lane.filled {
                continue;
            }
            let want = (lane.job.len - lane.read).min(CHUNK as u64) as usize;
            if let Err(e) = read_exact_at(
                &lane.job.file,
                &mut buf[..want],
                lane.job.offset + lane.read,
            ) {
                let _ = lane.job.reply.send(Err(e));
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

    /// Hashes as many blocks as every busy lane holds, then answers the
    /// lanes that are done.
    fn hash(&mut self) {
        let busy: [bool; LANES] = std::array::from_fn(|j| self.lanes[j].is_some());
        let Some(blocks) = self
            .lanes
            .iter()
            .flatten()
            .map(|l| (l.filled - l.used) / 64)
            .min()
        else {
            return;
        };
        let mut states = [md5_lanes::INIT; LANES];
        for (state, lane) in states.iter_mut().zip(&self.lanes) {
            if let Some(l) = lane {
                *state = l.state;
            }
        }
        let data: [&[u8]; LANES] = std::array::from_fn(|j| match &self.lanes[j] {
            Some(l) => &self.bufs[j][l.used..],
            None => &self.bufs[j][..],
        });
        if busy.iter().filter(|&&b| b).count() == 1 {
            // One stream alone runs faster on the scalar path than in a lane.
            let j = busy.iter().position(|&b| b).expect("one busy lane");
            let (chunks, _) = data[j][..blocks * 64].as_chunks::<64>();
            md5::block_api::compress(&mut states[j], chunks);
        } else {
            md5_lanes::compress(&mut states, data, blocks);
        }
        for (slot, state) in self.lanes.iter_mut().zip(states) {
            let Some(lane) = slot else { continue };
            lane.state = state;
            lane.used += blocks * 64;
            if lane.padded && lane.used == lane.filled {
                let _ = lane.job.reply.send(Ok(md5_lanes::digest(&lane.state)));
                *slot = None;
            }
        }
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
mod tests {
    use std::io::Write;

    use md5::{Digest, Md5};

    use super::*;

    #[test]
    fn ranges_hashed_together_match_md5() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        f.write_all(&data).unwrap();
        let file = Arc::new(f);
        let hasher = Hasher::new().unwrap();
        let h = hasher.handle();
        // Lengths around the chunk and block edges, more ranges than lanes.
        let ranges: Vec<(u64, u64)> = [
            0u64, 1, 63, 64, 65, 119, 120, 4096, 131_072, 131_073, 262_200, 1_000_001, 2_999_999,
        ]
        .iter()
        .enumerate()
        .map(|(i, &len)| ((i as u64 * 7919) % (3_000_000 - len), len))
        .collect();
        let pending: Vec<_> = ranges
            .iter()
            .map(|&(o, l)| h.submit(file.clone(), o, l))
            .collect();
        for ((o, l), p) in ranges.iter().zip(pending) {
            let want: [u8; 16] = Md5::digest(&data[*o as usize..(*o + *l) as usize]).into();
            assert_eq!(p.wait().unwrap(), want, "range {o}+{l}");
        }
    }

    #[test]
    fn a_range_past_the_end_is_an_error_and_a_stop_ends_the_wait_only() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[7u8; 1000]).unwrap();
        let file = Arc::new(f);
        let hasher = Hasher::new().unwrap();
        let h = hasher.handle();
        let err = h.submit(file.clone(), 900, 200).wait().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let want = <[u8; 16]>::from(Md5::digest([7u8; 1000]));
        // A stop ends the wait at once; the range is still asked for, and
        // its digest comes to a wait that ignores the stop.
        let pending = h.submit(file.clone(), 0, 1000);
        let stop = AtomicBool::new(true);
        let err = pending.wait_unless(&stop).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Interrupted);
        assert_eq!(pending.wait().unwrap(), want);
        // A range nobody waits for is dropped, and the thread serves the
        // next one.
        drop(h.submit(file.clone(), 0, 1000));
        let live = AtomicBool::new(false);
        assert_eq!(h.submit(file, 0, 1000).wait_unless(&live).unwrap(), want);
        // Once the uploader drops it, the thread is gone and says so.
        drop(hasher);
        let after = h.submit(Arc::new(tempfile::tempfile().unwrap()), 0, 0);
        assert_eq!(after.wait().unwrap_err().kind(), io::ErrorKind::Interrupted);
    }
}

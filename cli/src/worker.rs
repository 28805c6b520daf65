//! `batchput worker`: takes tasks from a Redis stream through a consumer
//! group and uploads them, `--concurrency` at a time, until SIGTERM.
//!
//! ## Overview
//! The main thread reads: first the entries this consumer name still has
//! pending (a worker restarted under a fixed `--consumer` takes up what it
//! was doing), then entries abandoned by dead workers (XAUTOCLAIM, idle
//! longer than `--claim-idle`), then new ones (XREADGROUP, blocking one
//! second at a time). Each entry runs on its own thread (`runner`); a
//! heartbeat thread re-claims the entries being run (XCLAIM JUSTID,
//! min-idle 0) and renews their leases, so a long task is never taken from
//! a live worker.
//!
//! ## Shutdown
//! SIGTERM or SIGINT: no new entry is read; running tasks pause (journals
//! and uploaded parts kept, entries not acknowledged) and are handed back,
//! claimable by another worker at once; then the worker exits 0. A second
//! signal exits at once, as a kill would: nothing is lost either way.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use batchput::Config;
use clap::{ArgAction, Args};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::RedisResult;

use crate::queue::{self, QueueArgs, Redis};
use crate::runner;

#[derive(Args)]
pub struct WorkerArgs {
    /// This worker's name in the group [default: HOST-PID].
    #[arg(long, value_name = "NAME", env = "BATCHPUT_CONSUMER")]
    pub consumer: Option<String>,

    /// Where task journals are kept (<task id>.journal): storage every
    /// worker sees (NFS...), so that another worker can resume a task.
    #[arg(
        long,
        value_name = "DIR",
        env = "BATCHPUT_JOURNAL_DIR",
        required = true
    )]
    pub journal_dir: PathBuf,

    /// Tasks run at once by this worker.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,

    /// A pending task untouched this long belongs to a dead worker and is
    /// taken over (live workers renew theirs every quarter of it).
    #[arg(long, value_name = "DURATION", default_value = "60s",
          value_parser = super::parse_age)]
    pub claim_idle: Duration,

    /// Attempts of a failing task before it is dead-lettered.
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_attempts: u64,

    /// Wait before the second attempt, doubled for each later one (at
    /// most 5 minutes).
    #[arg(long, value_name = "DURATION", default_value = "10s",
          value_parser = super::parse_age)]
    pub retry_backoff: Duration,

    /// How long a finished task's completion record is kept: a duplicate
    /// of the task within that time is acknowledged, not run.
    #[arg(long, value_name = "DURATION", default_value = "7d",
          value_parser = super::parse_age)]
    pub retention: Duration,

    /// Exit (status 0) once the group has nothing left: no new entry and
    /// none pending anywhere. For batch runs; a service keeps waiting.
    #[arg(long)]
    pub drain: bool,

    /// Log more on stderr: -v info, -vv debug.
    #[arg(long, short = 'v', action = ArgAction::Count)]
    pub verbose: u8,

    #[command(flatten)]
    pub queue: QueueArgs,
    #[command(flatten)]
    pub store: crate::args::StoreArgs,
    #[command(flatten)]
    pub plan: crate::args::PlanArgs,
    #[command(flatten)]
    pub tuning: crate::args::TuningArgs,
    #[command(flatten)]
    pub objects: crate::args::ObjectArgs,
}

/// What every thread of the worker shares.
pub struct Ctx {
    pub queue: QueueArgs,
    pub consumer: String,
    pub journal_dir: PathBuf,
    /// The worker's upload options; a task's own are set over a copy.
    pub base: Config,
    pub strict_inputs: bool,
    pub claim_idle: Duration,
    pub max_attempts: u64,
    pub retry_backoff: Duration,
    pub retention: Duration,
    /// Entries being run (entry id -> task id): what the heartbeat renews.
    pub running: Mutex<HashMap<String, String>>,
}

impl Ctx {
    /// Whether SIGTERM or SIGINT asked the worker to hand its tasks back.
    pub fn stopping(&self) -> bool {
        SIGNAL.load(Ordering::SeqCst) != 0
    }

    /// The lease a task run by `entry` holds.
    pub fn lease_value(&self, entry: &str) -> String {
        format!("{} {entry}", self.consumer)
    }

    pub fn redis(&self) -> Redis {
        Redis::new(&self.queue.redis, self.queue.redis_timeout).expect("checked at start")
    }
}

static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe work: an atomic, and _exit for the second.
    if SIGNAL.swap(sig, Ordering::SeqCst) != 0 {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(128 + sig) };
    }
}

fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is "no flags, empty mask"; the
        // handler touches an atomic and calls _exit only.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The host's name and our pid: unique among live workers, and telling an
/// operator where to look.
pub fn default_consumer() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most len bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let host = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "host".into()
    };
    format!("{host}-{}", std::process::id())
}

pub fn main(args: WorkerArgs) -> ExitCode {
    let base = match super::base_config(
        &args.store,
        Some(&args.plan),
        Some(&args.tuning),
        Some(&args.objects),
    ) {
        Ok(c) => c,
        Err(m) => return super::usage_error("worker", &m),
    };
    if let Err(e) = Redis::new(&args.queue.redis, args.queue.redis_timeout) {
        return super::usage_error("worker", &e);
    }
    if let Err(e) = std::fs::create_dir_all(&args.journal_dir) {
        return super::failure(
            &format!(
                "cannot use --journal-dir {}: {}",
                args.journal_dir.display(),
                super::io_reason(&e)
            ),
            None,
        );
    }
    let ctx = Arc::new(Ctx {
        consumer: args.consumer.clone().unwrap_or_else(default_consumer),
        queue: args.queue.clone(),
        journal_dir: args.journal_dir.clone(),
        base,
        strict_inputs: args.plan.strict_inputs,
        claim_idle: args.claim_idle.max(Duration::from_millis(100)),
        max_attempts: args.max_attempts,
        retry_backoff: args.retry_backoff,
        retention: args.retention.max(Duration::from_secs(1)),
        running: Mutex::new(HashMap::new()),
    });
    catch_signals();
    runner::say(&format!(
        "worker {} reading {} (group {}) at {}, {} task{} at once",
        ctx.consumer,
        ctx.queue.stream,
        ctx.queue.group,
        queue::redacted(&ctx.queue.redis),
        args.concurrency,
        if args.concurrency == 1 { "" } else { "s" }
    ));

    let beating = Arc::new(AtomicBool::new(true));
    let heartbeat = {
        let (ctx, beating) = (ctx.clone(), beating.clone());
        std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || heartbeat_loop(&ctx, &beating))
            .expect("spawn the heartbeat thread")
    };
    let handed_back = read_loop(&ctx, args.concurrency as usize, args.drain);
    beating.store(false, Ordering::SeqCst);
    let _ = heartbeat.join();

    let mut redis = ctx.redis();
    // Leave no empty consumer behind in `queue status`; one that still
    // owns entries stays, so that they show under its name.
    let mine: RedisResult<Vec<redis::Value>> = redis.run(|c| {
        redis::cmd("XPENDING")
            .arg(&ctx.queue.stream)
            .arg(&ctx.queue.group)
            .arg("-")
            .arg("+")
            .arg(1)
            .arg(&ctx.consumer)
            .query(c)
    });
    if matches!(mine, Ok(ref v) if v.is_empty()) {
        let _: RedisResult<i64> = redis.run(|c| {
            redis::cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(&ctx.queue.stream)
                .arg(&ctx.queue.group)
                .arg(&ctx.consumer)
                .query(c)
        });
    }
    match SIGNAL.load(Ordering::SeqCst) {
        0 => runner::say(&format!("worker {}: nothing left, exiting", ctx.consumer)),
        sig => runner::say(&format!(
            "worker {}: {} received; {handed_back} task{} handed back",
            ctx.consumer,
            if sig == libc::SIGTERM {
                "SIGTERM"
            } else {
                "SIGINT"
            },
            if handed_back == 1 { "" } else { "s" }
        )),
    }
    ExitCode::SUCCESS
}

/// Reads entries and runs them until a signal (or, with `drain`, until
/// the group has nothing left); returns how many tasks were handed back.
fn read_loop(ctx: &Arc<Ctx>, concurrency: usize, drain: bool) -> usize {
    let mut redis = ctx.redis();
    let stopping = || ctx.stopping();
    let (done_tx, done_rx) = mpsc::channel::<(String, bool)>();
    let mut active: HashSet<String> = HashSet::new();
    let mut handed_back = 0;
    let mut backlog: VecDeque<StreamId> = VecDeque::new();
    let mut own_read = false;
    let mut cursor = "0-0".to_string();
    let mut trouble = Duration::from_millis(100);
    let _ = redis.persist(&stopping, |c| queue::ensure_group(c, &ctx.queue));

    loop {
        while let Ok((entry, handed)) = done_rx.try_recv() {
            active.remove(&entry);
            handed_back += handed as usize;
        }
        if ctx.stopping() {
            break;
        }
        let free = concurrency.saturating_sub(active.len());
        if free == 0 {
            if let Ok((entry, handed)) = done_rx.recv_timeout(Duration::from_millis(200)) {
                active.remove(&entry);
                handed_back += handed as usize;
            }
            continue;
        }
        let step = (|| -> RedisResult<()> {
            if !own_read {
                backlog.extend(own_pending(&mut redis, ctx)?);
                own_read = true;
            }
            if backlog.is_empty() {
                let (next, claimed) = autoclaim(&mut redis, ctx, &cursor, free)?;
                cursor = next;
                backlog.extend(claimed);
            }
            if backlog.is_empty() {
                backlog.extend(read_new(&mut redis, ctx, free)?);
            }
            Ok(())
        })();
        match step {
            Ok(()) => trouble = Duration::from_millis(100),
            Err(e) if queue::is_nogroup(&e) => {
                log::warn!(
                    "stream {} has no group {} (Redis lost its data?): creating it",
                    ctx.queue.stream,
                    ctx.queue.group
                );
                let _ = redis.persist(&stopping, |c| queue::ensure_group(c, &ctx.queue));
                continue;
            }
            Err(e) => {
                if queue::is_answer(&e) && !queue::is_transient(&e) {
                    log::error!("redis refused a read: {e}");
                }
                queue::sleep_unless(queue::jitter(trouble), &stopping);
                trouble = (trouble * 2).min(Duration::from_secs(5));
                continue;
            }
        }
        if backlog.is_empty() && drain && active.is_empty() && nothing_pending(&mut redis, ctx) {
            break;
        }
        while active.len() < concurrency {
            let Some(entry) = backlog.pop_front() else {
                break;
            };
            if active.contains(&entry.id) {
                continue;
            }
            let text: Option<String> = entry.get("task");
            active.insert(entry.id.clone());
            let (ctx, tx) = (ctx.clone(), done_tx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("task {}", entry.id))
                .spawn(move || {
                    // Whatever happens in the run, the loop hears that the
                    // slot is free (cargo's job-queue habit).
                    let mut guard = Finished {
                        tx,
                        entry: entry.id.clone(),
                        handed_back: false,
                    };
                    guard.handed_back = runner::run_entry(&ctx, &entry.id, text);
                });
            if let Err(e) = spawned {
                log::error!("cannot start a task thread: {e}");
                break;
            }
        }
    }
    // Running tasks see the signal themselves and pause; wait for them.
    while !active.is_empty() {
        match done_rx.recv() {
            Ok((entry, handed)) => {
                active.remove(&entry);
                handed_back += handed as usize;
            }
            Err(_) => break,
        }
    }
    handed_back
}

/// Tells the read loop a task thread is done, even if it panicked.
struct Finished {
    tx: mpsc::Sender<(String, bool)>,
    entry: String,
    handed_back: bool,
}

impl Drop for Finished {
    fn drop(&mut self) {
        let _ = self.tx.send((self.entry.clone(), self.handed_back));
    }
}

/// The entries this consumer name was given and never acknowledged.
fn own_pending(redis: &mut Redis, ctx: &Ctx) -> RedisResult<Vec<StreamId>> {
    let mut out = Vec::new();
    let mut after = "0".to_string();
    loop {
        let reply: Option<StreamReadReply> = redis.run(|c| {
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&ctx.queue.group)
                .arg(&ctx.consumer)
                .arg("COUNT")
                .arg(100)
                .arg("STREAMS")
                .arg(&ctx.queue.stream)
                .arg(&after)
                .query(c)
        })?;
        let ids: Vec<StreamId> = reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default();
        match ids.last() {
            None => return Ok(out),
            Some(last) => after = last.id.clone(),
        }
        out.extend(ids);
    }
}

/// Up to `count` entries idle longer than `--claim-idle`: their workers
/// are gone. Returns the cursor for the next call too.
fn autoclaim(
    redis: &mut Redis,
    ctx: &Ctx,
    cursor: &str,
    count: usize,
) -> RedisResult<(String, Vec<StreamId>)> {
    let reply: StreamAutoClaimReply = redis.run(|c| {
        redis::cmd("XAUTOCLAIM")
            .arg(&ctx.queue.stream)
            .arg(&ctx.queue.group)
            .arg(&ctx.consumer)
            .arg(ctx.claim_idle.as_millis() as u64)
            .arg(cursor)
            .arg("COUNT")
            .arg(count)
            .query(c)
    })?;
    if !reply.deleted_ids.is_empty() {
        // Trimmed away while pending: nothing left to run.
        let _: RedisResult<i64> = redis.run(|c| {
            redis::cmd("XACK")
                .arg(&ctx.queue.stream)
                .arg(&ctx.queue.group)
                .arg(&reply.deleted_ids)
                .query(c)
        });
    }
    for e in &reply.claimed {
        log::info!("claimed entry {} from a worker gone quiet", e.id);
    }
    Ok((reply.next_stream_id, reply.claimed))
}

/// New entries, waiting up to [`queue::BLOCK`] for some.
fn read_new(redis: &mut Redis, ctx: &Ctx, count: usize) -> RedisResult<Vec<StreamId>> {
    let reply: Option<StreamReadReply> = redis.run(|c| {
        redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&ctx.queue.group)
            .arg(&ctx.consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(queue::BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&ctx.queue.stream)
            .arg(">")
            .query(c)
    })?;
    Ok(reply
        .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
        .unwrap_or_default())
}

/// Whether the group has no entry pending anywhere and none unread.
fn nothing_pending(redis: &mut Redis, ctx: &Ctx) -> bool {
    let pending: RedisResult<(u64,)> = redis.run(|c| {
        redis::cmd("XPENDING")
            .arg(&ctx.queue.stream)
            .arg(&ctx.queue.group)
            .query::<Vec<redis::Value>>(c)
            .and_then(|v| match v.first() {
                Some(n) => Ok((redis::from_redis_value_ref::<u64>(n)?,)),
                None => Ok((0,)),
            })
    });
    matches!(pending, Ok((0,)))
}

/// Every quarter of `--claim-idle`, re-claims the entries being run
/// (resetting their idle time, so XAUTOCLAIM leaves them alone) and renews
/// their leases. A missed beat is tried again at the next one.
fn heartbeat_loop(ctx: &Ctx, beating: &AtomicBool) {
    let mut redis = ctx.redis();
    let every = (ctx.claim_idle / 4).clamp(Duration::from_millis(25), Duration::from_secs(15));
    let lease_ms = ctx.claim_idle.as_millis() as u64;
    let mut next = Instant::now();
    while beating.load(Ordering::SeqCst) {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(20).min(every));
            continue;
        }
        next = Instant::now() + every;
        // The lock is held through the beat: a task that leaves the set
        // (to finish or hand its entry back) is never renewed after.
        let running = ctx.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.is_empty() {
            continue;
        }
        let mut pipe = redis::pipe();
        let mut claim = redis::cmd("XCLAIM");
        claim
            .arg(&ctx.queue.stream)
            .arg(&ctx.queue.group)
            .arg(&ctx.consumer)
            .arg(0);
        for entry in running.keys() {
            claim.arg(entry);
        }
        claim.arg("JUSTID");
        pipe.add_command(claim).ignore();
        for (entry, id) in running.iter() {
            pipe.cmd("SET")
                .arg(queue::lease_key(id))
                .arg(ctx.lease_value(entry))
                .arg("PX")
                .arg(lease_ms)
                .ignore();
        }
        if let Err(e) = redis.run(|c| pipe.query::<()>(c)) {
            log::debug!("heartbeat missed: {e}");
        }
    }
}

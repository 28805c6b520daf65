//! One stream entry, from reading its task to acknowledging it: the
//! lease and completion record that keep a task from running twice, the
//! attempts and backoff, the upload itself (started, or resumed from its
//! journal), and the one log line per task.
//!
//! ## Exactly once
//! A task runs only under its lease (`SET lease NX PX claim-idle`, renewed
//! by the heartbeat) and only when it has no completion record; the
//! record, the result and the acknowledgement are written in one script
//! before the lease is let go. The journal lock is the second guard: a
//! worker that finds the journal held leaves the entry pending.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use batchput::{Batch, ErrorKind, Job, JobState, Uploader};
use redis::{RedisResult, Script};

use crate::queue::{self, Redis};
use crate::task::{self, Outcome, Poison, Source, Task};
use crate::worker::Ctx;

/// One line on stdout, timestamped (UTC): the worker's log of tasks.
pub fn say(line: &str) {
    use std::io::Write;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let _ = writeln!(std::io::stdout().lock(), "{} {line}", utc(now));
}

/// `2026-01-02T03:04:05.678Z`.
fn utc(t: Duration) -> String {
    let secs = t.as_secs();
    let days = (secs / 86_400) as i64;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    let s = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        t.subsec_millis()
    )
}

/// How one attempt ended.
enum Attempt {
    Succeeded {
        files: u64,
        bytes: u64,
    },
    /// Paused by a signal: journal and parts kept for whoever is next.
    Paused,
    /// Another process holds the journal.
    Locked(String),
    /// Retrying cannot help (the task's own options are wrong).
    Poison(String),
    Failed(String),
}

/// Runs the entry to its end; returns whether it was handed back to the
/// group unfinished (a signal paused it).
pub fn run_entry(ctx: &Ctx, entry: &str, text: Option<String>) -> bool {
    let mut redis = ctx.redis();
    let started = Instant::now();
    let task = match Task::parse(text.as_deref()) {
        Ok(t) => t,
        Err(p) => {
            poison(ctx, &mut redis, entry, &p, text.as_deref());
            return false;
        }
    };
    let id = task.id.as_str();
    let lease = ctx.lease_value(entry);
    let stopping = || ctx.stopping();
    let took: RedisResult<Option<String>> = redis.persist(&stopping, |c| {
        redis::cmd("SET")
            .arg(queue::lease_key(id))
            .arg(&lease)
            .arg("NX")
            .arg("PX")
            .arg(ctx.claim_idle.as_millis() as u64)
            .query(c)
    });
    let done: RedisResult<Option<String>> = redis.persist(&stopping, |c| {
        redis::cmd("GET").arg(queue::done_key(id)).query(c)
    });
    let (took, done) = match (took, done) {
        (Ok(t), Ok(d)) => (t.is_some(), d),
        // Redis is gone and we are stopping: the entry stays pending.
        _ => return false,
    };
    if let Some(earlier) = done {
        duplicate(ctx, &mut redis, entry, id, &lease, &earlier);
        return false;
    }
    if !took {
        let holder: Option<String> = redis
            .run(|c| redis::cmd("GET").arg(queue::lease_key(id)).query(c))
            .unwrap_or(None);
        say(&format!(
            "task {id} is being run by {} already: entry {entry} left pending, looked at again after --claim-idle",
            holder.as_deref().unwrap_or("another worker")
        ));
        return false;
    }
    set_running(ctx, entry, Some(id));
    let handed_back = attempts(ctx, &mut redis, entry, &task, started);
    set_running(ctx, entry, None);
    handed_back
}

fn set_running(ctx: &Ctx, entry: &str, id: Option<&str>) {
    let mut running = ctx.running.lock().unwrap_or_else(|e| e.into_inner());
    match id {
        Some(id) => running.insert(entry.to_string(), id.to_string()),
        None => running.remove(entry),
    };
}

/// The attempt loop, under the lease.
fn attempts(ctx: &Ctx, redis: &mut Redis, entry: &str, task: &Task, started: Instant) -> bool {
    let id = task.id.as_str();
    let lease = ctx.lease_value(entry);
    let stopping = || ctx.stopping();
    loop {
        if ctx.stopping() {
            release(ctx, redis, entry, id, true);
            say(&format!("task {id} handed back unstarted (entry {entry})"));
            return true;
        }
        let n: RedisResult<(u64,)> = redis.persist(&stopping, |c| {
            redis::pipe()
                .atomic()
                .cmd("HINCRBY")
                .arg(queue::task_key(id))
                .arg("attempts")
                .arg(1)
                .cmd("EXPIRE")
                .arg(queue::task_key(id))
                .arg(ctx.retention.as_secs())
                .ignore()
                .query(c)
        });
        let Ok((n,)) = n else { return false };
        let outcome = |state, files, bytes, error: Option<String>| Outcome {
            id: id.to_string(),
            state,
            files,
            bytes,
            error,
            worker: ctx.consumer.clone(),
            attempts: n,
            elapsed_ms: started.elapsed().as_millis() as u64,
            entry: entry.to_string(),
        };
        if n > ctx.max_attempts {
            // The last attempt ended with its worker: killed, or its host lost.
            let last: Option<String> = redis
                .run(|c| {
                    redis::cmd("HGET")
                        .arg(queue::task_key(id))
                        .arg("error")
                        .query(c)
                })
                .unwrap_or(None);
            let error = last.unwrap_or_else(|| {
                format!(
                    "a worker stopped during attempt {} (killed or host lost)",
                    n - 1
                )
            });
            let o = outcome("failed", 0, 0, Some(error.clone()));
            finish(ctx, redis, &o, &lease, Some(task));
            say(&format!(
                "task {id} dead-lettered after {} attempts: {error}",
                n - 1
            ));
            return false;
        }
        match attempt(ctx, task) {
            Attempt::Succeeded { files, bytes } => {
                let o = outcome("succeeded", files, bytes, None);
                let Some(fresh) = finish(ctx, redis, &o, &lease, None) else {
                    return false;
                };
                let path = task::journal_file(&ctx.journal_dir, id);
                let _ = std::fs::remove_file(path);
                if fresh {
                    say(&format!(
                        "task {id} succeeded: {files} file{}, {} in {} (attempt {n}, entry {entry})",
                        if files == 1 { "" } else { "s" },
                        batchput_cli::human_bytes(bytes),
                        batchput_cli::human_duration(started.elapsed()),
                    ));
                } else {
                    say(&format!(
                        "task {id} had already succeeded elsewhere: entry {entry} acknowledged"
                    ));
                }
                return false;
            }
            Attempt::Paused => {
                give_back_attempt(redis, id);
                release(ctx, redis, entry, id, true);
                say(&format!(
                    "task {id} paused and handed back (entry {entry}): its journal keeps the uploaded parts"
                ));
                return true;
            }
            Attempt::Locked(why) => {
                give_back_attempt(redis, id);
                release(ctx, redis, entry, id, false);
                say(&format!(
                    "task {id} not run: {why}; entry {entry} left pending, looked at again after --claim-idle"
                ));
                return false;
            }
            Attempt::Poison(why) => {
                let o = outcome("failed", 0, 0, Some(why.clone()));
                finish(ctx, redis, &o, &lease, Some(task));
                say(&format!("task {id} dead-lettered: {why}"));
                return false;
            }
            Attempt::Failed(why) => {
                let _: RedisResult<()> = redis.run(|c| {
                    redis::cmd("HSET")
                        .arg(queue::task_key(id))
                        .arg("error")
                        .arg(&why)
                        .query(c)
                });
                if n >= ctx.max_attempts {
                    let o = outcome("failed", 0, 0, Some(why.clone()));
                    finish(ctx, redis, &o, &lease, Some(task));
                    say(&format!(
                        "task {id} failed (attempt {n} of {}), dead-lettered: {why}",
                        ctx.max_attempts
                    ));
                    return false;
                }
                let wait = backoff(ctx.retry_backoff, n);
                say(&format!(
                    "task {id} failed (attempt {n} of {}), retrying in {}: {why}",
                    ctx.max_attempts,
                    batchput_cli::human_duration(wait)
                ));
                queue::sleep_unless(queue::jitter(wait), &stopping);
            }
        }
    }
}

/// `base` doubled for each attempt after the first, at most 5 minutes.
fn backoff(base: Duration, attempt: u64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16) as u32;
    base.saturating_mul(1 << doublings)
        .min(Duration::from_secs(300))
}

/// A paused or refused run was not a failure of the task: it does not
/// count against `--max-attempts`.
fn give_back_attempt(redis: &mut Redis, id: &str) {
    let _: RedisResult<i64> = redis.run(|c| {
        redis::cmd("HINCRBY")
            .arg(queue::task_key(id))
            .arg("attempts")
            .arg(-1)
            .query(c)
    });
}

/// Lets the task go unfinished; `now` makes its entry claimable at once
/// (a handoff), else after `--claim-idle`.
fn release(ctx: &Ctx, redis: &mut Redis, entry: &str, id: &str, now: bool) {
    set_running(ctx, entry, None);
    let idle = if now {
        ctx.claim_idle.as_millis() as u64
    } else {
        0
    };
    let _: RedisResult<i64> = redis.run(|c| {
        Script::new(queue::RELEASE)
            .key(&ctx.queue.stream)
            .key(queue::lease_key(id))
            .arg(&ctx.queue.group)
            .arg(&ctx.consumer)
            .arg(entry)
            .arg(ctx.lease_value(entry))
            .arg(idle)
            .invoke(c)
    });
}

/// Writes the outcome (and for a failure, the dead letter), acknowledges
/// the entry and lets the lease go. Some(true) when this run's result was
/// recorded, Some(false) when an earlier one was; None when Redis could
/// not be reached before a signal (the entry stays pending, and whoever
/// takes it finds the journal complete).
fn finish(
    ctx: &Ctx,
    redis: &mut Redis,
    o: &Outcome,
    lease: &str,
    dead: Option<&Task>,
) -> Option<bool> {
    set_running(ctx, &o.entry, None);
    let dead_fields = dead.map(|t| {
        task::flat_json(&[
            ("id".into(), o.id.clone()),
            ("entry".into(), o.entry.clone()),
            ("error".into(), o.error.clone().unwrap_or_default()),
            (
                "attempts".into(),
                o.attempts.min(ctx.max_attempts).to_string(),
            ),
            ("worker".into(), o.worker.clone()),
            ("task".into(), t.to_json()),
        ])
    });
    let stopping = || ctx.stopping();
    let fresh: RedisResult<i64> = redis.persist(&stopping, |c| {
        Script::new(queue::FINISH)
            .key(&ctx.queue.stream)
            .key(&ctx.queue.results)
            .key(&ctx.queue.dead)
            .key(queue::done_key(&o.id))
            .key(queue::lease_key(&o.id))
            .key(queue::task_key(&o.id))
            .arg(&ctx.queue.group)
            .arg(&o.entry)
            .arg(ctx.retention.as_secs())
            .arg(lease)
            .arg(o.to_json())
            .arg(if o.state == "succeeded" { 1 } else { 0 })
            .arg(task::flat_json(&o.fields()))
            .arg(dead_fields.clone().unwrap_or_default())
            .invoke(c)
    });
    match fresh {
        Ok(n) => Some(n == 1),
        Err(e) => {
            log::error!(
                "task {}: result not recorded ({e}); entry {} stays pending",
                o.id,
                o.entry
            );
            None
        }
    }
}

/// An entry that is not a task: dead-lettered and acknowledged at once.
fn poison(ctx: &Ctx, redis: &mut Redis, entry: &str, p: &Poison, text: Option<&str>) {
    let fields = task::flat_json(&[
        ("id".into(), p.id.clone().unwrap_or_default()),
        ("entry".into(), entry.to_string()),
        ("error".into(), p.message.clone()),
        ("attempts".into(), "0".into()),
        ("worker".into(), ctx.consumer.clone()),
        ("task".into(), text.unwrap_or_default().to_string()),
    ]);
    let stopping = || ctx.stopping();
    let r: RedisResult<i64> = redis.persist(&stopping, |c| {
        Script::new(queue::POISON)
            .key(&ctx.queue.stream)
            .key(&ctx.queue.dead)
            .arg(&ctx.queue.group)
            .arg(entry)
            .arg(&fields)
            .invoke(c)
    });
    if r.is_ok() {
        say(&format!(
            "entry {entry} dead-lettered, not a task: {}",
            p.message
        ));
    }
}

/// A task already finished: acknowledged with its earlier result.
fn duplicate(ctx: &Ctx, redis: &mut Redis, entry: &str, id: &str, lease: &str, earlier: &str) {
    let stopping = || ctx.stopping();
    let _: RedisResult<()> = redis.persist(&stopping, |c| {
        redis::pipe()
            .cmd("XACK")
            .arg(&ctx.queue.stream)
            .arg(&ctx.queue.group)
            .arg(entry)
            .ignore()
            .query(c)
    });
    // Our lease, if we took one, goes: the task is over.
    let _: RedisResult<i64> = redis.run(|c| {
        Script::new("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0")
            .key(queue::lease_key(id))
            .arg(lease)
            .invoke(c)
    });
    let by = serde_json::from_str::<serde_json::Value>(earlier)
        .ok()
        .and_then(|v| v.get("worker").and_then(|w| w.as_str()).map(str::to_string))
        .unwrap_or_else(|| "another worker".into());
    say(&format!(
        "task {id} is a duplicate of a finished task (done by {by}): entry {entry} acknowledged, nothing run"
    ));
}

/// One attempt: the upload, started or resumed, followed to its end; a
/// signal pauses it.
fn attempt(ctx: &Ctx, task: &Task) -> Attempt {
    let mut cfg = ctx.base.clone();
    let settings = task.bucket.iter().map(|b| ("bucket", b.as_str()));
    let settings = settings.chain(task.options.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    for (key, value) in settings {
        if let Err(e) = cfg.set(key, value) {
            return Attempt::Poison(e.to_string());
        }
    }
    if let Err(e) = cfg.validate() {
        return Attempt::Poison(e.to_string());
    }
    let up = match Uploader::new(cfg) {
        Ok(u) => u,
        Err(e) if e.kind() == ErrorKind::InvalidConfig => return Attempt::Poison(e.to_string()),
        Err(e) => return Attempt::Failed(e.to_string()),
    };
    let journal = task::journal_file(&ctx.journal_dir, &task.id);
    let job = match open_job(ctx, &up, task, &journal) {
        Ok(j) => j,
        Err(a) => return a,
    };
    let mut pausing = false;
    while !job.wait(Some(Duration::from_millis(200))) {
        if ctx.stopping() && !pausing {
            pausing = true;
            if job.pause().is_err() {
                job.stop();
            }
        }
    }
    let p = job.progress();
    match p.state {
        JobState::Succeeded => Attempt::Succeeded {
            files: p.files_total,
            bytes: p.bytes_total,
        },
        JobState::Paused => Attempt::Paused,
        _ => Attempt::Failed(
            p.error
                .map(|e| e.to_string())
                .unwrap_or_else(|| format!("the job ended {:?}", p.state)),
        ),
    }
}

/// Resumes the task's journal when there is one, else starts the task
/// with a new journal.
fn open_job(ctx: &Ctx, up: &Uploader, task: &Task, journal: &Path) -> Result<Job, Attempt> {
    let mut fresh_tries = 0;
    loop {
        if std::fs::symlink_metadata(journal).is_ok() {
            match up.resume(journal) {
                Ok(j) => return Ok(j),
                Err(e) if e.kind() == ErrorKind::JournalLocked => {
                    return Err(Attempt::Locked(e.to_string()))
                }
                Err(e) if e.kind() == ErrorKind::Journal && abandoned_at_birth(&e, journal) => {
                    // Its creator died before the batch was recorded, so
                    // nothing was uploaded from it: start over.
                    log::warn!("{e}: removing it");
                    let _ = std::fs::remove_file(journal);
                }
                Err(e) => return Err(Attempt::Failed(e.to_string())),
            }
        }
        let batch = match &task.source {
            Source::Files(files) => {
                let mut b = Batch::new();
                for (path, key) in files {
                    b.add(path, key);
                }
                b
            }
            Source::Dir { dir, prefix } => {
                let strict = task.strict_inputs().unwrap_or(ctx.strict_inputs);
                match Batch::from_dir_report(dir, prefix, strict) {
                    Ok((b, _)) => b,
                    Err(e) => return Err(Attempt::Failed(e.to_string())),
                }
            }
        };
        let mut batch = batch;
        batch.journal(journal);
        match up.start(&batch) {
            Ok(j) => return Ok(j),
            // Created by another process between our look and our start.
            Err(e)
                if e.kind() == ErrorKind::Journal
                    && fresh_tries == 0
                    && std::fs::symlink_metadata(journal).is_ok() =>
            {
                fresh_tries += 1;
            }
            Err(e) => return Err(Attempt::Failed(e.to_string())),
        }
    }
}

/// A journal cut before its batch was recorded, and old enough that its
/// creator is not still writing it (a creation takes milliseconds).
fn abandoned_at_birth(e: &batchput::Error, journal: &Path) -> bool {
    let message = e.to_string();
    let unrecorded = message.contains("before its batch was fully recorded")
        || message.contains("records no batch");
    let old = std::fs::symlink_metadata(journal)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > Duration::from_secs(30));
    unrecorded && old
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc() {
        assert_eq!(utc(Duration::from_millis(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            utc(Duration::from_millis(1_709_251_199_123)),
            "2024-02-29T23:59:59.123Z"
        );
    }

    #[test]
    fn backoff_doubles_to_a_ceiling() {
        let b = Duration::from_secs(10);
        assert_eq!(backoff(b, 1), b);
        assert_eq!(backoff(b, 3), Duration::from_secs(40));
        assert_eq!(backoff(b, 40), Duration::from_secs(300));
    }
}

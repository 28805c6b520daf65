//! The Redis side of the worker mode: where the queue lives (`QueueArgs`,
//! `Keys`), a connection that every command reaches through with timeouts
//! and that comes back with backoff when Redis goes away (`Redis`), and
//! the scripts that end a task atomically.
//!
//! ## Records
//! - the task stream (`--stream`) and its consumer group (`--group`);
//! - `batchput:results`, one entry per finished task (succeeded or failed);
//! - `batchput:dead`, tasks no retry can fix, with their last error;
//! - `batchput:done:<id>`, a task's completion record (its result JSON,
//!   kept `--retention`): a duplicate id is acknowledged against it;
//! - `batchput:lease:<id>`, who runs the task now (expires after
//!   `--claim-idle` unless its worker's heartbeat renews it);
//! - `batchput:task:<id>`, a hash of its attempts and last error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use redis::{Client, Connection, RedisError, RedisResult};

/// Where the queue is: shared by `worker`, `enqueue` and `queue status`.
#[derive(Args, Clone)]
#[command(next_help_heading = "Queue")]
pub struct QueueArgs {
    /// The Redis server: redis://[:PASSWORD@]HOST[:PORT][/DB], or
    /// rediss:// for TLS (checked against the system's CAs).
    #[arg(
        long,
        value_name = "URL",
        env = "BATCHPUT_REDIS",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis: String,

    /// The stream that holds the tasks.
    #[arg(long, default_value = "batchput:tasks", env = "BATCHPUT_STREAM")]
    pub stream: String,

    /// The consumer group the workers share.
    #[arg(long, default_value = "batchput", env = "BATCHPUT_GROUP")]
    pub group: String,

    /// The stream finished tasks are reported on.
    #[arg(long, value_name = "STREAM", default_value = "batchput:results")]
    pub results: String,

    /// The stream of tasks no retry can fix.
    #[arg(long, value_name = "STREAM", default_value = "batchput:dead")]
    pub dead: String,

    /// The longest any one Redis call may take (connect, send, answer).
    #[arg(long, value_name = "DURATION", default_value = "10s",
          value_parser = super::parse_age)]
    pub redis_timeout: Duration,
}

/// The names of a task's own records.
pub fn done_key(id: &str) -> String {
    format!("batchput:done:{id}")
}
pub fn lease_key(id: &str) -> String {
    format!("batchput:lease:{id}")
}
pub fn task_key(id: &str) -> String {
    format!("batchput:task:{id}")
}

/// How long a blocking read waits for new entries: short, so that a
/// signal or a claimable entry is noticed soon, and well inside the
/// connection's read timeout.
pub const BLOCK: Duration = Duration::from_secs(1);

/// Set while some connection of this process finds Redis unreachable:
/// the first one to notice says so, the first one back says that.
static DOWN: AtomicBool = AtomicBool::new(false);

/// A connection to Redis that is opened on first use, dropped after any
/// failure that is not an answer, and opened again on the next call.
pub struct Redis {
    client: Client,
    conn: Option<Connection>,
    timeout: Duration,
    down_since: Option<Instant>,
}

impl Redis {
    /// Reads the URL; connects only when first used.
    pub fn new(url: &str, timeout: Duration) -> Result<Redis, String> {
        let client = Client::open(url).map_err(|e| format!("--redis {}: {e}", redacted(url)))?;
        Ok(Redis {
            client,
            conn: None,
            timeout,
            down_since: None,
        })
    }

    fn connection(&mut self) -> RedisResult<&mut Connection> {
        if self.conn.is_none() {
            let c = self.client.get_connection_with_timeout(self.timeout)?;
            // Every answer has a bound; a blocking read's wait is added.
            c.set_read_timeout(Some(self.timeout + BLOCK))?;
            c.set_write_timeout(Some(self.timeout))?;
            self.conn = Some(c);
        }
        Ok(self.conn.as_mut().expect("just set"))
    }

    /// Runs `f` on the connection once.
    pub fn run<T>(&mut self, f: impl FnOnce(&mut Connection) -> RedisResult<T>) -> RedisResult<T> {
        let result = self.connection().and_then(f);
        match &result {
            Err(e) if is_answer(e) => {}
            Err(e) => {
                // A timed-out or broken connection may still hold a late
                // answer: never reuse it.
                self.conn = None;
                if self.down_since.is_none() {
                    self.down_since = Some(Instant::now());
                }
                if !DOWN.swap(true, Ordering::SeqCst) {
                    log::warn!("redis unreachable ({e}); retrying with backoff");
                }
            }
            Ok(_) => {
                if let Some(since) = self.down_since.take() {
                    if DOWN.swap(false, Ordering::SeqCst) {
                        log::warn!(
                            "redis reachable again after {:.1}s",
                            since.elapsed().as_secs_f64()
                        );
                    }
                }
            }
        }
        result
    }

    /// Runs `f` until Redis answers, waiting with backoff (0.1 s doubling
    /// to 5 s, jittered) while it is unreachable or still loading its
    /// data; gives up with the last error once `give_up()` says so. An
    /// error answer (a wrong type, a missing group) is returned at once.
    pub fn persist<T>(
        &mut self,
        give_up: &dyn Fn() -> bool,
        mut f: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.run(&mut f) {
                Err(e) if is_transient(&e) && !give_up() => {
                    sleep_unless(jitter(delay), give_up);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                other => return other,
            }
        }
    }
}

/// Whether Redis answered (with an error), as opposed to not answering.
pub fn is_answer(e: &RedisError) -> bool {
    e.code().is_some()
}

/// Whether trying again later may succeed: no answer, or an answer that
/// says "not now" (a restarted server loading its data, a busy script).
pub fn is_transient(e: &RedisError) -> bool {
    match e.code() {
        None => true,
        Some(code) => matches!(
            code,
            "LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "CLUSTERDOWN"
        ),
    }
}

/// Whether the error is a missing stream or group (a Redis that lost its
/// data, or a group deleted by hand): create it again.
pub fn is_nogroup(e: &RedisError) -> bool {
    e.code() == Some("NOGROUP")
}

/// The URL without its password, for messages.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// `d` plus or minus a quarter, so that workers that lost Redis together
/// do not all come back in the same millisecond.
pub fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0) as u64
        ^ (std::process::id() as u64).wrapping_mul(0x9E37_79B9);
    let quarter = d.as_millis() as u64 / 4;
    if quarter == 0 {
        return d;
    }
    let shift = nanos % (2 * quarter);
    d + Duration::from_millis(shift) - Duration::from_millis(quarter)
}

/// Sleeps `d` in small steps, returning early once `stop()` is true.
pub fn sleep_unless(d: Duration, stop: &dyn Fn() -> bool) {
    let end = Instant::now() + d;
    while !stop() {
        let now = Instant::now();
        if now >= end {
            return;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// Creates the group (and the stream) when missing, reading from the
/// stream's start: tasks added before the first worker came are not
/// skipped, and entries seen again after a lost group are acknowledged
/// against their completion records.
pub fn ensure_group(con: &mut Connection, q: &QueueArgs) -> RedisResult<()> {
    let made: RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&q.stream)
        .arg(&q.group)
        .arg("0")
        .arg("MKSTREAM")
        .query(con);
    match made {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// Ends a task in one atomic step: the completion record (for a success,
/// only if there is none yet), the result and dead letter (only if this
/// run wrote the record, or for a failure), the acknowledgement, and the
/// release of the lease if it is still ours. Returns 1 when this run's
/// result was recorded, 0 when an earlier run's already was.
///
/// KEYS: stream, results, dead, done, lease, task.
/// ARGV: group, entry, retention s, lease value, result JSON,
/// succeeded (1/0), result fields (JSON list), dead fields (JSON list or '').
pub const FINISH: &str = r#"
local fresh = 1
if ARGV[6] == '1' then
  fresh = redis.call('SET', KEYS[4], ARGV[5], 'NX', 'EX', ARGV[3]) and 1 or 0
end
if fresh == 1 then
  redis.call('XADD', KEYS[2], '*', unpack(cjson.decode(ARGV[7])))
  if ARGV[8] ~= '' then
    redis.call('XADD', KEYS[3], '*', unpack(cjson.decode(ARGV[8])))
  end
end
redis.pcall('XACK', KEYS[1], ARGV[1], ARGV[2])
if redis.call('GET', KEYS[5]) == ARGV[4] then
  redis.call('DEL', KEYS[5])
end
redis.call('DEL', KEYS[6])
return fresh
"#;

/// Dead-letters an entry that is not a readable task, and acknowledges
/// it, in one step. KEYS: stream, dead. ARGV: group, entry, dead fields.
pub const POISON: &str = r#"
redis.call('XADD', KEYS[2], '*', unpack(cjson.decode(ARGV[3])))
redis.pcall('XACK', KEYS[1], ARGV[1], ARGV[2])
return 1
"#;

/// Lets go of a task without finishing it (a pause, a journal held by
/// another process): the lease if it is still ours, and the entry made
/// claimable at once by giving it the idle time of an abandoned one.
/// KEYS: stream, lease. ARGV: group, consumer, entry, lease value, idle ms.
pub const RELEASE: &str = r#"
if redis.call('GET', KEYS[2]) == ARGV[4] then
  redis.call('DEL', KEYS[2])
end
redis.pcall('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[5], 'JUSTID')
return 1
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_hide_the_password() {
        assert_eq!(
            redacted("redis://:s3cret@db.example:6379/2"),
            "redis://***@db.example:6379/2"
        );
        assert_eq!(redacted("redis://db:6379"), "redis://db:6379");
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        for _ in 0..100 {
            let j = jitter(Duration::from_millis(400));
            assert!(j >= Duration::from_millis(300) && j < Duration::from_millis(500));
        }
    }
}

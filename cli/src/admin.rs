//! The dispatcher's and the operator's side of the queue: `batchput
//! enqueue` puts a directory or a list of files on the stream as tasks,
//! and `batchput queue status` says where the tasks are.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use redis::streams::{StreamInfoConsumersReply, StreamInfoGroupsReply};
use redis::RedisResult;
use serde_json::json;

use crate::queue::{QueueArgs, Redis};
use crate::task::{self, Source, Task};

#[derive(Args)]
pub struct EnqueueArgs {
    /// Files and directories to upload (made absolute: workers resolve
    /// them on their own hosts).
    #[arg(value_name = "PATH", required = true)]
    paths: Vec<PathBuf>,

    /// The task id [default: HOST-PID-UNIXMS]; with --split, ID-1, ID-2...
    #[arg(long)]
    id: Option<String>,

    /// Key prefix, as for `upload`.
    #[arg(long, short = 'p', default_value = "")]
    prefix: String,

    /// The bucket, when not the workers' own --bucket.
    #[arg(long, short = 'b')]
    bucket: Option<String>,

    /// An upload option for this task, by key (part_size=16MiB,
    /// meta.owner=me...); repeatable.
    #[arg(long = "option", short = 'o', value_name = "KEY=VALUE", value_parser = option)]
    options: Vec<(String, String)>,

    /// One task per N files (listed, directories walked here) rather than
    /// one task for everything.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    split: Option<u64>,

    #[command(flatten)]
    queue: QueueArgs,
}

fn option(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or("expected KEY=VALUE")?;
    task::check_option(k)?;
    Ok((k.to_string(), v.to_string()))
}

#[derive(Args)]
pub struct QueueCmdArgs {
    #[command(subcommand)]
    command: QueueCommand,
}

#[derive(Subcommand)]
enum QueueCommand {
    /// Counts: entries waiting, in progress per worker, done, dead.
    Status(StatusArgs),
}

#[derive(Args)]
struct StatusArgs {
    /// Print the counts as JSON.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    queue: QueueArgs,
}

fn connect(q: &QueueArgs, command: &str) -> Result<Redis, ExitCode> {
    Redis::new(&q.redis, q.redis_timeout).map_err(|m| super::usage_error(command, &m))
}

pub fn enqueue(args: EnqueueArgs) -> ExitCode {
    let mut redis = match connect(&args.queue, "enqueue") {
        Ok(r) => r,
        Err(code) => return code,
    };
    let id = args.id.clone().unwrap_or_else(|| {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        format!("{}-{ms}", crate::worker::default_consumer())
    });
    let mut tasks = Vec::new();
    let lone_dir = args.paths.len() == 1 && args.paths[0].is_dir() && args.split.is_none();
    if lone_dir {
        let dir = match std::fs::canonicalize(&args.paths[0]) {
            Ok(d) => d,
            Err(e) => {
                let what = format!("cannot read {}", args.paths[0].display());
                return super::failure(&format!("{what}: {}", super::io_reason(&e)), None);
            }
        };
        tasks.push(Source::Dir {
            dir,
            prefix: args.prefix.clone(),
        });
    } else {
        let (batch, _) = match super::collect(&args.paths, &args.prefix, false) {
            Ok(found) => found,
            Err(e) => return super::failure(&e.to_string(), None),
        };
        let mut files = Vec::new();
        for (path, key) in batch.files() {
            match std::fs::canonicalize(path) {
                Ok(p) => files.push((p, key.to_string())),
                Err(e) => {
                    let what = format!("cannot read {}", path.display());
                    return super::failure(&format!("{what}: {}", super::io_reason(&e)), None);
                }
            }
        }
        let per = args.split.unwrap_or(u64::MAX).min(files.len() as u64) as usize;
        for chunk in files.chunks(per.max(1)) {
            tasks.push(Source::Files(chunk.to_vec()));
        }
    }
    let many = tasks.len() > 1;
    for (i, source) in tasks.into_iter().enumerate() {
        let task = Task {
            id: if many {
                format!("{id}-{}", i + 1)
            } else {
                id.clone()
            },
            source,
            bucket: args.bucket.clone(),
            options: args.options.clone(),
        };
        if let Err(p) = Task::parse(Some(&task.to_json())) {
            return super::usage_error("enqueue", &p.message);
        }
        let added: RedisResult<String> = redis.run(|c| {
            redis::cmd("XADD")
                .arg(&args.queue.stream)
                .arg("*")
                .arg("task")
                .arg(task.to_json())
                .query(c)
        });
        match added {
            Ok(entry) => {
                let n = match &task.source {
                    Source::Files(f) => {
                        format!("{} file{}", f.len(), if f.len() == 1 { "" } else { "s" })
                    }
                    Source::Dir { dir, .. } => format!("directory {}", dir.display()),
                };
                super::say_raw(&format!(
                    "enqueued task {} ({n}) as entry {entry} on {}\n",
                    task.id, args.queue.stream
                ));
            }
            Err(e) => {
                return super::failure(&format!("cannot add to {}: {e}", args.queue.stream), None)
            }
        }
    }
    ExitCode::SUCCESS
}

pub fn queue(args: QueueCmdArgs) -> ExitCode {
    match args.command {
        QueueCommand::Status(a) => status(a),
    }
}

/// What `queue status` reports.
#[derive(Default)]
struct Status {
    entries: u64,
    waiting: Option<u64>,
    pending: u64,
    consumers: Vec<(String, u64, u64)>,
    results: u64,
    dead: u64,
    group_exists: bool,
}

fn status(args: StatusArgs) -> ExitCode {
    let q = &args.queue;
    let mut redis = match connect(q, "queue status") {
        Ok(r) => r,
        Err(code) => return code,
    };
    let read = redis.run(|c| -> RedisResult<Status> {
        let mut s = Status {
            entries: redis::cmd("XLEN").arg(&q.stream).query(c)?,
            results: redis::cmd("XLEN").arg(&q.results).query(c)?,
            dead: redis::cmd("XLEN").arg(&q.dead).query(c)?,
            ..Status::default()
        };
        if s.entries == 0 {
            let exists: bool = redis::cmd("EXISTS").arg(&q.stream).query(c)?;
            if !exists {
                return Ok(s);
            }
        }
        let groups: StreamInfoGroupsReply =
            redis::cmd("XINFO").arg("GROUPS").arg(&q.stream).query(c)?;
        let Some(g) = groups.groups.iter().find(|g| g.name == q.group) else {
            return Ok(s);
        };
        s.group_exists = true;
        s.pending = g.pending as u64;
        s.waiting = g.lag.map(|l| l as u64);
        let consumers: StreamInfoConsumersReply = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&q.stream)
            .arg(&q.group)
            .query(c)?;
        s.consumers = consumers
            .consumers
            .iter()
            .map(|c| (c.name.clone(), c.pending as u64, c.idle as u64))
            .collect();
        Ok(s)
    });
    let s = match read {
        Ok(s) => s,
        Err(e) => {
            return super::failure(
                &format!(
                    "cannot read the queue at {}: {e}",
                    crate::queue::redacted(&q.redis)
                ),
                None,
            )
        }
    };
    if args.json {
        let consumers: Vec<_> = s
            .consumers
            .iter()
            .map(|(n, p, i)| json!({"name": n, "in_progress": p, "idle_ms": i}))
            .collect();
        super::say_raw(&format!(
            "{}\n",
            json!({
                "stream": q.stream, "group": q.group, "group_exists": s.group_exists,
                "entries": s.entries, "waiting": s.waiting, "in_progress": s.pending,
                "consumers": consumers, "results": s.results, "dead": s.dead,
            })
        ));
        return ExitCode::SUCCESS;
    }
    let mut o = format!("stream {}: {} entries\n", q.stream, s.entries);
    if !s.group_exists {
        o.push_str(&format!(
            "group {}: none yet (no worker has started)\n",
            q.group
        ));
    } else {
        let waiting = s
            .waiting
            .map_or("unknown (Redis < 7)".to_string(), |w| w.to_string());
        o.push_str(&format!(
            "group {}: {waiting} waiting, {} in progress\n",
            q.group, s.pending
        ));
        for (name, pending, idle) in &s.consumers {
            o.push_str(&format!(
                "  {name}: {pending} in progress, last seen {} ago\n",
                batchput_cli::human_duration(std::time::Duration::from_millis(*idle))
            ));
        }
    }
    o.push_str(&format!(
        "finished: {} (results on {})\n",
        s.results, q.results
    ));
    o.push_str(&format!("dead: {} (on {})\n", s.dead, q.dead));
    super::say_raw(&o);
    ExitCode::SUCCESS
}

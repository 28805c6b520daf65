//! `batchput worker` as a fleet runs it: several worker processes on one
//! real redis-server (started here on a random loopback port) and one
//! real S3 server (s3s-fs, behind the fault proxy), judged by what an
//! operator checks: one succeeded result per task, the bytes on the
//! server, no open multipart upload, parts not sent twice.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "../../tests/support/mod.rs"]
mod support;

use support::proxy::{Action, Match, Proxy, Rule};
use support::{pattern, Server, MIB};

// ------------------------------------------------------------------ redis

/// A redis-server of our own; killed on drop.
struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = spawn_redis(port, dir.path());
        RedisServer { port, dir, child }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn con(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap()
    }

    /// Stops the server (saving its data, as a persistent Redis would
    /// have it), leaves it down for `down`, and starts it again.
    fn restart(&mut self, down: Duration) {
        let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").arg("SAVE").query(&mut self.con());
        self.child.wait().unwrap();
        std::thread::sleep(down);
        self.child = spawn_redis(self.port, self.dir.path());
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// The child is handed to a RedisServer, whose drop kills and waits for it.
#[allow(clippy::zombie_processes)]
fn spawn_redis(port: u16, dir: &Path) -> Child {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (Debian package redis-server; scripts/test.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    let url = format!("redis://127.0.0.1:{port}");
    loop {
        let up = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
        if up.is_ok() {
            return child;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("redis-server did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The results stream: (task id, fields) in order.
fn results(con: &mut redis::Connection) -> Vec<(String, HashMap<String, String>)> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg("batchput:results")
        .arg("-")
        .arg("+")
        .query(con)
        .unwrap();
    reply
        .ids
        .iter()
        .map(|e| {
            let fields: HashMap<String, String> = e
                .map
                .keys()
                .map(|k| (k.clone(), e.get::<String>(k).unwrap()))
                .collect();
            (fields["id"].clone(), fields)
        })
        .collect()
}

fn pending(con: &mut redis::Connection) -> u64 {
    let v: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg("batchput:tasks")
        .arg("batchput")
        .query(con)
        .unwrap();
    redis::from_redis_value_ref(&v[0]).unwrap()
}

// ----------------------------------------------------------------- workers

/// A worker process; its stdout (one line per task) is collected.
struct Worker {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Worker {
    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn batchput() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_batchput"));
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        if n.starts_with("BATCHPUT_") || n.starts_with("AWS_") || n == "RUST_LOG" {
            cmd.env_remove(&name);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

struct Fleet<'a> {
    redis: &'a RedisServer,
    server: &'a Server,
    endpoint: String,
    journals: PathBuf,
}

impl Fleet<'_> {
    fn worker(&self, name: &str, extra: &[&str]) -> Worker {
        let mut cmd = batchput();
        cmd.args(["worker", "--consumer", name, "--redis", &self.redis.url()])
            .arg("--journal-dir")
            .arg(&self.journals)
            .args([
                "--endpoint",
                &self.endpoint,
                "--bucket",
                &self.server.bucket,
            ])
            .args(["--region", &self.server.region])
            .args(["--access-key", &self.server.access_key])
            .args(["--secret-key", &self.server.secret_key])
            .args(["--part-size", "5MiB", "--multipart-threshold", "5MiB"])
            .args(["--redis-timeout", "2s"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = lines.clone();
        let tag = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                eprintln!("[{tag}] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        Worker {
            name: name.into(),
            child,
            lines,
        }
    }

    fn enqueue(&self, id: &str, dir: &Path, options: &[&str]) {
        let out = batchput()
            .args(["enqueue", "--redis", &self.redis.url(), "--id", id])
            .args(["--prefix", &format!("{id}/")])
            .args(options)
            .arg(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "enqueue {id}: {out:?}");
    }
}

/// A directory of files for one task; returns (key, bytes) of each.
fn task_files(
    root: &Path,
    id: &str,
    sizes: &[usize],
    seed: u64,
) -> (PathBuf, Vec<(String, Vec<u8>)>) {
    let dir = root.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let files = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let data = pattern(len, seed * 100 + i as u64);
            std::fs::write(dir.join(format!("f{i}")), &data).unwrap();
            (format!("{id}/f{i}"), data)
        })
        .collect();
    (dir, files)
}

fn wait_until(secs: u64, what: &str, done: impl FnMut() -> bool) {
    assert!(
        support::eventually(Duration::from_secs(secs), done),
        "timed out waiting for {what}"
    );
}

fn verify(server: &Server, objects: &[(String, Vec<u8>)]) {
    let store = server.store();
    for (key, data) in objects {
        let got = store
            .get_object(key)
            .unwrap_or_else(|e| panic!("object {key}: {e}"));
        assert!(got == *data, "bytes of {key} differ");
    }
}

/// UploadPart requests the server acknowledged, per part number, for `key`.
fn acked_parts(proxy: &Proxy, key: &str) -> Vec<u32> {
    proxy
        .log()
        .iter()
        .filter(|e| e.is_upload_part() && e.key() == key && e.status == Some(200))
        .map(|e| e.query_param("partNumber").unwrap().parse().unwrap())
        .collect()
}

fn sends_of_part(proxy: &Proxy, key: &str, part: u32) -> usize {
    proxy.count(|e| {
        e.is_upload_part()
            && e.key() == key
            && e.query_param("partNumber").as_deref() == Some(&part.to_string())
    })
}

fn puts_of(proxy: &Proxy, key: &str) -> usize {
    proxy.count(|e| e.method == "PUT" && e.key() == key && !e.is_upload_part())
}

// ------------------------------------------------------------------- tests

/// A real distributed store where installed (Garage), else s3s-fs.
fn store_server() -> Server {
    support::garage().unwrap_or_else(support::s3s)
}

#[test]
fn three_workers_run_thirty_tasks_once_each_though_one_is_killed() {
    let redis = RedisServer::start();
    let server = store_server();
    let proxy = Proxy::start(&server.endpoint);
    let data = tempfile::tempdir().unwrap();
    let fleet = Fleet {
        redis: &redis,
        server: &server,
        endpoint: proxy.endpoint(),
        journals: data.path().join("journals"),
    };
    // The slow task: 4 parts of 5 MiB, one at a time, throttled, so that
    // a kill lands between its parts.
    let (slow_dir, slow) = task_files(data.path(), "slow", &[20 * MIB], 1);
    let slow_key = slow[0].0.clone();
    proxy.add_rule(Rule::new(
        Match::method("PUT").and_path(&format!("/{slow_key}")),
        Action::Throttle {
            bytes_per_sec: 2 * MIB as u64,
        },
    ));
    let mut objects = slow.clone();
    fleet.enqueue("slow", &slow_dir, &["--option", "workers=1"]);
    let mut ids = vec!["slow".to_string()];
    for t in 1..30u64 {
        let id = format!("t{t:02}");
        let sizes: Vec<usize> = if t % 10 == 0 {
            vec![11 * MIB, 3000]
        } else {
            vec![(t as usize * 997) % 40_000, 1 + t as usize * 31]
        };
        let (dir, files) = task_files(data.path(), &id, &sizes, t + 1);
        objects.extend(files);
        fleet.enqueue(&id, &dir, &[]);
        if t == 7 {
            // A dispatcher that sent the same task twice.
            fleet.enqueue(&id, &dir, &[]);
        }
        ids.push(id);
    }
    let args = ["--concurrency", "2", "--claim-idle", "3s"];
    let mut workers: Vec<Worker> = ["w1", "w2", "w3"]
        .iter()
        .map(|n| fleet.worker(n, &args))
        .collect();

    // Kill the slow task's worker once a part of it is acknowledged.
    let mut con = redis.con();
    wait_until(60, "a part of the slow task", || {
        !acked_parts(&proxy, &slow_key).is_empty()
    });
    let holder: String = redis::cmd("GET")
        .arg("batchput:lease:slow")
        .query(&mut con)
        .unwrap();
    let victim = holder.split(' ').next().unwrap().to_string();
    let i = workers.iter().position(|w| w.name == victim).unwrap();
    let mut killed = workers.remove(i);
    killed.child.kill().unwrap(); // SIGKILL
    killed.child.wait().unwrap();
    let acked_before_kill = acked_parts(&proxy, &slow_key);
    proxy.clear_rules();

    wait_until(90, "30 results", || results(&mut con).len() >= 30);
    std::thread::sleep(Duration::from_millis(500));
    let all = results(&mut con);
    let logs: Vec<String> = workers.iter().map(Worker::log).collect();
    assert_eq!(all.len(), 30, "one result per task: {all:?}\n{logs:?}");
    for id in &ids {
        let mine: Vec<_> = all.iter().filter(|(i, _)| i == id).collect();
        assert_eq!(mine.len(), 1, "task {id} has exactly one result");
        assert_eq!(
            mine[0].1["state"], "succeeded",
            "task {id}: {:?}",
            mine[0].1
        );
    }
    let slow_result = &all.iter().find(|(i, _)| i == "slow").unwrap().1;
    assert_ne!(slow_result["worker"], victim, "another worker finished it");
    assert_eq!(slow_result["attempts"], "2");
    verify(&server, &objects);
    server.assert_no_open_uploads();
    for part in acked_before_kill {
        assert_eq!(
            sends_of_part(&proxy, &slow_key, part),
            1,
            "part {part} was acknowledged before the kill: resumed, not sent again"
        );
    }
    // The duplicate of t07 ran nothing: each of its objects was put once.
    assert_eq!(puts_of(&proxy, "t07/f0"), 1);
    assert_eq!(puts_of(&proxy, "t07/f1"), 1);
    assert!(
        logs.iter().any(
            |l| l.contains("task t07 is a duplicate") || l.contains("task t07 is being run by")
        ),
        "{logs:?}"
    );

    // A task sent again after it finished is acknowledged, not run.
    let puts = proxy.count(|e| e.method == "PUT");
    fleet.enqueue("t03", &data.path().join("t03"), &[]);
    wait_until(20, "the late duplicate acknowledged", || {
        workers
            .iter()
            .any(|w| w.log().contains("task t03 is a duplicate"))
            && pending(&mut con) == 0
    });
    assert_eq!(
        proxy.count(|e| e.method == "PUT"),
        puts,
        "nothing uploaded again"
    );
    assert_eq!(results(&mut con).len(), 30);

    let status = batchput()
        .args(["queue", "status", "--json", "--redis", &redis.url()])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["in_progress"], 0, "{status}");
    assert_eq!(status["waiting"], 0, "{status}");
    assert_eq!(status["results"], 30, "{status}");
    assert_eq!(status["dead"], 0, "{status}");
}

#[test]
fn poison_and_failing_tasks_are_dead_lettered_and_the_rest_goes_on() {
    let redis = RedisServer::start();
    let server = store_server();
    let data = tempfile::tempdir().unwrap();
    let fleet = Fleet {
        redis: &redis,
        server: &server,
        endpoint: server.endpoint.clone(),
        journals: data.path().join("journals"),
    };
    let mut con = redis.con();
    let add = |con: &mut redis::Connection, task: &str| {
        let _: String = redis::cmd("XADD")
            .arg("batchput:tasks")
            .arg("*")
            .arg("task")
            .arg(task)
            .query(con)
            .unwrap();
    };
    add(&mut con, "{not json");
    add(&mut con, r#"{"id":"empty","files":[]}"#);
    add(
        &mut con,
        r#"{"id":"gone","files":[{"path":"/nonexistent/batchput/x","key":"x"}]}"#,
    );
    let (dir, good) = task_files(data.path(), "good", &[1000, 2000], 7);
    fleet.enqueue("good", &dir, &[]);

    let args = ["--max-attempts", "2", "--retry-backoff", "100ms", "--drain"];
    let mut w = fleet.worker("w1", &args);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = w.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "--drain did not exit: {}",
            w.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(200));
    let log = w.log();

    let dead: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg("batchput:dead")
        .arg("-")
        .arg("+")
        .query(&mut con)
        .unwrap();
    let dead: Vec<(String, String, String)> = dead
        .ids
        .iter()
        .map(|e| {
            let f = |k: &str| e.get::<String>(k).unwrap_or_default();
            (f("id"), f("error"), f("attempts"))
        })
        .collect();
    assert_eq!(dead.len(), 3, "{dead:?}\n{log}");
    assert!(
        dead[0].1.starts_with("the task is not valid JSON"),
        "{dead:?}"
    );
    assert_eq!(dead[1].0, "empty");
    assert_eq!(dead[1].1, "the task names no files ('files' is empty)");
    assert_eq!(dead[2].0, "gone");
    assert!(dead[2].1.contains("/nonexistent/batchput/x"), "{dead:?}");
    assert_eq!(dead[2].2, "2", "dead after its attempts");
    assert!(
        log.contains("task gone failed (attempt 1 of 2), retrying"),
        "{log}"
    );

    let all = results(&mut con);
    let state = |id: &str| {
        all.iter()
            .find(|(i, _)| i == id)
            .map(|(_, f)| f["state"].clone())
    };
    assert_eq!(state("gone").as_deref(), Some("failed"));
    assert_eq!(state("good").as_deref(), Some("succeeded"));
    assert_eq!(pending(&mut con), 0, "every entry acknowledged");
    verify(&server, &good);
}

#[test]
fn sigterm_hands_a_running_task_to_another_worker_at_once() {
    let redis = RedisServer::start();
    let server = store_server();
    let proxy = Proxy::start(&server.endpoint);
    let data = tempfile::tempdir().unwrap();
    let fleet = Fleet {
        redis: &redis,
        server: &server,
        endpoint: proxy.endpoint(),
        journals: data.path().join("journals"),
    };
    let (dir, files) = task_files(data.path(), "big", &[15 * MIB], 3);
    let key = files[0].0.clone();
    proxy.add_rule(Rule::new(
        Match::method("PUT").and_path(&format!("/{key}")),
        Action::Throttle {
            bytes_per_sec: 2 * MIB as u64,
        },
    ));
    fleet.enqueue("big", &dir, &["--option", "workers=1"]);
    // A long --claim-idle: only the handoff can make the task move soon.
    let a = fleet.worker("a", &["--claim-idle", "60s"]);
    wait_until(60, "a part acknowledged", || {
        !acked_parts(&proxy, &key).is_empty()
    });
    // SAFETY: signalling our own child.
    unsafe { libc::kill(a.child.id() as i32, libc::SIGTERM) };
    let mut a = a;
    let started = Instant::now();
    let status = loop {
        if let Some(s) = a.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "SIGTERM: no exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        a.log().contains("task big paused and handed back"),
        "{}",
        a.log()
    );
    let acked = acked_parts(&proxy, &key);
    proxy.clear_rules();

    let b = fleet.worker("b", &["--claim-idle", "60s"]);
    let mut con = redis.con();
    wait_until(30, "the result", || !results(&mut con).is_empty());
    let all = results(&mut con);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].1["state"], "succeeded");
    assert_eq!(all[0].1["worker"], "b");
    assert_eq!(all[0].1["attempts"], "1", "a pause is not a failed attempt");
    verify(&server, &files);
    server.assert_no_open_uploads();
    for part in acked {
        assert_eq!(
            sends_of_part(&proxy, &key, part),
            1,
            "part {part} sent again"
        );
    }
    drop(b);
}

#[test]
fn workers_reconnect_after_a_redis_restart_and_finish() {
    let mut redis = RedisServer::start();
    let server = store_server();
    let proxy = Proxy::start(&server.endpoint);
    let data = tempfile::tempdir().unwrap();
    let mut objects = Vec::new();
    // Slow enough that the restart lands while tasks run.
    proxy.add_rule(Rule::new(
        Match::method("PUT"),
        Action::Throttle {
            bytes_per_sec: 400_000,
        },
    ));
    let fleet = Fleet {
        redis: &redis,
        server: &server,
        endpoint: proxy.endpoint(),
        journals: data.path().join("journals"),
    };
    let mut ids = Vec::new();
    for t in 0..8u64 {
        let id = format!("r{t}");
        let (dir, files) = task_files(data.path(), &id, &[200_000], 40 + t);
        objects.extend(files);
        fleet.enqueue(&id, &dir, &[]);
        ids.push(id);
    }
    let args = ["--claim-idle", "5s"];
    let workers = [fleet.worker("w1", &args), fleet.worker("w2", &args)];
    let url = redis.url();
    drop(fleet);
    let mut con = redis.con();
    wait_until(30, "a first result", || !results(&mut con).is_empty());
    redis.restart(Duration::from_secs(2));
    let fleet = Fleet {
        redis: &redis,
        server: &server,
        endpoint: proxy.endpoint(),
        journals: data.path().join("journals"),
    };
    // Tasks added after the restart are taken too.
    for t in 8..10u64 {
        let id = format!("r{t}");
        let (dir, files) = task_files(data.path(), &id, &[100_000], 40 + t);
        objects.extend(files);
        fleet.enqueue(&id, &dir, &[]);
        ids.push(id);
    }
    let mut con = redis.con();
    wait_until(60, "10 results", || results(&mut con).len() >= 10);
    std::thread::sleep(Duration::from_millis(300));
    let all = results(&mut con);
    let logs: Vec<String> = workers.iter().map(Worker::log).collect();
    assert_eq!(all.len(), 10, "{all:?}\n{logs:?}");
    for id in &ids {
        let n = all
            .iter()
            .filter(|(i, f)| i == id && f["state"] == "succeeded")
            .count();
        assert_eq!(n, 1, "task {id}: {all:?}");
    }
    assert_eq!(pending(&mut con), 0);
    verify(&server, &objects);
    server.assert_no_open_uploads();
    assert_eq!(url, redis.url());
}

/// The README's scaling figures (bench/worker.sh runs it): one fixed task
/// set, uploaded by 1, 2 and 3 worker processes in turn, each run on a
/// fresh queue and bucket; prints the wall time and throughput of each.
#[test]
#[ignore = "a measurement, not a check: bench/worker.sh"]
fn throughput_with_one_two_and_three_workers() {
    let data = tempfile::tempdir().unwrap();
    let tasks: u64 = std::env::var("BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let mut dirs = Vec::new();
    let mut bytes = 0;
    for t in 0..tasks {
        let id = format!("b{t:03}");
        let sizes = [MIB, MIB, MIB, 6 * MIB];
        bytes += sizes.iter().sum::<usize>();
        dirs.push((id.clone(), task_files(data.path(), &id, &sizes, t).0));
    }
    for n in 1..=3 {
        let redis = RedisServer::start();
        let server = support::s3s();
        let fleet = Fleet {
            redis: &redis,
            server: &server,
            endpoint: server.endpoint.clone(),
            journals: data.path().join(format!("journals-{n}")),
        };
        for (id, dir) in &dirs {
            fleet.enqueue(id, dir, &[]);
        }
        let started = Instant::now();
        let mut workers: Vec<Worker> = (0..n)
            .map(|i| fleet.worker(&format!("w{i}"), &["--drain", "--workers", "4"]))
            .collect();
        for w in &mut workers {
            assert!(w.child.wait().unwrap().success());
        }
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(results(&mut redis.con()).len() as u64, tasks);
        println!(
            "{n} worker{}: {tasks} tasks, {} MiB in {secs:.2} s = {:.1} MiB/s",
            if n == 1 { "" } else { "s" },
            bytes / MIB,
            bytes as f64 / MIB as f64 / secs
        );
    }
}

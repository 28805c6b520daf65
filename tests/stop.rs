//! Stop, failure and cleanup against servers that hang, freeze, hold their
//! answers back or answer slowly: every end is bounded in time, and the
//! report says what the server holds.
//!
//! The time bounds asserted here are correctness properties with generous
//! margins for a loaded 2-core machine, not benchmarks.

use std::time::{Duration, Instant};

use batchput::{Config, ErrorKind, FileState, Integrity, JobState, Uploader};

use crate::support::proxy::{Action, Match, Proxy, Rule};
use crate::support::{self, finish, make_files, small_parts, specs, MIB};

/// Stops `job`, waits for its end and checks it came within `bound`.
fn stop_within(job: &batchput::Job, bound: Duration) -> batchput::Progress {
    let stopped = Instant::now();
    job.stop();
    let p = finish(job, 30);
    let took = stopped.elapsed();
    assert!(took < bound, "stop took {took:?}");
    assert_eq!(p.state, JobState::Stopped);
    p
}

/// Waits until the proxy has seen `n` requests that pass `filter`.
fn wait_for_requests(proxy: &Proxy, n: usize, filter: impl Fn(&support::proxy::Entry) -> bool) {
    assert!(
        proxy.wait_for(Duration::from_secs(30), |log| log
            .iter()
            .filter(|e| filter(e))
            .count()
            >= n),
        "the proxy never saw {n} such requests: {:?}",
        proxy.log()
    );
}

#[test]
fn stop_cuts_off_requests_that_never_answer() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    // Every part is swallowed and never answered, with the default 30 s
    // request timeout: only the stop can end these requests.
    proxy.add_rule(Rule::new(Match::file_parts(), Action::BlackHole));
    let files = make_files(&specs(&[("hung/a", 12 * MIB), ("hung/b", 12 * MIB)]));
    let up = Uploader::new(small_parts(server.config_via(&proxy.endpoint())).workers(6)).unwrap();
    let job = up.start(&files.batch()).unwrap();
    wait_for_requests(&proxy, 6, |e| e.is_file_part());
    // Let the bodies go out: the workers now wait for answers.
    std::thread::sleep(Duration::from_millis(300));

    stop_within(&job, Duration::from_secs(5));
    for f in job.files() {
        assert_eq!(f.state, FileState::Aborted, "{}: {:?}", f.key, f.error);
        assert_eq!(f.upload_id, None);
    }
    server.assert_no_open_uploads();
    files.assert_absent(&server.store(), 0);

    let freed = Instant::now();
    drop(job);
    drop(up);
    let took = freed.elapsed();
    assert!(took < Duration::from_secs(3), "freeing took {took:?}");
}

#[test]
fn a_frozen_server_ends_the_job_within_the_cleanup_budget() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    let files = make_files(&specs(&[("frozen/a", 20 * MIB), ("frozen/b", 20 * MIB)]));
    let up = Uploader::new(
        small_parts(server.config_via(&proxy.endpoint()))
            .workers(2)
            .stall_timeout(Duration::from_secs(2))
            .cleanup_timeout(Duration::from_secs(3)),
    )
    .unwrap();
    // Slow parts, so the freeze finds uploads open.
    proxy.add_rule(Rule::new(
        Match::file_parts(),
        Action::Throttle {
            bytes_per_sec: 4 * MIB as u64,
        },
    ));
    let job = up.start(&files.batch()).unwrap();
    wait_for_requests(&proxy, 2, |e| {
        e.is_create_upload() && !e.is_probe() && e.status == Some(200)
    });
    wait_for_requests(&proxy, 1, |e| e.is_file_part());
    // SIGSTOP, as far as the client can tell: nothing moves either way,
    // new connections included.
    proxy.freeze(true);
    let frozen = Instant::now();
    let p = finish(&job, 60);
    let took = frozen.elapsed();
    // Stall (2 s) + cleanup budget (3 s) + 2 s, with room for a slow CI.
    assert!(
        took < Duration::from_secs(12),
        "the job ended {took:?} after the freeze"
    );
    assert_eq!(p.state, JobState::Failed);
    let error = p.error.unwrap();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    let reports = job.files();
    let open: Vec<_> = reports
        .iter()
        .filter(|f| f.state == FileState::AbortFailed)
        .collect();
    assert!(!open.is_empty(), "{reports:?}");
    for f in &open {
        // The id is in the report and in the job's error, never "aborted".
        let id = f
            .upload_id
            .as_deref()
            .expect("an AbortFailed file names its upload");
        assert!(error.to_string().contains(id), "{error}");
    }

    // Thawed, the server works through what was queued while it was frozen
    // (the cleanup's own aborts among it): each reported upload is either
    // still open, or gone by those late aborts. The janitor's abort settles
    // it either way, and then nothing is left.
    proxy.freeze(false);
    // Let the queued requests reach the server first: a part stored after
    // the janitor's abort would stay behind on s3s-fs (seen once under a
    // loaded machine).
    std::thread::sleep(Duration::from_secs(1));
    let store = server.store();
    for f in &open {
        let id = f.upload_id.as_deref().unwrap();
        match store.abort_multipart_upload(&f.key, id, 0) {
            Ok(()) => {}
            // Already aborted (s3s-fs says 403 for an upload it no longer knows).
            Err(e) if matches!(e.code(), Some("NoSuchUpload") | Some("AccessDenied")) => {}
            Err(e) => panic!("upload {id} of {}: {e}", f.key),
        }
    }
    server.assert_no_open_uploads();
}

#[test]
fn a_stop_while_answers_are_held_reports_the_objects_the_server_made() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    // The server stores each object at once, its answer comes 10 s later.
    proxy.add_rule(Rule::new(
        Match::method("PUT"),
        Action::HoldAnswer(Duration::from_secs(10)),
    ));
    let files = make_files(&specs(&[
        ("held/a", 300_000),
        ("held/b", 200_000),
        ("held/c", 100_000),
    ]));
    // An explicit mode: the integrity probe's parts would be held too.
    let cfg = server.config_via(&proxy.endpoint()).workers(3);
    let up = Uploader::new(cfg.integrity(Integrity::EtagMd5)).unwrap();
    let job = up.start(&files.batch()).unwrap();
    wait_for_requests(&proxy, 3, |e| e.method == "PUT" && e.body_len > 0);
    // Whole bodies in, and a moment for the server to act on them.
    assert!(proxy.wait_for(Duration::from_secs(10), |log| log
        .iter()
        .filter(|e| e.method == "PUT")
        .all(|e| files.items.iter().any(
            |(_, k, len, _)| e.path.ends_with(k.as_str()) && e.body_len == *len as u64
        ))));
    std::thread::sleep(Duration::from_millis(500));

    let p = stop_within(&job, Duration::from_secs(8));
    let store = server.store();
    for (i, f) in job.files().iter().enumerate() {
        // The report is what the server holds: the objects exist.
        assert_eq!(f.state, FileState::Completed, "{}: {:?}", f.key, f.error);
        files.verify(&store, i);
        assert_eq!(
            f.etag.as_deref(),
            Some(support::md5_hex(&support::pattern(files.items[i].2, files.items[i].3)).as_str())
        );
    }
    assert_eq!(p.files_done, 3);
}

#[test]
fn a_stop_amid_many_small_files_reports_each_as_the_server_holds_it() {
    // Small files: the engine queues tasks behind the requests in flight.
    // Every answer comes 300 ms after the server stored the object.
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    proxy.add_rule(Rule::new(
        Match::method("PUT").and_path("/many/"),
        Action::HoldAnswer(Duration::from_millis(300)),
    ));
    let list: Vec<(String, usize)> = (0..200)
        .map(|i| (format!("many/{i:03}"), 1000 + i))
        .collect();
    let files = make_files(&list);
    let cfg = server.config_via(&proxy.endpoint()).workers(4);
    let up = Uploader::new(cfg.integrity(Integrity::EtagMd5)).unwrap();
    let job = up.start(&files.batch()).unwrap();
    wait_for_requests(&proxy, 12, |e| {
        e.path.contains("/many/") && e.finished.is_some()
    });

    let p = stop_within(&job, Duration::from_secs(8));
    let store = server.store();
    let reports = job.files();
    let mut completed = 0;
    for (i, f) in reports.iter().enumerate() {
        match f.state {
            FileState::Completed => {
                files.verify(&store, i);
                completed += 1;
            }
            // Queued or cut off: nothing of it on the server.
            FileState::Aborted | FileState::NotStarted => files.assert_absent(&store, i),
            other => panic!("{} ended {other:?}: {:?}", f.key, f.error),
        }
    }
    assert!(completed >= 12, "{completed} completed");
    assert_eq!(p.files_done, completed);
    // Files start as workers free up, not all at once.
    assert_eq!(reports[199].state, FileState::NotStarted);
    assert_eq!(proxy.count(|e| e.key() == "many/199"), 0);
    server.assert_no_open_uploads();
}

#[test]
fn a_complete_slower_than_the_request_timeout_is_waited_for() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    // Assembling takes 3 s; the request timeout is 2 s, and Complete's own
    // timeout is 2 s + 250 ms per part (4 parts: 3 s + the margin of the
    // first byte).
    proxy.add_rule(Rule::new(
        Match::method("POST").and_query("uploadId="),
        Action::HoldAnswer(Duration::from_millis(2_500)),
    ));
    let files = make_files(&specs(&[("slow/complete", 18 * MIB)]));
    let up = Uploader::new(
        small_parts(server.config_via(&proxy.endpoint())).request_timeout(Duration::from_secs(2)),
    )
    .unwrap();
    let job = up.start(&files.batch()).unwrap();
    let p = finish(&job, 60);
    assert_eq!(p.state, JobState::Succeeded, "{:?}", p.error);
    assert_eq!(
        proxy.count(|e| e.is_complete()),
        1,
        "Complete was not retried"
    );
    files.verify_all(&server.store());
    server.assert_no_open_uploads();
}

#[test]
fn a_complete_whose_answer_is_lost_is_checked_not_reported_as_denied() {
    for server in support::fast_servers() {
        let proxy = Proxy::start(&server.endpoint);
        // The server completes the upload; the answer never arrives. The
        // retry must find the object instead of taking the 403/404 for the
        // now unknown upload as the verdict.
        proxy.add_rule(
            Rule::new(
                Match::method("POST").and_query("uploadId="),
                Action::SwallowAnswer,
            )
            .times(1),
        );
        let files = make_files(&specs(&[("lost/complete", 11 * MIB)]));
        let up = Uploader::new(
            small_parts(server.config_via(&proxy.endpoint()))
                .request_timeout(Duration::from_secs(1)),
        )
        .unwrap();
        let job = up.start(&files.batch()).unwrap();
        let p = finish(&job, 60);
        server.assert_succeeded(&p);
        assert_eq!(job.files()[0].state, FileState::Completed);
        files.verify_all(&server.store());
        server.assert_no_open_uploads();
    }
}

#[test]
fn a_stop_during_an_unanswered_complete_reports_the_completed_object() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    proxy.add_rule(Rule::new(
        Match::method("POST").and_query("uploadId="),
        Action::SwallowAnswer,
    ));
    let files = make_files(&specs(&[("racing/complete", 11 * MIB)]));
    let up = Uploader::new(small_parts(server.config_via(&proxy.endpoint()))).unwrap();
    let job = up.start(&files.batch()).unwrap();
    // The server has completed it (the swallowed answer is logged).
    wait_for_requests(&proxy, 1, |e| e.is_complete() && e.status == Some(200));
    stop_within(&job, Duration::from_secs(8));
    let f = &job.files()[0];
    assert_eq!(f.state, FileState::Completed, "{:?}", f.error);
    assert_eq!(
        f.etag.as_deref(),
        Some(
            support::multipart_etag(
                &support::pattern(files.items[0].2, files.items[0].3),
                5 * MIB
            )
            .as_str()
        )
    );
    files.verify_all(&server.store());
    server.assert_no_open_uploads();
}

#[test]
fn a_stop_while_connecting_to_a_server_that_never_accepts_is_prompt() {
    // A listener that never accepts, with its backlog full: connects hang
    // in SYN_SENT (or complete into a queue nobody reads).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let files = make_files(&specs(&[("nobody/a", 1000), ("nobody/b", 1000)]));
    let up = Uploader::new(
        Config::new()
            .endpoint(&endpoint)
            .bucket("nobody")
            .credentials("AK", "SK")
            .connect_timeout(Duration::from_secs(30))
            .cleanup_timeout(Duration::from_secs(2)),
    )
    .unwrap();
    let job = up.start(&files.batch()).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    stop_within(&job, Duration::from_secs(5));
    for f in job.files() {
        // Nothing could have reached a server that never read a byte, but
        // the requests were sent into its queue: the report must not claim
        // more than it knows.
        assert!(
            matches!(
                f.state,
                FileState::Aborted | FileState::Unknown | FileState::NotStarted
            ),
            "{}: {:?}",
            f.key,
            f.state
        );
    }
    drop(listener);
}

/// The library's threads, by name, in this process.
fn library_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .filter(|n| n.starts_with("batchput"))
        .collect()
}

#[test]
#[ignore = "run by no_library_thread_outlives_the_uploader in a child process"]
fn threads_child() {
    let Ok(endpoint) = std::env::var("BP_CHILD_ENDPOINT") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big");
    std::fs::write(&path, support::pattern(12 * MIB, 7)).unwrap();
    let up = Uploader::new(
        small_parts(
            Config::new()
                .endpoint(&endpoint)
                .bucket(&std::env::var("BP_CHILD_BUCKET").unwrap())
                .credentials(support::S3S_ACCESS_KEY, support::S3S_SECRET_KEY),
        )
        .workers(4),
    )
    .unwrap();
    let mut batch = batchput::Batch::new();
    batch.add(&path, "threads/big");
    let job = up.start(&batch).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(!library_threads().is_empty());
    let freed = Instant::now();
    drop(job);
    drop(up);
    assert!(
        freed.elapsed() < Duration::from_secs(3),
        "{:?}",
        freed.elapsed()
    );
    // Every thread was joined: it ran no more of our code. A joined thread
    // can still be listed in /proc for a moment while the kernel reaps it.
    let reaped = Instant::now();
    let mut left = library_threads();
    while !left.is_empty() && reaped.elapsed() < Duration::from_millis(500) {
        std::thread::sleep(Duration::from_millis(10));
        left = library_threads();
    }
    assert!(left.is_empty(), "threads still running: {left:?}");
    println!("BP_CHILD_OK");
}

#[test]
fn no_library_thread_outlives_the_uploader() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    // Hung parts: freeing the uploader must cut them, not wait them out.
    proxy.add_rule(Rule::new(Match::file_parts(), Action::BlackHole));
    // Alone in a process, so no other test's threads are counted.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "stop::threads_child", "--nocapture"])
        .env("BP_CHILD_ENDPOINT", proxy.endpoint())
        .env("BP_CHILD_BUCKET", &server.bucket)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("BP_CHILD_OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.assert_no_open_uploads();
}

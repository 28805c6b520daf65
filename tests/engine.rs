//! The batch engine against real servers, with faults injected by the
//! proxy: concurrency, sizes, retries, fail-fast cleanup, stop, stall,
//! resource bounds, changing files, job order, bad input.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use batchput::{Batch, Config, ErrorKind, FileState, Integrity, JobState, Uploader};

use crate::support::proxy::{peak_in_flight, Action, Match, Proxy, Rule};
use crate::support::{
    self, finish, make_files, md5_hex, multipart_etag, pattern, small_parts, specs, Kind, MIB,
};

/// A batch of (path, key) pairs.
fn batch_of<K: AsRef<str>>(files: &[(&std::path::PathBuf, K)]) -> Batch {
    let mut b = Batch::new();
    for (path, key) in files {
        b.add(*path, key.as_ref());
    }
    b
}

#[test]
fn every_part_of_every_file_is_in_flight_at_once() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    // Hold each part a moment so all 50 are seen in flight together.
    proxy.add_rule(Rule::new(
        Match::file_parts(),
        Action::Delay(Duration::from_millis(500)),
    ));
    let files = make_files(&specs(&[
        ("fifty/a", 50 * MIB),
        ("fifty/b", 50 * MIB),
        ("fifty/c", 50 * MIB),
        ("fifty/d", 50 * MIB),
        ("fifty/e", 50 * MIB),
    ]));
    let up = Uploader::new(
        small_parts(server.config_via(&proxy.endpoint()))
            .workers(50)
            .integrity(Integrity::None),
    )
    .unwrap();
    let job = up.start(&files.batch()).unwrap();
    let p = finish(&job, 120);
    assert_eq!(p.state, JobState::Succeeded, "{:?}", p.error);
    let log = proxy.log();
    assert_eq!(log.iter().filter(|e| e.is_upload_part()).count(), 50);
    assert_eq!(peak_in_flight(&log, |e| e.is_upload_part()), 50);
    files.verify_all(&server.store());
    server.assert_no_open_uploads();
}

#[test]
fn two_thousand_small_files_round_trip() {
    let server = support::s3s();
    let list: Vec<(String, usize)> = (0..2000)
        .map(|i| (format!("small/{i:04}.bin"), 1 + (i * 37) % 4096))
        .collect();
    let files = make_files(&list);
    let up = Uploader::new(server.config().workers(16)).unwrap();
    let job = up.start(&files.batch()).unwrap();
    let p = finish(&job, 120);
    assert_eq!(p.state, JobState::Succeeded, "{:?}", p.error);
    assert_eq!(p.files_done, 2000);
    assert_eq!(p.parts_done, 2000);
    assert_eq!(p.bytes_done, p.bytes_total);
    for (i, r) in job.files().iter().enumerate() {
        assert_eq!(r.state, FileState::Completed);
        let (_, _, len, seed) = files.items[i];
        assert_eq!(
            r.etag.as_deref(),
            Some(md5_hex(&pattern(len, seed)).as_str())
        );
    }
    files.verify_all(&server.store());
}

#[test]
fn sizes_at_the_edges_round_trip() {
    for server in support::servers() {
        // moto keeps everything in memory and is slow: smaller big files there.
        // Several parts per file and more parts than workers either way.
        let big = if server.kind == Kind::Moto {
            12 * MIB
        } else {
            16 * MIB
        };
        let files = make_files(&specs(&[
            ("edge/big-1", big),
            ("edge/big-2", big + 1),
            ("edge/big-3", big - 1),
            ("edge/empty", 0),
            ("edge/one-byte", 1),
            ("edge/at-threshold", 5 * MIB),
            ("edge/below-threshold", 5 * MIB - 1),
            ("edge/short-last-part", 10 * MIB + 3),
        ]));
        let up = Uploader::new(small_parts(server.config()).workers(8)).unwrap();
        let job = up.start(&files.batch()).unwrap();
        let p = finish(&job, 300);
        server.assert_succeeded(&p);
        assert_eq!(p.bytes_done, p.bytes_total);
        assert_eq!(p.parts_done, p.parts_total);
        files.verify_all(&server.store());
        let reports = job.files();
        for (i, (_, key, len, seed)) in files.items.iter().enumerate() {
            let data = pattern(*len, *seed);
            let expected = if *len >= 5 * MIB {
                multipart_etag(&data, 5 * MIB)
            } else {
                md5_hex(&data)
            };
            assert_eq!(reports[i].etag.as_deref(), Some(expected.as_str()), "{key}");
            assert_eq!(reports[i].bytes_done, *len as u64);
        }
        server.assert_no_open_uploads();
    }
}

#[test]
fn checksummed_modes_round_trip() {
    for server in support::servers() {
        for integrity in [Integrity::ContentMd5, Integrity::Crc32c, Integrity::None] {
            let files = make_files(&specs(&[("ck/big", 11 * MIB), ("ck/small", 1000)]));
            let up = Uploader::new(small_parts(server.config()).integrity(integrity)).unwrap();
            let job = up.start(&files.batch()).unwrap();
            let p = finish(&job, 120);
            assert_eq!(
                p.state,
                JobState::Succeeded,
                "{:?} {integrity:?}: {:?}",
                server.kind,
                p.error
            );
            files.verify_all(&server.store());
        }
    }
}

#[test]
fn a_connection_cut_mid_part_is_retried() {
    for server in support::fast_servers() {
        let proxy = Proxy::start(&server.endpoint);
        proxy.add_rule(Rule::new(Match::part(2), Action::CutAfter { bytes: MIB as u64 }).times(1));
        let files = make_files(&specs(&[("cut/file", 12 * MIB)]));
        let up = Uploader::new(small_parts(server.config_via(&proxy.endpoint()))).unwrap();
        let job = up.start(&files.batch()).unwrap();
        let p = finish(&job, 60);
        assert_eq!(p.state, JobState::Succeeded, "{:?}", p.error);
        let part2 = proxy
            .count(|e| e.is_file_part() && e.query_param("partNumber").as_deref() == Some("2"));
        assert_eq!(part2, 2, "part 2 was cut once and sent again");
        files.verify_all(&server.store());
    }
}

#[test]
fn a_part_failing_every_attempt_fails_the_job_and_cleans_up() {
    for server in support::servers() {
        let proxy = Proxy::start(&server.endpoint);
        proxy.add_rule(Rule::new(
            Match::part(2),
            Action::respond(500, "InternalError", "injected failure"),
        ));
        // Slow the later files down, so that the failure, not their
        // speed, decides how many of them start.
        proxy.add_rule(Rule::new(
            Match::path("ff/later-"),
            Action::Delay(Duration::from_millis(100)),
        ));
        let mut list = vec![
            ("ff/first-small".to_string(), 1000),
            ("ff/big".to_string(), 12 * MIB),
        ];
        list.extend((0..200).map(|i| (format!("ff/later-{i:03}"), 1000)));
        let files = make_files(&list);
        let up = Uploader::new(
            small_parts(server.config_via(&proxy.endpoint()))
                .workers(2)
                .retries(3),
        )
        .unwrap();
        let job = up.start(&files.batch()).unwrap();
        let p = finish(&job, 60);
        assert_eq!(p.state, JobState::Failed);
        let e = p.error.expect("the error is reported");
        assert_eq!(e.key(), Some("ff/big"), "{e}");
        assert_eq!(e.part(), Some(2), "{e}");
        assert_eq!(e.status(), Some(500), "{e}");
        assert_eq!(e.code(), Some("InternalError"), "{e}");
        assert_eq!(e.attempts(), Some(3), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("'ff/big' part 2") && msg.contains("injected failure"),
            "{msg}"
        );
        assert_eq!(
            proxy
                .count(|x| x.is_file_part() && x.query_param("partNumber").as_deref() == Some("2")),
            3,
            "three attempts, no more"
        );

        let store = server.store();
        let reports = job.files();
        assert_eq!(reports[1].state, FileState::Failed);
        assert_eq!(p.files_failed, 1);
        for (i, r) in reports.iter().enumerate() {
            match r.state {
                FileState::Completed => files.verify(&store, i),
                FileState::NotStarted | FileState::Aborted | FileState::Failed => {
                    files.assert_absent(&store, i)
                }
                other => panic!("{} ended {other:?}", r.key),
            }
        }
        assert_eq!(
            reports[0].state,
            FileState::Completed,
            "the first file finished first"
        );
        assert_eq!(
            reports[201].state,
            FileState::NotStarted,
            "the last file never started"
        );
        assert!(
            proxy.count(|x| x.key() == "ff/later-199") == 0,
            "nothing of a never-started file was sent"
        );
        server.assert_no_open_uploads();
        assert!(proxy.count(|x| x.is_abort() && !x.is_probe()) >= 1);
    }
}

#[test]
fn stop_during_a_big_upload_aborts_every_upload() {
    for server in support::servers() {
        let proxy = Proxy::start(&server.endpoint);
        proxy.add_rule(Rule::new(
            Match::file_parts(),
            Action::Throttle {
                bytes_per_sec: 4 * MIB as u64,
            },
        ));
        let files = make_files(&specs(&[
            ("stop/a", 15 * MIB),
            ("stop/b", 15 * MIB),
            ("stop/c", 15 * MIB),
        ]));
        let up =
            Uploader::new(small_parts(server.config_via(&proxy.endpoint())).workers(4)).unwrap();
        let job = up.start(&files.batch()).unwrap();
        assert!(
            proxy.wait_for(Duration::from_secs(20), |log| log
                .iter()
                .any(|e| e.is_file_part())),
            "parts started"
        );
        std::thread::sleep(Duration::from_millis(300));
        let stop_at = Instant::now();
        job.stop();
        job.stop(); // idempotent
        let p = finish(&job, 30);
        assert!(
            stop_at.elapsed() < Duration::from_secs(10),
            "stop took {:?}",
            stop_at.elapsed()
        );
        assert_eq!(p.state, JobState::Stopped);
        assert_eq!(p.error.as_ref().map(|e| e.kind()), Some(ErrorKind::Stopped));
        let store = server.store();
        for (i, r) in job.files().iter().enumerate() {
            assert_ne!(r.state, FileState::Running, "{}", r.key);
            if r.state == FileState::Completed {
                files.verify(&store, i);
            } else {
                files.assert_absent(&store, i);
            }
        }
        assert!(
            job.files().iter().any(|r| r.state == FileState::Aborted),
            "no upload was aborted: {:?}",
            job.files()
        );
        server.assert_no_open_uploads();
        job.stop(); // on a finished job: nothing happens
        assert_eq!(job.state(), JobState::Stopped);
    }
}

#[test]
fn a_black_hole_fails_the_job_after_the_stall_timeout() {
    for server in support::fast_servers() {
        let proxy = Proxy::start(&server.endpoint);
        proxy.set_black_hole(true);
        let files = make_files(&specs(&[("bh/big", 6 * MIB), ("bh/small", 10)]));
        let up = Uploader::new(
            small_parts(server.config_via(&proxy.endpoint()))
                .stall_timeout(Duration::from_millis(1000))
                .request_timeout(Duration::from_secs(60))
                // Cleanup cannot get through the black hole either; its
                // budget is not what this test is about (tests/stop.rs).
                .cleanup_timeout(Duration::from_secs(1)),
        )
        .unwrap();
        let t = Instant::now();
        let job = up.start(&files.batch()).unwrap();
        let p = finish(&job, 30);
        assert_eq!(p.state, JobState::Failed);
        let e = p.error.unwrap();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        assert!(e.to_string().contains("stall"), "{e}");
        assert!(t.elapsed() >= Duration::from_millis(1000));
        server.assert_no_open_uploads();
        files.assert_absent(&server.store(), 0);
        files.assert_absent(&server.store(), 1);
    }
}

#[test]
fn a_deadline_fails_the_job_with_a_timeout() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    proxy.add_rule(Rule::new(
        Match::file_parts(),
        Action::Throttle {
            bytes_per_sec: 2 * MIB as u64,
        },
    ));
    let files = make_files(&specs(&[("dl/big", 20 * MIB)]));
    let up = Uploader::new(
        small_parts(server.config_via(&proxy.endpoint()))
            .deadline(Some(Duration::from_millis(1500))),
    )
    .unwrap();
    let job = up.start(&files.batch()).unwrap();
    let p = finish(&job, 30);
    assert_eq!(p.state, JobState::Failed);
    let e = p.error.unwrap();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(e.to_string().contains("deadline"), "{e}");
    server.assert_no_open_uploads();
}

#[test]
fn a_wrong_secret_fails_at_once_without_retries() {
    for server in support::fast_servers() {
        let proxy = Proxy::start(&server.endpoint);
        let files = make_files(&specs(&[("ws/a", 100), ("ws/b", 100), ("ws/c", 100)]));
        let cfg = server
            .config_via(&proxy.endpoint())
            .credentials(&server.access_key, "wrong-secret")
            .workers(1);
        let up = Uploader::new(cfg).unwrap();
        let job = up.start(&files.batch()).unwrap();
        let p = finish(&job, 30);
        assert_eq!(p.state, JobState::Failed);
        let e = p.error.unwrap();
        // Garage answers a bad signature with AccessDenied.
        let expected = match server.kind {
            Kind::Garage => "AccessDenied",
            _ => "SignatureDoesNotMatch",
        };
        assert_eq!(e.code(), Some(expected), "{e}");
        // (Besides the integrity probe's, refused the same way.)
        assert_eq!(
            proxy.count(|x| !x.is_probe()),
            1,
            "one request, no retry: {:?}",
            proxy.log()
        );
        let r = job.files();
        assert_eq!(r[0].state, FileState::Failed);
        assert_eq!(r[2].state, FileState::NotStarted);
    }
}

/// Runs in a child process with RLIMIT_NOFILE = 64 (see the parent below).
#[test]
#[ignore = "run by open_file_limit_of_64_is_enough_for_500_files in a child process"]
fn nofile_child() {
    let Ok(dir) = std::env::var("BP_CHILD_DIR") else {
        return;
    };
    let cfg = Config::new()
        .endpoint(&std::env::var("BP_CHILD_ENDPOINT").unwrap())
        .bucket(&std::env::var("BP_CHILD_BUCKET").unwrap())
        .credentials(support::S3S_ACCESS_KEY, support::S3S_SECRET_KEY)
        .workers(16);
    let up = Uploader::new(cfg).unwrap();
    let job = up
        .start(&Batch::from_dir(std::path::Path::new(&dir), "nofile/").unwrap())
        .unwrap();
    let p = finish(&job, 120);
    assert_eq!(p.state, JobState::Succeeded, "{:?}", p.error);
    assert_eq!(p.files_done, 500);
}

#[test]
fn open_file_limit_of_64_is_enough_for_500_files() {
    use std::os::unix::process::CommandExt;
    let server = support::s3s();
    let list: Vec<(String, usize)> = (0..500).map(|i| (format!("{i}"), 2000 + i)).collect();
    let files = make_files(&list);
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--ignored",
        "--exact",
        "engine::nofile_child",
        "--test-threads=1",
    ])
    .env("BP_CHILD_DIR", files.dir.path())
    .env("BP_CHILD_ENDPOINT", &server.endpoint)
    .env("BP_CHILD_BUCKET", &server.bucket);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = server.store();
    for (path, _, len, seed) in &files.items {
        let key = format!("nofile/{}", path.file_name().unwrap().to_string_lossy());
        assert!(
            store.get_object(&key).unwrap() == pattern(*len, *seed),
            "{key}"
        );
    }
}

#[test]
fn initiated_uploads_never_exceed_max_pending_uploads() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    let list: Vec<(String, usize)> = (0..12).map(|i| (format!("mp/{i:02}"), 6 * MIB)).collect();
    let files = make_files(&list);
    let up = Uploader::new(
        small_parts(server.config_via(&proxy.endpoint()))
            .workers(12)
            .max_pending_uploads(3)
            .integrity(Integrity::None),
    )
    .unwrap();
    let job = up.start(&files.batch()).unwrap();
    let p = finish(&job, 120);
    assert_eq!(p.state, JobState::Succeeded, "{:?}", p.error);
    // Each upload counts from its create request to its complete answer.
    let log = proxy.log();
    let mut ends: HashMap<String, Instant> = HashMap::new();
    for e in log.iter().filter(|e| e.is_complete()) {
        ends.insert(e.query_param("uploadId").unwrap(), e.finished.unwrap());
    }
    let mut events = Vec::new();
    for e in log.iter().filter(|e| e.is_create_upload()) {
        let id = e.upload_id_created().expect("created");
        events.push((e.started, 1i32));
        events.push((ends[&id], -1));
    }
    events.sort();
    let (mut open, mut peak) = (0, 0);
    for (_, d) in events {
        open += d;
        peak = peak.max(open);
    }
    assert_eq!(peak, 3, "the limit is reached and never passed");
    files.verify_all(&server.store());
}

#[test]
fn a_file_that_changes_while_uploading_fails_and_is_aborted() {
    let server = support::s3s();
    // etag-md5 reads the file itself; none lets the kernel send it
    // (sendfile): both must notice the change.
    for (grow, integrity) in [
        (true, Integrity::EtagMd5),
        (false, Integrity::EtagMd5),
        (true, Integrity::None),
        (false, Integrity::None),
    ] {
        let proxy = Proxy::start(&server.endpoint);
        proxy.add_rule(Rule::new(
            Match::file_parts(),
            Action::Throttle {
                bytes_per_sec: 8 * MIB as u64,
            },
        ));
        let files = make_files(&specs(&[("chg/file", 30 * MIB)]));
        let up = Uploader::new(
            small_parts(server.config_via(&proxy.endpoint()))
                .workers(2)
                .integrity(integrity),
        )
        .unwrap();
        let job = up.start(&files.batch()).unwrap();
        assert!(proxy.wait_for(Duration::from_secs(20), |log| log
            .iter()
            .any(|e| e.is_file_part() && e.status == Some(200))));
        let path = &files.items[0].0;
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        if grow {
            f.set_len(31 * MIB as u64).unwrap();
        } else {
            f.set_len(7 * MIB as u64).unwrap();
        }
        let p = finish(&job, 60);
        assert_eq!(p.state, JobState::Failed, "grow={grow} {integrity:?}");
        let e = p.error.unwrap();
        assert_eq!(e.kind(), ErrorKind::FileChanged, "{e}");
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        assert!(e.to_string().contains("changed while uploading"), "{e}");
        assert_eq!(job.files()[0].state, FileState::Failed, "{e}");
        server.assert_no_open_uploads();
        files.assert_absent(&server.store(), 0);
    }
}

#[test]
fn jobs_on_one_uploader_run_one_after_the_other() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    proxy.add_rule(Rule::new(
        Match::method("PUT"),
        Action::Delay(Duration::from_millis(100)),
    ));
    let first = make_files(&specs(&[("one/a", 1000), ("one/b", 1000), ("one/c", 1000)]));
    let second = make_files(&specs(&[("two/a", 1000), ("two/b", 1000)]));
    let up = Uploader::new(server.config_via(&proxy.endpoint()).workers(1)).unwrap();
    let j1 = up.start(&first.batch()).unwrap();
    let j2 = up.start(&second.batch()).unwrap();
    assert_eq!(j2.state(), JobState::Queued);
    assert_eq!(finish(&j1, 30).state, JobState::Succeeded);
    assert_eq!(finish(&j2, 30).state, JobState::Succeeded);
    let log = proxy.log();
    let last_of_one = log
        .iter()
        .filter(|e| e.key().starts_with("one/"))
        .map(|e| e.finished.unwrap())
        .max()
        .unwrap();
    let first_of_two = log
        .iter()
        .filter(|e| e.key().starts_with("two/"))
        .map(|e| e.started)
        .min()
        .unwrap();
    assert!(
        first_of_two >= last_of_one,
        "job two started before job one ended"
    );
    first.verify_all(&server.store());
    second.verify_all(&server.store());
}

#[test]
fn bad_input_fails_before_anything_is_sent() {
    for server in support::fast_servers() {
        let proxy = Proxy::start(&server.endpoint);
        let up = Uploader::new(server.config_via(&proxy.endpoint())).unwrap();
        let files = make_files(&specs(&[("ok", 10), ("ok2", 10)]));
        let good = files.items[0].0.clone();
        let other = files.items[1].0.clone();
        let dir = files.dir.path().to_path_buf();
        let missing = dir.join("does-not-exist");

        let cases: Vec<(Batch, ErrorKind, &str)> = vec![
            (Batch::new(), ErrorKind::InvalidInput, "empty"),
            (
                batch_of(&[(&missing, "k")]),
                ErrorKind::LocalIo,
                "does-not-exist: no such file",
            ),
            (
                batch_of(&[(&dir, "k")]),
                ErrorKind::InvalidInput,
                "is a directory",
            ),
            (
                batch_of(&[(&good, "same"), (&other, "same")]),
                ErrorKind::InvalidInput,
                "duplicate key 'same'",
            ),
            (
                batch_of(&[(&good, "k".repeat(1025))]),
                ErrorKind::InvalidInput,
                "1025 bytes",
            ),
            (
                batch_of(&[(&good, "")]),
                ErrorKind::InvalidInput,
                "must not be empty",
            ),
            (
                batch_of(&[(&good, "a/../b")]),
                ErrorKind::InvalidInput,
                "'..'",
            ),
        ];
        for (batch, kind, needle) in cases {
            let e = up.start(&batch).unwrap_err();
            assert_eq!(e.kind(), kind, "{e}");
            assert!(
                e.to_string().contains(needle),
                "{e} should contain {needle}"
            );
        }
        assert!(
            proxy.log().is_empty(),
            "nothing was sent: {:?}",
            proxy.log()
        );
    }
}

#[test]
fn rate_limit_caps_the_uploaders_speed() {
    let server = support::s3s();
    let files = make_files(&specs(&[("rl/a", 3 * MIB), ("rl/b", 3 * MIB)]));
    let up = Uploader::new(server.config().rate_limit(2 * MIB as u64).workers(4)).unwrap();
    let t = Instant::now();
    let job = up.start(&files.batch()).unwrap();
    let p = finish(&job, 60);
    assert_eq!(p.state, JobState::Succeeded);
    // 6 MiB at 2 MiB/s with one second of burst: at least two seconds.
    assert!(
        t.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        t.elapsed()
    );
    files.verify_all(&server.store());
}

#[test]
fn dropping_the_uploader_stops_its_jobs_and_cleans_up() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    proxy.add_rule(Rule::new(
        Match::file_parts(),
        Action::Throttle {
            bytes_per_sec: 4 * MIB as u64,
        },
    ));
    let files = make_files(&specs(&[("drop/a", 20 * MIB)]));
    let up = Uploader::new(small_parts(server.config_via(&proxy.endpoint()))).unwrap();
    let job = up.start(&files.batch()).unwrap();
    let queued = up.start(&files.batch()).unwrap();
    assert!(proxy.wait_for(Duration::from_secs(20), |log| log
        .iter()
        .any(|e| e.is_file_part())));
    drop(up);
    assert_eq!(job.state(), JobState::Stopped);
    assert_eq!(queued.state(), JobState::Stopped);
    assert!(queued
        .files()
        .iter()
        .all(|r| r.state == FileState::NotStarted));
    server.assert_no_open_uploads();
}

#[test]
fn progress_reports_what_the_server_acknowledged() {
    let server = support::s3s();
    let files = make_files(&specs(&[("pr/big", 12 * MIB), ("pr/small", 5000)]));
    let up = Uploader::new(small_parts(server.config())).unwrap();
    let job = up.start(&files.batch()).unwrap();
    let mut last = 0;
    while !job.wait(Some(Duration::from_millis(20))) {
        let p = job.progress();
        assert!(p.bytes_done >= last, "progress never goes back");
        assert!(p.bytes_done <= p.bytes_total);
        last = p.bytes_done;
    }
    let p = job.progress();
    assert_eq!(p.state, JobState::Succeeded);
    assert_eq!((p.files_total, p.files_done, p.files_failed), (2, 2, 0));
    assert_eq!((p.parts_total, p.parts_done), (4, 4));
    assert_eq!(p.bytes_total, 12 * MIB as u64 + 5000);
    assert_eq!(p.bytes_done, p.bytes_total);
    assert!(p.avg_speed_bps > 0.0 && p.peak_speed_bps >= 0.0);
    let r = job.file(0).unwrap();
    assert_eq!(r.key, "pr/big");
    assert_eq!(r.size, 12 * MIB as u64);
    assert_eq!(r.bytes_done, r.size);
    assert!(r.avg_speed_bps > 0.0);
    assert!(r.peak_speed_bps >= r.avg_speed_bps * 0.99);
    assert!(job.file(2).is_none());
}

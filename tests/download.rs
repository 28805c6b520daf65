//! Downloads: byte-exact on every store (s3s-fs, moto with auth, Garage
//! when installed), with awkward keys, empty objects and multipart objects
//! made by another client with other part sizes; checked against the ETag;
//! never a partial file under a final name — a cut, a stop, a replaced
//! object; pause and resume that fetch only the missing parts; destinations
//! checked before any byte moves; a full disk found before the bytes are
//! fetched (a 1 MiB tmpfs mounted for the test), and so is a directory the
//! process may not write (a child process as `nobody`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use batchput::store::{Body, SentChecksum, Store};
use batchput::{Batch, ErrorKind, FileState, JobState, Uploader, Verification};

use crate::support::proxy::{Action, Match, Proxy, Rule};
use crate::support::{self, finish, md5_hex, pattern, small_parts, Kind, Server, MIB};

/// Puts `data` at `key` in parts of the given sizes, as another client
/// would (no batchput engine involved).
fn put_in_parts(store: &Store, key: &str, data: &[u8], sizes: &[usize]) {
    let id = store.create_multipart_upload(key, 0).unwrap();
    let mut parts = Vec::new();
    let mut at = 0;
    for (i, &n) in sizes.iter().enumerate() {
        let chunk = &data[at..at + n];
        at += n;
        let etag = store
            .upload_part(
                key,
                &id,
                i as u32 + 1,
                Body::Bytes(chunk),
                SentChecksum::None,
                0,
            )
            .unwrap();
        parts.push(batchput::store::CompletedPart {
            number: i as u32 + 1,
            etag,
            crc32c: None,
        });
    }
    assert_eq!(at, data.len());
    store
        .complete_multipart_upload(key, &id, &parts, 0)
        .unwrap();
}

fn put(store: &Store, key: &str, data: &[u8]) {
    store
        .put_object(key, Body::Bytes(data), SentChecksum::None, 0)
        .unwrap();
}

/// Files under `dir` whose names say they are partial downloads.
fn partial_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".batchput-partial") {
                out.push(p);
            }
        }
    }
    out
}

struct Object {
    key: String,
    data: Vec<u8>,
}

/// The objects every store gets: empty, small with an awkward key, one
/// made by our engine in 5 MiB parts, one by another client in 6+6+1 MiB
/// parts, one of 7 MiB in one PUT (fetched in ranges).
fn seed(server: &Server) -> Vec<Object> {
    let store = server.store();
    let objects = vec![
        Object {
            key: "dl/empty".into(),
            data: Vec::new(),
        },
        Object {
            key: "dl/dir one/a b+c%26 é.txt".into(),
            data: pattern(100_000, 1),
        },
        Object {
            key: "dl/ours-5mib-parts".into(),
            data: pattern(11 * MIB, 2),
        },
        Object {
            key: "dl/theirs-6mib-parts".into(),
            data: pattern(13 * MIB, 3),
        },
        Object {
            key: "dl/one-put-7mib".into(),
            data: pattern(7 * MIB, 4),
        },
    ];
    put(&store, &objects[0].key, &objects[0].data);
    put(&store, &objects[1].key, &objects[1].data);
    put_in_parts(
        &store,
        &objects[2].key,
        &objects[2].data,
        &[5 * MIB, 5 * MIB, MIB],
    );
    put_in_parts(
        &store,
        &objects[3].key,
        &objects[3].data,
        &[6 * MIB, 6 * MIB, MIB],
    );
    put(&store, &objects[4].key, &objects[4].data);
    objects
}

/// Stops `job` and checks it ended within `secs`.
fn stop_within_seconds(job: &batchput::Job, secs: u64) -> batchput::Progress {
    let asked = Instant::now();
    job.stop();
    let p = finish(job, 30);
    assert!(
        asked.elapsed() < Duration::from_secs(secs),
        "{:?}",
        asked.elapsed()
    );
    p
}

fn batch_into(dir: &Path, objects: &[Object]) -> Batch {
    let mut b = Batch::new();
    for (i, o) in objects.iter().enumerate() {
        b.add(dir.join(format!("sub/{i}")), o.key.clone());
    }
    b
}

#[test]
fn downloads_are_byte_exact_and_checked_on_every_store() {
    for server in support::servers() {
        let objects = seed(&server);
        let dir = tempfile::tempdir().unwrap();
        let up = Uploader::new(small_parts(server.config())).unwrap();
        let job = up.download(&batch_into(dir.path(), &objects)).unwrap();
        let p = finish(&job, 120);
        server.assert_succeeded(&p);
        assert_eq!(
            p.bytes_done,
            objects.iter().map(|o| o.data.len() as u64).sum::<u64>()
        );
        let files = job.files();
        for (i, o) in objects.iter().enumerate() {
            let got = std::fs::read(dir.path().join(format!("sub/{i}"))).unwrap();
            assert!(
                got == o.data,
                "{:?}: bytes of {} differ",
                server.kind,
                o.key
            );
            assert_eq!(files[i].state, FileState::Completed);
        }
        let verified: Vec<_> = files.iter().map(|f| f.verified).collect();
        eprintln!("{:?}: {verified:?}", server.kind);
        // Single-part objects: their MD5, whole or read back after ranges.
        for i in [0, 1, 4] {
            assert_eq!(verified[i], Some(Verification::Md5), "{}", objects[i].key);
        }
        // Our 5 MiB parts: by part number, or recomputed with the
        // configured part size where the store does not serve parts.
        assert_eq!(verified[2], Some(Verification::MultipartEtag));
        // Another client's 6 MiB parts: only a store that serves parts by
        // number can tell their boundaries (Garage does).
        match server.kind {
            Kind::Garage => assert_eq!(verified[3], Some(Verification::MultipartEtag)),
            _ => assert!(verified[3].is_some()),
        }
        assert!(partial_files(dir.path()).is_empty());
    }
}

#[test]
fn a_cut_download_fails_and_leaves_nothing_half_written() {
    let server = support::s3s();
    let objects = seed(&server);
    let proxy = Proxy::start(&server.endpoint);
    // Every GET of the big object breaks before its answer.
    proxy.add_rule(Rule::new(
        Match::method("GET").and_path("ours-5mib-parts"),
        Action::CutAfter { bytes: 0 },
    ));
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_parts(server.config_via(&proxy.endpoint())).retries(2);
    let up = Uploader::new(cfg).unwrap();
    let job = up.download(&batch_into(dir.path(), &objects)).unwrap();
    let p = finish(&job, 60);
    assert_eq!(p.state, JobState::Failed);
    let error = p.error.unwrap();
    assert!(error.to_string().contains("ours-5mib-parts"), "{error}");
    let files = job.files();
    assert_eq!(files[2].state, FileState::Failed);
    for (i, f) in files.iter().enumerate() {
        let dest = dir.path().join(format!("sub/{i}"));
        match f.state {
            FileState::Completed => {
                assert!(std::fs::read(&dest).unwrap() == objects[i].data)
            }
            _ => assert!(
                !dest.exists(),
                "{} exists after {:?}",
                dest.display(),
                f.state
            ),
        }
    }
    assert!(
        partial_files(dir.path()).is_empty(),
        "{:?}",
        partial_files(dir.path())
    );
}

#[test]
fn a_stop_mid_download_ends_in_bounded_time_and_removes_partial_files() {
    let server = support::s3s();
    let objects = seed(&server);
    let proxy = Proxy::start(&server.endpoint);
    // Part 2 of the big object never answers.
    proxy.add_rule(Rule::new(
        Match::method("GET")
            .and_path("ours-5mib-parts")
            .and_header("range"),
        Action::BlackHole,
    ));
    let dir = tempfile::tempdir().unwrap();
    let up = Uploader::new(small_parts(server.config_via(&proxy.endpoint()))).unwrap();
    let job = up.download(&batch_into(dir.path(), &objects)).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let p = stop_within_seconds(&job, 10);
    assert_eq!(p.state, JobState::Stopped);
    let files = job.files();
    assert_eq!(files[2].state, FileState::Aborted);
    assert!(!dir.path().join("sub/2").exists());
    assert!(
        partial_files(dir.path()).is_empty(),
        "{:?}",
        partial_files(dir.path())
    );
}

/// Small objects, each fetched by one GET from start to finish in one
/// task (its temporary file made by the task itself): `held` of them are
/// named `held-N`.
fn seed_small(server: &Server, n: usize, held: usize) -> Vec<Object> {
    let store = server.store();
    (0..n)
        .map(|i| {
            let key = if i < held {
                format!("one/held-{i}")
            } else {
                format!("one/file {i}")
            };
            let data = pattern(40_000 + i, 100 + i as u64);
            put(&store, &key, &data);
            Object { key, data }
        })
        .collect()
}

/// Every file of `objects` (each of one GET) under `dir` is either
/// complete, byte-exact and reported checked by its MD5, or absent; no
/// partial file is left anywhere. Returns how many are complete.
fn assert_nothing_half_written(
    dir: &Path,
    objects: &[Object],
    files: &[batchput::FileReport],
) -> usize {
    let mut complete = 0;
    for (i, f) in files.iter().enumerate() {
        let dest = dir.join(format!("sub/{i}"));
        if f.state == FileState::Completed {
            assert!(
                std::fs::read(&dest).unwrap() == objects[i].data,
                "{}",
                objects[i].key
            );
            assert_eq!(f.verified, Some(Verification::Md5), "{f:?}");
            complete += 1;
        } else {
            assert!(
                !dest.exists(),
                "{} exists after {:?}",
                dest.display(),
                f.state
            );
        }
    }
    assert!(partial_files(dir).is_empty(), "{:?}", partial_files(dir));
    complete
}

#[test]
fn a_stop_while_objects_of_one_get_are_in_flight_leaves_no_partial_file() {
    let server = support::s3s();
    let objects = seed_small(&server, 30, 3);
    let proxy = Proxy::start(&server.endpoint);
    proxy.add_rule(Rule::new(
        Match::method("GET").and_path("held-"),
        Action::BlackHole,
    ));
    let dir = tempfile::tempdir().unwrap();
    let up = Uploader::new(server.config_via(&proxy.endpoint()).workers(4)).unwrap();
    let job = up.download(&batch_into(dir.path(), &objects)).unwrap();
    // The three held GETs are out (their temporary files made), and five
    // other files went on past them: in place, not only answered (each
    // still has its check and rename to go after its answer).
    let completed = || {
        job.files()
            .iter()
            .filter(|f| f.state == FileState::Completed)
            .count()
    };
    assert!(proxy.wait_for(Duration::from_secs(20), |log| {
        let held = log
            .iter()
            .filter(|e| e.method == "GET" && e.path.contains("held-"));
        held.count() == 3 && completed() >= 5
    }));
    let p = stop_within_seconds(&job, 10);
    assert_eq!(p.state, JobState::Stopped);
    let files = job.files();
    for f in &files[..3] {
        assert_eq!(f.state, FileState::Aborted, "{f:?}");
    }
    // The files answered are complete and stay.
    assert!(assert_nothing_half_written(dir.path(), &objects, &files) >= 5);
}

#[test]
fn an_object_of_one_get_corrupted_or_cut_fails_and_leaves_no_partial_file() {
    let server = support::s3s();
    let objects = seed_small(&server, 12, 1);
    let proxy = Proxy::start(&server.endpoint);
    let up = Uploader::new(server.config_via(&proxy.endpoint()).workers(2).retries(2)).unwrap();

    // A byte flipped on the way (the MD5 of what was written is not the
    // ETag), then every attempt cut before its answer.
    for (action, kind) in [
        (Action::CorruptAnswer { at: 30_000 }, ErrorKind::Integrity),
        (Action::CutAfter { bytes: 0 }, ErrorKind::Network),
    ] {
        // A directory per job: a file the first one completed is kept,
        // and would be there whatever the second reports for it (which
        // leaves it alone when it cuts its own download of it).
        let dir = tempfile::tempdir().unwrap();
        proxy.clear_rules();
        proxy.add_rule(Rule::new(Match::method("GET").and_path("held-0"), action));
        let job = up.download(&batch_into(dir.path(), &objects)).unwrap();
        let p = finish(&job, 60);
        assert_eq!(p.state, JobState::Failed);
        let error = p.error.unwrap();
        assert_eq!(error.kind(), kind, "{error}");
        assert!(error.to_string().contains("one/held-0"), "{error}");
        let files = job.files();
        assert_eq!(files[0].state, FileState::Failed);
        assert_nothing_half_written(dir.path(), &objects, &files);
    }
}

#[test]
fn a_replaced_object_fails_its_file() {
    for server in support::servers() {
        let store = server.store();
        let key = "dl/replaced";
        let data = pattern(11 * MIB, 7);
        put_in_parts(&store, key, &data, &[5 * MIB, 5 * MIB, MIB]);
        let proxy = Proxy::start(&server.endpoint);
        // The GETs of the object wait; meanwhile it is replaced.
        proxy.add_rule(Rule::new(
            Match::method("GET").and_path("replaced"),
            Action::Delay(Duration::from_millis(1500)),
        ));
        let dir = tempfile::tempdir().unwrap();
        let up = Uploader::new(small_parts(server.config_via(&proxy.endpoint()))).unwrap();
        let mut b = Batch::new();
        b.add(dir.path().join("replaced"), key);
        let job = up.download(&b).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        put(&store, key, b"another version");
        let p = finish(&job, 60);
        assert_eq!(p.state, JobState::Failed, "{:?}", server.kind);
        let error = p.error.unwrap();
        assert_eq!(
            error.kind(),
            ErrorKind::FileChanged,
            "{:?}: {error}",
            server.kind
        );
        assert!(error.to_string().contains("replaced"), "{error}");
        assert!(!dir.path().join("replaced").exists());
        assert!(partial_files(dir.path()).is_empty());
    }
}

#[test]
fn pause_then_resume_fetches_only_the_missing_parts() {
    for server in support::fast_servers() {
        let store = server.store();
        let key = "dl/paused";
        let data = pattern(20 * MIB, 9);
        put_in_parts(&store, key, &data, &[5 * MIB; 4]);
        let proxy = Proxy::start(&server.endpoint);
        // Part 4 hangs, so the job is mid-object when paused.
        proxy.add_rule(Rule::new(
            Match::method("GET").and_query("partNumber=4"),
            Action::BlackHole,
        ));
        proxy.add_rule(
            Rule::new(Match::method("GET").and_header("range"), Action::BlackHole).times(1),
        );
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal");
        let cfg = small_parts(server.config_via(&proxy.endpoint())).workers(2);
        let up = Uploader::new(cfg.clone()).unwrap();
        let mut b = Batch::new();
        b.add(dir.path().join("out/paused.bin"), key)
            .journal(&journal);
        let job = up.download(&b).unwrap();
        let t0 = Instant::now();
        while job.progress().parts_done < 2 && t0.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let done_before = job.progress().parts_done;
        assert!(done_before >= 2, "{:?}", job.progress());
        job.pause().unwrap();
        let p = finish(&job, 30);
        assert_eq!(p.state, JobState::Paused);
        assert_eq!(job.files()[0].state, FileState::Paused);
        assert!(!dir.path().join("out/paused.bin").exists());
        assert_eq!(partial_files(dir.path()).len(), 1);
        drop(up);

        // Resume through a clean proxy, counting what crosses it.
        let clean = Proxy::start(&server.endpoint);
        let up = Uploader::new(small_parts(server.config_via(&clean.endpoint()))).unwrap();
        let job = up.resume(&journal).unwrap();
        let p = finish(&job, 60);
        assert_eq!(p.state, JobState::Succeeded, "{:?}", p.error);
        assert!(std::fs::read(dir.path().join("out/paused.bin")).unwrap() == data);
        assert!(job.files()[0].verified.is_some());
        let gets = clean.log().iter().filter(|e| e.method == "GET").count() as u64;
        assert!(
            gets <= 4 - done_before,
            "{gets} GETs on resume, {done_before} of 4 parts were already there"
        );
        assert!(partial_files(dir.path()).is_empty());
    }
}

#[test]
fn destinations_are_checked_before_any_byte_moves() {
    let server = support::s3s();
    let store = server.store();
    put(&store, "dl/x", b"x");
    put(&store, "dl/y", b"y");
    let proxy = Proxy::start(&server.endpoint);
    let up = Uploader::new(server.config_via(&proxy.endpoint())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let refused = |b: &Batch, words: &[&str]| {
        let e = up.download(b).expect_err("refused");
        for w in words {
            assert!(e.to_string().contains(w), "{e} lacks {w}");
        }
    };
    // A directory in the way.
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    let mut b = Batch::new();
    b.add(dir.path().join("taken"), "dl/x");
    refused(&b, &["taken", "is a directory"]);
    // Two keys, one path.
    let mut b = Batch::new();
    b.add(dir.path().join("same"), "dl/x")
        .add(dir.path().join("same"), "dl/y");
    refused(&b, &["dl/x", "dl/y", "both"]);
    // A file where a directory must be.
    std::fs::write(dir.path().join("plain"), b"").unwrap();
    let mut b = Batch::new();
    b.add(dir.path().join("plain/below"), "dl/x");
    refused(&b, &["plain", "not a directory"]);
    // An object that does not exist.
    let mut b = Batch::new();
    b.add(dir.path().join("missing"), "dl/missing");
    refused(&b, &["dl/missing"]);
    assert!(
        proxy.log().iter().all(|e| e.method != "GET"),
        "a GET was sent: {:?}",
        proxy.log()
    );
    assert!(std::fs::read_dir(dir.path()).unwrap().count() == 2);
}

#[test]
fn an_existing_file_is_replaced_only_once_the_download_is_complete() {
    let server = support::s3s();
    let store = server.store();
    let data = pattern(3 * MIB, 11);
    put(&store, "dl/over", &data);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("over");
    std::fs::write(&dest, b"old contents").unwrap();
    let up = Uploader::new(server.config()).unwrap();
    let mut b = Batch::new();
    b.add(&dest, "dl/over");
    let job = up.download(&b).unwrap();
    let p = finish(&job, 60);
    assert_eq!(p.state, JobState::Succeeded, "{:?}", p.error);
    assert_eq!(md5_hex(&std::fs::read(&dest).unwrap()), md5_hex(&data));
}

#[test]
fn kill_mid_download_then_resume_in_a_new_process_fetches_only_what_is_missing() {
    for server in support::fast_servers() {
        let store = server.store();
        let key = "dl/killed";
        let data = pattern(20 * MIB, 13);
        put_in_parts(&store, key, &data, &[5 * MIB; 4]);
        let proxy = Proxy::start(&server.endpoint);
        // Two parts come, the others hang: by part number (Garage) or by
        // range (s3s-fs, which does not serve parts).
        for n in [3, 4] {
            proxy.add_rule(Rule::new(
                Match::method("GET").and_query(&format!("partNumber={n}")),
                Action::BlackHole,
            ));
        }
        proxy.add_rule(
            Rule::new(
                Match::method("GET").and_header("range"),
                Action::Delay(Duration::ZERO),
            )
            .times(2),
        );
        proxy.add_rule(Rule::new(
            Match::method("GET").and_header("range"),
            Action::BlackHole,
        ));
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal");
        let dest = dir.path().join("out/killed.bin");
        let list = format!("{}\t{key}\n", dest.display());
        let mut child = crate::journal::spawn_child_in(
            &server,
            &proxy.endpoint(),
            "download",
            &list,
            &journal,
            None,
        );
        // Until the journal holds two acknowledged parts (checked below).
        support::eventually(Duration::from_secs(30), || {
            support::journal_parts(&journal) >= 2
        });
        crate::journal::kill9(&mut child);
        let kept = support::journal_parts(&journal) as u64;
        assert!(kept >= 2, "{:?}: {kept} parts recorded", server.kind);
        assert!(!dest.exists(), "a partial file under the final name");

        let clean = Proxy::start(&server.endpoint);
        let up = Uploader::new(small_parts(server.config_via(&clean.endpoint()))).unwrap();
        let job = up.resume(&journal).unwrap();
        let p = finish(&job, 60);
        server.assert_succeeded(&p);
        assert!(
            std::fs::read(&dest).unwrap() == data,
            "{:?}: bytes differ",
            server.kind
        );
        let gets = clean.log().iter().filter(|e| e.method == "GET").count() as u64;
        assert!(
            gets <= 4 - kept,
            "{gets} GETs on resume, {kept} of 4 parts were recorded"
        );
        assert!(partial_files(dir.path()).is_empty());
    }
}

#[test]
fn a_prefix_downloads_below_a_directory_and_keys_that_would_escape_are_refused() {
    for server in support::servers() {
        let store = server.store();
        let objects = [
            ("pre/a b+c%26.txt", pattern(1000, 21)),
            ("pre/deep/er/é.bin", pattern(6 * MIB, 22)),
            ("pre/empty", Vec::new()),
        ];
        for (k, d) in &objects {
            put(&store, k, d);
        }
        put(&store, "pre/folder/", b"");
        put(&store, "other/not-this", b"x");
        let dir = tempfile::tempdir().unwrap();
        let up = Uploader::new(small_parts(server.config())).unwrap();
        let job = up.download_prefix("pre/", dir.path(), None).unwrap();
        let p = finish(&job, 60);
        server.assert_succeeded(&p);
        assert_eq!(job.file_count(), 3, "{:?}", job.files());
        for (k, d) in &objects {
            let got = std::fs::read(dir.path().join(k.strip_prefix("pre/").unwrap())).unwrap();
            assert!(got == *d, "{:?}: bytes of {k}", server.kind);
        }
        assert!(!dir.path().join("not-this").exists());

        // A backslash path ("..\\..\\x") is refused wherever it could be
        // read as a separator.
        put(&store, "esc/..\\..\\x", b"escape");
        let out = tempfile::tempdir().unwrap();
        let e = up.download_prefix("esc/", out.path(), None).unwrap_err();
        assert!(e.to_string().contains("backslash"), "{e}");
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    }
}

#[test]
fn small_objects_listed_without_etags_cost_one_get_each() {
    // s3s-fs lists no ETags: a one-GET object learns its ETag from its GET
    // (and is checked against it), with no HeadObject first.
    let server = support::s3s();
    let store = server.store();
    let objects: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| (format!("few/{i}"), pattern(10_000 + i, 30 + i as u64)))
        .collect();
    for (k, d) in &objects {
        put(&store, k, d);
    }
    let proxy = Proxy::start(&server.endpoint);
    let up = Uploader::new(server.config_via(&proxy.endpoint())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = up.download_prefix("few/", dir.path(), None).unwrap();
    let p = finish(&job, 60);
    assert_eq!(p.state, JobState::Succeeded, "{:?}", p.error);
    for (f, (k, d)) in job.files().iter().zip(&objects) {
        assert_eq!(f.verified, Some(Verification::Md5), "{k}");
        assert_eq!(f.etag.as_deref(), Some(md5_hex(d).as_str()), "{k}");
        assert!(std::fs::read(&f.path).unwrap() == *d, "{k}");
    }
    // The three files and nothing else (no temporary file left behind).
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let log = proxy.log();
    assert_eq!(
        log.iter().filter(|e| e.method == "HEAD").count(),
        0,
        "{log:?}"
    );
    assert_eq!(
        log.iter()
            .filter(|e| e.method == "GET" && e.path.contains("few"))
            .count(),
        3
    );
}

#[test]
fn a_stored_full_object_crc32c_checks_a_multipart_object_without_its_part_boundaries() {
    for server in support::servers() {
        let key = "dl/full crc32c";
        let data = pattern(13 * MIB + 5, 21);
        let Some(head) = support::put_full_object_crc32c(&server, key, &data, 5 * MIB) else {
            return;
        };
        // Fetched in 6 MiB ranges, across the uploader's 5 MiB parts: no
        // part boundary is needed.
        let cfg = server
            .config()
            .part_size(6 * MIB as u64)
            .multipart_threshold(6 * MIB as u64);
        let up = Uploader::new(cfg).unwrap();
        for listed in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let job = if listed {
                up.download_prefix("dl/full", dir.path(), None).unwrap()
            } else {
                let mut batch = Batch::new();
                batch.add(dir.path().join("full crc32c"), key);
                up.download(&batch).unwrap()
            };
            let p = finish(&job, 60);
            server.assert_succeeded(&p);
            assert!(std::fs::read(dir.path().join("full crc32c")).unwrap() == data);
            assert!(partial_files(dir.path()).is_empty());
            let verified = job.files()[0].verified;
            match server.kind {
                // Garage keeps the right CRC32C and says it is FULL_OBJECT.
                Kind::Garage => {
                    assert!(head.contains("\"type\": \"FULL_OBJECT\""), "{head}");
                    assert_eq!(verified, Some(Verification::Crc32c), "listed {listed}");
                }
                // moto keeps a CRC32C that is not the object's (it says
                // FULL_OBJECT): the ETag decides, along the 5 MiB parts.
                Kind::Moto => {
                    assert!(head.contains("\"type\": \"FULL_OBJECT\""), "{head}");
                    assert_eq!(
                        verified,
                        Some(Verification::MultipartEtag),
                        "listed {listed}"
                    );
                }
                // s3s-fs keeps no checksum of a multipart object: the ETag.
                Kind::S3s => assert_eq!(
                    verified,
                    Some(Verification::MultipartEtag),
                    "listed {listed} ({head})"
                ),
            }
        }
    }
}

/// A Garage node holding `data` at `key`, put in 5 MiB parts by boto3 with
/// a full-object CRC32C, which Garage keeps and reports.
fn garage_with_full_object_crc32c(key: &str, data: &[u8]) -> Option<Server> {
    let server = support::garage()?;
    let head = support::put_full_object_crc32c(&server, key, data, 5 * MIB)?;
    assert!(head.contains("\"type\": \"FULL_OBJECT\""), "{head}");
    Some(server)
}

#[test]
fn a_byte_corrupted_on_the_way_fails_a_file_checked_by_its_stored_crc32c() {
    let key = "dl/corrupted";
    let data = pattern(9 * MIB, 22);
    let Some(server) = garage_with_full_object_crc32c(key, &data) else {
        return;
    };
    let proxy = Proxy::start(&server.endpoint);
    // One byte of one ranged GET is inverted on the way.
    proxy.add_rule(
        Rule::new(
            Match::method("GET")
                .and_path("corrupted")
                .and_header("range"),
            Action::CorruptAnswer { at: 1000 },
        )
        .times(1),
    );
    let cfg = server
        .config_via(&proxy.endpoint())
        .part_size(6 * MIB as u64)
        .multipart_threshold(6 * MIB as u64);
    let up = Uploader::new(cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut batch = Batch::new();
    let dest = dir.path().join("corrupted");
    batch.add(&dest, key);
    let job = up.download(&batch).unwrap();
    let p = finish(&job, 60);
    assert_eq!(p.state, JobState::Failed);
    let e = p.error.unwrap();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    assert!(e.to_string().contains(key), "the error names the key: {e}");
    let report = &job.files()[0];
    assert_eq!(report.state, FileState::Failed, "{report:?}");
    assert_eq!(report.verified, None, "{report:?}");
    assert!(!dest.exists(), "a corrupted file took its name");
    assert!(partial_files(dir.path()).is_empty());
}

#[test]
fn a_paused_download_checked_by_its_stored_crc32c_resumes_with_the_crc32c_of_what_it_kept() {
    let key = "dl/paused-crc";
    let data = pattern(20 * MIB, 23);
    let Some(server) = garage_with_full_object_crc32c(key, &data) else {
        return;
    };
    let proxy = Proxy::start(&server.endpoint);
    // One range hangs, so the job is mid-object when paused.
    proxy.add_rule(Rule::new(Match::method("GET").and_header("range"), Action::BlackHole).times(1));
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let dest = dir.path().join("out/paused.bin");
    let up = Uploader::new(small_parts(server.config_via(&proxy.endpoint())).workers(2)).unwrap();
    let mut b = Batch::new();
    b.add(&dest, key).journal(&journal);
    let job = up.download(&b).unwrap();
    let t0 = Instant::now();
    while job.progress().parts_done < 3 && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let done_before = job.progress().parts_done;
    assert_eq!(done_before, 3, "{:?}", job.progress());
    job.pause().unwrap();
    assert_eq!(finish(&job, 30).state, JobState::Paused);
    drop(up);

    let clean = Proxy::start(&server.endpoint);
    let up = Uploader::new(small_parts(server.config_via(&clean.endpoint()))).unwrap();
    let job = up.resume(&journal).unwrap();
    let p = finish(&job, 60);
    assert_eq!(p.state, JobState::Succeeded, "{:?}", p.error);
    assert!(std::fs::read(&dest).unwrap() == data);
    // The kept ranges' CRC32Cs came from the journal, the new one's from
    // its GET: together, the object's.
    assert_eq!(job.files()[0].verified, Some(Verification::Crc32c));
    let gets = clean.log().iter().filter(|e| e.method == "GET").count();
    assert_eq!(gets, 1, "only the missing range is fetched again");
    assert!(partial_files(dir.path()).is_empty());
}

/// A tmpfs of `size` mounted for the test and unmounted when dropped, or
/// `None` (with a visible note) where this process may not mount; for root
/// on CI (a VM) that is a failure.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallDisk { dir }),
            other => {
                let why = format!("cannot mount a tmpfs: {other:?}");
                // SAFETY: no arguments, no memory.
                let root = unsafe { libc::geteuid() } == 0;
                if root && std::env::var_os("CI").is_some() {
                    panic!("{why} (root on CI must be able to)");
                }
                eprintln!("SKIPPED: {why}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_disk_fails_the_file_before_its_bytes_are_fetched_and_names_the_path() {
    let Some(disk) = SmallDisk::mount("1m") else {
        return;
    };
    let server = support::s3s();
    let store = server.store();
    let fits = pattern(100 * 1024, 21);
    put(&store, "full/fits", &fits);
    put(&store, "full/too-big", &pattern(3 * MIB, 22));
    let proxy = Proxy::start(&server.endpoint);
    let up = Uploader::new(small_parts(server.config_via(&proxy.endpoint()))).unwrap();
    let dest = disk.path().join("too-big");
    let mut b = Batch::new();
    b.add(&dest, "full/too-big");
    let job = up.download(&b).unwrap();
    let p = finish(&job, 60);
    assert_eq!(p.state, JobState::Failed, "{:?}", p.error);
    let e = p.error.unwrap();
    assert!(e.to_string().contains(&*dest.to_string_lossy()), "{e}");
    assert!(e.to_string().contains("no space left on device"), "{e}");
    let report = &job.files()[0];
    assert_eq!(report.state, FileState::Failed, "{report:?}");
    assert_eq!(
        (report.bytes_done, report.verified),
        (0, None),
        "{report:?}"
    );
    // No byte of it was fetched, and nothing is left on the disk.
    assert!(
        proxy
            .log()
            .iter()
            .all(|x| !(x.method == "GET" && x.key() == "full/too-big" && x.status == Some(200))),
        "{:?}",
        proxy.log()
    );
    assert_eq!(std::fs::read_dir(disk.path()).unwrap().count(), 0);
    // What fits still downloads there.
    let mut b = Batch::new();
    b.add(disk.path().join("fits"), "full/fits");
    let p = finish(&up.download(&b).unwrap(), 60);
    server.assert_succeeded(&p);
    assert_eq!(std::fs::read(disk.path().join("fits")).unwrap(), fits);
    assert!(partial_files(disk.path()).is_empty());
}

#[test]
fn a_destination_the_process_may_not_write_fails_naming_the_path() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // Root writes anywhere: the download runs in a child process as
    // `nobody` (uid 65534), which only a privileged test process can start.
    // SAFETY: no arguments, no memory.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: starting a process as another user needs root");
        return;
    }
    let server = support::s3s();
    put(&server.store(), "denied/x", &pattern(200 * 1024, 31));
    let proxy = Proxy::start(&server.endpoint);
    let dir = tempfile::tempdir().unwrap();
    let open = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    // Its journal where it may write; the destination where it may not.
    open(dir.path(), 0o777);
    let closed = dir.path().join("closed");
    std::fs::create_dir(&closed).unwrap();
    open(&closed, 0o555);
    let dest = closed.join("x");
    // The test binary where `nobody` may run it (the checkout may be
    // under a directory only root can enter, such as /root).
    let exe = dir.path().join("tests-as-nobody");
    let own = std::env::current_exe().unwrap();
    if std::fs::hard_link(&own, &exe).is_err() {
        std::fs::copy(&own, &exe).unwrap();
    }
    open(&exe, 0o755);
    let out = crate::journal::child_command(
        &exe,
        &server,
        &proxy.endpoint(),
        "download",
        &format!("{}\tdenied/x\n", dest.display()),
        &dir.path().join("journal"),
    )
    .uid(65534)
    .gid(65534)
    .current_dir(dir.path())
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said = format!("{stdout}{stderr}");
    assert!(said.contains("CHILD-STATE Failed"), "{said}");
    assert!(said.contains(&*closed.to_string_lossy()), "{said}");
    assert!(said.contains("permission denied"), "{said}");
    assert!(
        proxy
            .log()
            .iter()
            .all(|e| !(e.method == "GET" && e.status == Some(200))),
        "bytes were fetched: {:?}",
        proxy.log()
    );
    assert_eq!(std::fs::read_dir(&closed).unwrap().count(), 0);
}

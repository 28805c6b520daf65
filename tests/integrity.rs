//! `integrity=auto`, the default: the probe's answer on each store (s3s-fs,
//! moto, Garage when installed) against what that store really does with a
//! wrong `x-amz-checksum-crc32c`; stores that refuse the algorithm or ignore
//! the checksum (emulated by the fault proxy); a probe without an answer;
//! one probe per uploader and endpoint; explicit modes that skip it; a stop
//! during the probe. After every probe, no upload is left open.

use std::time::{Duration, Instant};

use batchput::store::{Body, SentChecksum, Store};
use batchput::{Config, FileState, Integrity, JobState, Uploader};

use crate::support::proxy::{Action, Entry, Match, Proxy, Rule};
use crate::support::{self, finish, make_files, small_parts, specs, Files, Server, MIB};

const ALGORITHM: &str = "x-amz-checksum-algorithm";
const CRC: &str = "x-amz-checksum-crc32c";

/// What the store really does, asked by hand: `Crc32c` when it takes a part
/// with the right `x-amz-checksum-crc32c` and refuses one with a wrong one
/// (in an upload created with the CRC32C algorithm), else `EtagMd5`.
fn by_hand(what: &str, store: &Store) -> Integrity {
    let key = "by-hand/crc32c";
    let id = match store.create_multipart_upload_with(key, true, 0) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("{what} refuses the CRC32C algorithm: {e}");
            return Integrity::EtagMd5;
        }
    };
    let data = b"checked by hand";
    let crc = crc32c::crc32c(data);
    let send =
        |n, crc| store.upload_part(key, &id, n, Body::Bytes(data), SentChecksum::Crc32c(crc), 0);
    let right = send(1, crc);
    let wrong = send(2, !crc);
    store.abort_multipart_upload(key, &id, 0).unwrap();
    eprintln!(
        "{what} by hand: right checksum {:?}, wrong checksum {:?}",
        right.as_ref().map(|_| "accepted"),
        wrong
            .as_ref()
            .map(|_| "accepted")
            .map_err(|e| e.to_string())
    );
    if right.is_ok() && wrong.is_err() {
        Integrity::Crc32c
    } else {
        Integrity::EtagMd5
    }
}

/// A file of each way of sending: in parts, one PUT from the file, and one
/// PUT from memory (16 KiB or less, checksummed on the worker).
fn files_of_each_kind(prefix: &str) -> Files {
    make_files(&specs(&[
        (&format!("{prefix}/big"), 11 * MIB),
        (&format!("{prefix}/small"), 100 * 1024),
        (&format!("{prefix}/tiny"), 1000),
    ]))
}

/// Runs `files` on `up` to success and returns the mode the job used.
fn upload(up: &Uploader, files: &Files) -> Option<Integrity> {
    let job = up.start(&files.batch()).unwrap();
    let p = finish(&job, 120);
    assert_eq!(p.state, JobState::Succeeded, "{:?}", p.error);
    p.integrity_used
}

/// The job's own requests (not the probe's) carried CRC32C exactly when
/// `mode` is crc32c: the algorithm on each create, the checksum on each
/// part and PutObject.
fn assert_sent_as(log: &[Entry], mode: Integrity) {
    let crc = mode == Integrity::Crc32c;
    let job: Vec<&Entry> = log.iter().filter(|e| !e.is_probe()).collect();
    let creates: Vec<_> = job.iter().filter(|e| e.is_create_upload()).collect();
    let data: Vec<_> = job
        .iter()
        .filter(|e| e.method == "PUT" && e.body_len > 0)
        .collect();
    assert!(!creates.is_empty() && data.len() >= 2, "{log:?}");
    for e in creates {
        assert_eq!(e.has_header(ALGORITHM), crc, "{mode}: {e:?}");
    }
    for e in data {
        assert_eq!(e.has_header(CRC), crc, "{mode}: {e:?}");
    }
}

#[test]
fn the_probe_finds_what_each_store_does() {
    for server in support::servers() {
        let expected = by_hand(&format!("{:?}", server.kind), &server.store());
        eprintln!("{:?}: integrity auto should choose {expected}", server.kind);
        let proxy = Proxy::start(&server.endpoint);
        let up = Uploader::new(small_parts(server.config_via(&proxy.endpoint()))).unwrap();
        assert!(
            format!("{:?}", up.config()).contains("integrity: Auto"),
            "the default"
        );
        let files = files_of_each_kind("probe");
        assert_eq!(upload(&up, &files), Some(expected), "{:?}", server.kind);
        files.verify_all(&server.store());
        server.assert_no_open_uploads();

        let log = proxy.log();
        let probe: Vec<&Entry> = log.iter().filter(|e| e.is_probe()).collect();
        // Create, the right part, the wrong one, abort, ListParts.
        assert_eq!(probe.iter().filter(|e| e.is_create_upload()).count(), 1);
        assert_eq!(probe.iter().filter(|e| e.is_upload_part()).count(), 2);
        assert!(probe.iter().any(|e| e.is_abort()), "{probe:?}");
        // In the batch's own key space: the first file's key.
        assert!(
            probe[0].key().starts_with("probe/big.batchput-probe-"),
            "{probe:?}"
        );
        // The verdict (Create and both parts) before any byte of the job;
        // the abort and its check may run beside the job, which waited for
        // them before it ended (no upload open, above).
        let first_job_request = log.iter().position(|e| !e.is_probe()).unwrap();
        let last_verdict_request = log
            .iter()
            .rposition(|e| e.is_probe() && (e.is_create_upload() || e.is_upload_part()))
            .unwrap();
        assert!(last_verdict_request < first_job_request, "{log:?}");
        assert_sent_as(&log, expected);
    }
}

/// A proxy before `server` that is a store verifying CRC32C (s3s-fs and
/// moto take any x-amz-checksum-crc32c on a part: see the test above).
fn verifying_front(server: &Server) -> Proxy {
    let proxy = Proxy::start(&server.endpoint);
    proxy.add_rule(Rule::new(
        Match::method("PUT").and_header(CRC),
        Action::VerifyCrc32c,
    ));
    proxy
}

#[test]
fn a_store_that_verifies_crc32c_gets_it() {
    let server = support::s3s();
    let proxy = verifying_front(&server);
    // What it does, asked by hand through the front.
    let front = Store::new(&server.config_via(&proxy.endpoint())).unwrap();
    assert_eq!(by_hand("the verifying front", &front), Integrity::Crc32c);
    proxy.reset_log();

    let up = Uploader::new(small_parts(server.config_via(&proxy.endpoint()))).unwrap();
    let files = files_of_each_kind("verifies");
    assert_eq!(upload(&up, &files), Some(Integrity::Crc32c));
    files.verify_all(&server.store());
    server.assert_no_open_uploads();
    let log = proxy.log();
    // The wrong part was refused by the front, the right one stored.
    let statuses: Vec<_> = log
        .iter()
        .filter(|e| e.is_probe() && e.is_upload_part())
        .map(|e| e.status)
        .collect();
    assert_eq!(statuses, [Some(200), Some(400)], "{log:?}");
    assert_sent_as(&log, Integrity::Crc32c);
}

#[test]
fn a_store_that_refuses_the_algorithm_gets_etag_md5() {
    // OBS, OSS and older MinIO refuse the header they do not know.
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    proxy.add_rule(Rule::new(
        Match::method("POST")
            .and_query("uploads")
            .and_header(ALGORITHM),
        Action::respond(
            400,
            "InvalidArgument",
            "x-amz-checksum-algorithm is not supported",
        ),
    ));
    let up = Uploader::new(small_parts(server.config_via(&proxy.endpoint()))).unwrap();
    let files = files_of_each_kind("refuses");
    assert_eq!(upload(&up, &files), Some(Integrity::EtagMd5));
    files.verify_all(&server.store());
    server.assert_no_open_uploads();
    let log = proxy.log();
    assert_eq!(log.iter().filter(|e| e.is_probe()).count(), 1, "{log:?}");
    assert_sent_as(&log, Integrity::EtagMd5);
}

#[test]
fn a_store_that_ignores_the_checksum_gets_etag_md5() {
    // A store that takes any part, whatever its x-amz-checksum-crc32c says.
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    proxy.add_rule(Rule::new(
        Match::method("PUT").and_header(CRC),
        Action::respond(200, "Ignored", "the checksum was not looked at"),
    ));
    let up = Uploader::new(small_parts(server.config_via(&proxy.endpoint()))).unwrap();
    let files = files_of_each_kind("ignores");
    assert_eq!(upload(&up, &files), Some(Integrity::EtagMd5));
    files.verify_all(&server.store());
    server.assert_no_open_uploads();
    let log = proxy.log();
    let probe_parts = log
        .iter()
        .filter(|e| e.is_probe() && e.is_upload_part() && e.injected)
        .count();
    assert_eq!(probe_parts, 2, "both probe parts were 'accepted': {log:?}");
    assert_sent_as(&log, Integrity::EtagMd5);
}

#[test]
fn a_probe_without_an_answer_leaves_the_job_on_etag_md5_and_is_asked_again() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    // The probe's first part: the connection is cut before its body.
    proxy.add_rule(
        Rule::new(
            Match::method("PUT").and_header(CRC),
            Action::CutAfter { bytes: 0 },
        )
        .times(1),
    );
    proxy.add_rule(Rule::new(
        Match::method("PUT").and_header(CRC),
        Action::VerifyCrc32c,
    ));
    let up = Uploader::new(small_parts(server.config_via(&proxy.endpoint()))).unwrap();
    let files = files_of_each_kind("cut");
    assert_eq!(
        upload(&up, &files),
        Some(Integrity::EtagMd5),
        "the job is not failed"
    );
    // The probe's upload was aborted all the same.
    server.assert_no_open_uploads();
    assert_sent_as(&proxy.log(), Integrity::EtagMd5);

    // No answer is not remembered: the next job asks again, and gets one.
    proxy.reset_log();
    let again = files_of_each_kind("cut-again");
    assert_eq!(upload(&up, &again), Some(Integrity::Crc32c));
    let log = proxy.log();
    assert_eq!(
        log.iter()
            .filter(|e| e.is_probe() && e.is_create_upload())
            .count(),
        1
    );
    assert_sent_as(&log, Integrity::Crc32c);
    files.verify_all(&server.store());
    again.verify_all(&server.store());
    server.assert_no_open_uploads();
}

#[test]
fn the_probe_runs_once_per_uploader() {
    let server = support::s3s();
    let proxy = verifying_front(&server);
    let cfg = small_parts(server.config_via(&proxy.endpoint()));
    let probes = || proxy.count(|e| e.is_probe() && e.is_create_upload());

    let up = Uploader::new(cfg.clone()).unwrap();
    let first = files_of_each_kind("once/1");
    let second = files_of_each_kind("once/2");
    assert_eq!(upload(&up, &first), Some(Integrity::Crc32c));
    assert_eq!(upload(&up, &second), Some(Integrity::Crc32c));
    assert_eq!(probes(), 1, "two jobs, one probe");

    // Another uploader knows nothing yet.
    let other = Uploader::new(cfg).unwrap();
    let third = files_of_each_kind("once/3");
    assert_eq!(upload(&other, &third), Some(Integrity::Crc32c));
    assert_eq!(probes(), 2);
    for f in [&first, &second, &third] {
        f.verify_all(&server.store());
    }
    server.assert_no_open_uploads();
}

#[test]
fn an_explicit_mode_skips_the_probe() {
    let server = support::s3s();
    for mode in [
        Integrity::EtagMd5,
        Integrity::ContentMd5,
        Integrity::Crc32c,
        Integrity::None,
    ] {
        let proxy = Proxy::start(&server.endpoint);
        let mut cfg = small_parts(server.config_via(&proxy.endpoint()));
        // The string form, as the C ABI and the command set it.
        cfg.set("integrity", mode.as_str()).unwrap();
        let up = Uploader::new(cfg).unwrap();
        let files = files_of_each_kind(&format!("explicit/{mode}"));
        assert_eq!(upload(&up, &files), Some(mode));
        let log = proxy.log();
        assert_eq!(
            log.iter().filter(|e| e.is_probe()).count(),
            0,
            "{mode}: {log:?}"
        );
        assert_sent_as(&log, mode);
        files.verify_all(&server.store());
    }
    server.assert_no_open_uploads();
}

#[test]
fn every_endpoint_is_asked_and_the_weakest_answer_wins() {
    let server = support::s3s();
    // Two "nodes" of one cluster (proxies before the same server): the
    // first verifies CRC32C, the second refuses the algorithm.
    let a = verifying_front(&server);
    let b = Proxy::start(&server.endpoint);
    b.add_rule(Rule::new(
        Match::method("POST")
            .and_query("uploads")
            .and_header(ALGORITHM),
        Action::respond(400, "InvalidRequest", "checksum algorithm not supported"),
    ));
    let cfg = small_parts(server.config_via(&format!("{},{}", a.endpoint(), b.endpoint())));
    let up = Uploader::new(cfg.clone()).unwrap();
    let files = files_of_each_kind("weakest");
    assert_eq!(upload(&up, &files), Some(Integrity::EtagMd5));
    // Each node answered its own probe (not one for the other).
    let probes = |p: &Proxy| p.count(|e| e.is_probe() && e.is_create_upload());
    assert_eq!((probes(&a), probes(&b)), (1, 1));
    files.verify_all(&server.store());

    // Both answers are kept: a second job asks nobody.
    let again = files_of_each_kind("weakest-again");
    assert_eq!(upload(&up, &again), Some(Integrity::EtagMd5));
    assert_eq!((probes(&a), probes(&b)), (1, 1));
    again.verify_all(&server.store());

    // Two nodes that verify: crc32c.
    b.clear_rules();
    b.add_rule(Rule::new(
        Match::method("PUT").and_header(CRC),
        Action::VerifyCrc32c,
    ));
    let both = Uploader::new(cfg).unwrap();
    let third = files_of_each_kind("weakest-both");
    assert_eq!(upload(&both, &third), Some(Integrity::Crc32c));
    assert_eq!((probes(&a), probes(&b)), (2, 2));
    third.verify_all(&server.store());
    server.assert_no_open_uploads();
}

#[test]
fn a_stop_during_the_probe_is_prompt_and_leaves_nothing_open() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    // The probe's first part is never answered.
    proxy.add_rule(Rule::new(
        Match::method("PUT").and_header(CRC),
        Action::BlackHole,
    ));
    let up = Uploader::new(small_parts(server.config_via(&proxy.endpoint()))).unwrap();
    let files = files_of_each_kind("stop");
    let job = up.start(&files.batch()).unwrap();
    assert!(proxy.wait_for(Duration::from_secs(10), |log| log
        .iter()
        .any(|e| e.is_probe() && e.is_upload_part())));
    let stopped = Instant::now();
    job.stop();
    let p = finish(&job, 30);
    assert!(
        stopped.elapsed() < Duration::from_secs(3),
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!(p.state, JobState::Stopped);
    assert_eq!(p.integrity_used, None, "no data was sent");
    assert_eq!(p.bytes_done, 0);
    for f in job.files() {
        assert_eq!(f.state, FileState::NotStarted, "{f:?}");
    }
    // The probe's upload is gone, and the job made none.
    server.assert_no_open_uploads();
    let log = proxy.log();
    assert_eq!(log.iter().filter(|e| !e.is_probe()).count(), 0, "{log:?}");
    files.assert_absent(&server.store(), 0);
}

#[test]
fn auto_is_the_default_and_a_value_of_the_option() {
    let mode = |cfg: &Config| {
        let debug = format!("{cfg:?}");
        let at = debug.find("integrity: ").unwrap() + "integrity: ".len();
        debug[at..].split(',').next().unwrap().to_string()
    };
    assert_eq!(mode(&Config::new()), "Auto");
    let mut cfg = Config::new().integrity(Integrity::Crc32c);
    cfg.set("integrity", "auto").unwrap();
    assert_eq!(mode(&cfg), "Auto");
    let e = cfg.set("integrity", "md5").unwrap_err();
    assert!(e.to_string().contains("expected auto, etag-md5"), "{e}");
}

/// `etag-md5` end to end, with the MD5 computed apart from the send (the
/// uploader's MD5 thread): a byte corrupted on the way is caught by the
/// server's ETag and the request sent again; corrupted at every attempt,
/// the job fails naming the file, with nothing stored and no upload open.
#[test]
fn a_byte_corrupted_on_the_way_is_caught_by_the_etag_and_sent_again() {
    for server in support::fast_servers() {
        let proxy = Proxy::start(&server.endpoint);
        proxy.add_rule(Rule::new(Match::part(2), Action::Corrupt { at: 12_345 }).times(1));
        proxy.add_rule(
            Rule::new(
                Match::method("PUT").and_path("bad-once/small"),
                Action::Corrupt { at: 7 },
            )
            .times(1),
        );
        let files = make_files(&specs(&[
            ("bad-once/big", 12 * MIB),
            ("bad-once/small", 1000),
        ]));
        let cfg = small_parts(server.config_via(&proxy.endpoint())).integrity(Integrity::EtagMd5);
        let up = Uploader::new(cfg).unwrap();
        let p = finish(&up.start(&files.batch()).unwrap(), 60);
        server.assert_succeeded(&p);
        files.verify_all(&server.store());
        let part2 = proxy
            .count(|e| e.is_file_part() && e.query_param("partNumber").as_deref() == Some("2"));
        assert_eq!(part2, 2, "part 2 was caught and sent again");
        let small = proxy.count(|e| e.method == "PUT" && e.path.contains("bad-once/small"));
        assert_eq!(small, 2, "the small file was caught and sent again");
        server.assert_no_open_uploads();

        proxy.clear_rules();
        proxy.add_rule(Rule::new(Match::part(1), Action::Corrupt { at: 0 }));
        let files = make_files(&specs(&[("bad-always/big", 12 * MIB)]));
        let cfg = small_parts(server.config_via(&proxy.endpoint()))
            .integrity(Integrity::EtagMd5)
            .retries(2);
        let up = Uploader::new(cfg).unwrap();
        let p = finish(&up.start(&files.batch()).unwrap(), 60);
        assert_eq!(p.state, JobState::Failed, "{:?}", server.kind);
        let e = p.error.unwrap();
        assert_eq!(e.kind(), batchput::ErrorKind::Integrity, "{e}");
        assert_eq!(e.key(), Some("bad-always/big"), "{e}");
        assert!(e.to_string().contains("differs from the MD5"), "{e}");
        files.assert_absent(&server.store(), 0);
        server.assert_no_open_uploads();
    }
}

//! A journaled upload interrupted by Ctrl-C or SIGTERM pauses: its uploads
//! and acknowledged parts stay, and `resume` sends only what is missing,
//! counted at the fault proxy.

use super::*;

const PART: usize = 5 * MIB;

/// Starts a journaled upload of `tree` through `proxy` (parts throttled)
/// and returns it once at least two parts are acknowledged.
fn journaled_in_flight(
    server: &Server,
    proxy: &Proxy,
    dir: &Path,
    journal: &Path,
    extra: &[&str],
) -> Child {
    proxy.add_rule(Rule::new(
        Match::file_parts(),
        Action::Throttle {
            bytes_per_sec: 4 * MIB as u64,
        },
    ));
    let mut args: Vec<String> = vec!["upload".into(), dir.to_string_lossy().into()];
    args.extend(dest(server, &proxy.endpoint()));
    args.extend(
        [
            "--journal",
            journal.to_str().unwrap(),
            "--prefix",
            "p/",
            "--part-size",
            "5MiB",
            "--multipart-threshold",
            "5MiB",
            "--workers",
            "4",
            "--json",
        ]
        .map(String::from),
    );
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = batchput(&args).spawn().unwrap();
    assert!(
        proxy.wait_for(Duration::from_secs(60), |log| log
            .iter()
            .filter(|e| e.is_file_part() && e.status == Some(200))
            .count()
            >= 2),
        "no part was acknowledged"
    );
    child
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

#[test]
fn ctrl_c_pauses_a_journaled_upload_and_resume_sends_only_the_missing_parts() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    let dir = tempfile::tempdir().unwrap();
    let tree = make_tree(
        dir.path(),
        &[
            ("a.bin", 12 * MIB),
            ("b.bin", 11 * MIB),
            ("c.bin", 10 * MIB),
            ("small.txt", 1000),
        ],
    );
    let jdir = tempfile::tempdir().unwrap();
    let journal = jdir.path().join("job.journal");
    let child = journaled_in_flight(&server, &proxy, dir.path(), &journal, &[]);
    signal(&child, libc::SIGINT);
    let r = finish(child, 60);
    assert_eq!(r.code, Some(130), "{r:?}");
    assert!(
        r.stderr.lines().any(|l| l
            == format!(
                "paused: resume with `batchput resume --journal {}`",
                journal.display()
            )),
        "{r:?}"
    );
    assert!(
        r.stderr
            .contains("Ctrl-C: pausing; acknowledged parts stay on the server for resume"),
        "{r:?}"
    );
    let paused: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("one JSON object");
    assert_eq!(paused["state"], "paused", "{r:?}");
    assert_eq!(paused["error"]["kind"], "paused");
    assert_eq!(
        proxy.count(|e| e.is_abort() && !e.is_probe()),
        0,
        "nothing was aborted"
    );
    assert!(!server.open_uploads().is_empty(), "the uploads were kept");
    let total = paused["bytes_total"].as_u64().unwrap();
    let acknowledged = paused["bytes_done"].as_u64().unwrap();
    assert!(acknowledged > 0, "{paused}");
    let open_files = paused["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["state"] == "paused")
        .count() as u64;

    // Resume through the same proxy, no longer throttled: bucket and
    // endpoint come from the journal.
    proxy.clear_rules();
    proxy.reset_log();
    let r = run_owned(&[
        "resume".into(),
        "--journal".into(),
        journal.to_string_lossy().into(),
        "--access-key".into(),
        server.access_key.clone(),
        "--secret-key".into(),
        server.secret_key.clone(),
        "--json".into(),
    ]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["state"], "succeeded", "{r:?}");
    assert_eq!(v["bucket"], server.bucket.as_str());
    let resent: u64 = proxy
        .log()
        .iter()
        .filter(|e| e.method == "PUT")
        .map(|e| e.body_len)
        .sum();
    let missing = total - acknowledged;
    assert!(
        resent <= missing + open_files * PART as u64,
        "resume sent {resent} bytes; {missing} were missing, {open_files} uploads open"
    );
    assert!(
        resent < total,
        "resume sent everything again ({resent} bytes)"
    );
    assert!(v["bytes_resumed"].as_u64().unwrap() > 0, "{v}");
    let store = server.store();
    for (rel, data) in &tree {
        let got = store.get_object(&format!("p/{rel}")).unwrap();
        assert!(got == *data, "bytes of 'p/{rel}' differ");
    }
    server.assert_no_open_uploads();

    // Resuming the finished journal: nothing to do, and said so.
    let r = run_owned(&[
        "resume".into(),
        "--journal".into(),
        journal.to_string_lossy().into(),
        "--access-key".into(),
        server.access_key.clone(),
        "--secret-key".into(),
        server.secret_key.clone(),
    ]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let size: usize = tree.iter().map(|(_, d)| d.len()).sum();
    assert_eq!(
        r.stdout,
        format!(
            "nothing left to upload: all 4 files ({}) were already complete at s3://{}/p/\n",
            batchput_cli::human_bytes(size as u64),
            server.bucket
        ),
        "{r:?}"
    );
}

#[test]
fn sigterm_pauses_and_abort_on_interrupt_aborts() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path(), &[("a.bin", 12 * MIB), ("b.bin", 11 * MIB)]);
    let jdir = tempfile::tempdir().unwrap();

    let journal = jdir.path().join("term.journal");
    let child = journaled_in_flight(&server, &proxy, dir.path(), &journal, &[]);
    signal(&child, libc::SIGTERM);
    let r = finish(child, 60);
    assert_eq!(r.code, Some(143), "{r:?}");
    assert!(
        r.stderr.contains(
            "SIGTERM: pausing; acknowledged parts stay on the server for resume \
             (a second SIGTERM or Ctrl-C quits at once)"
        ),
        "{r:?}"
    );
    assert!(!r.stderr.contains("press Ctrl-C"), "{r:?}");
    assert_eq!(proxy.count(|e| e.is_abort() && !e.is_probe()), 0);

    // --abort-on-interrupt: the old way, stop and abort.
    proxy.clear_rules();
    proxy.reset_log();
    let other = tempfile::tempdir().unwrap();
    make_tree(other.path(), &[("c.bin", 12 * MIB), ("d.bin", 11 * MIB)]);
    let journal = jdir.path().join("abort.journal");
    let child = journaled_in_flight(
        &server,
        &proxy,
        other.path(),
        &journal,
        &["--abort-on-interrupt"],
    );
    signal(&child, libc::SIGINT);
    let r = finish(child, 60);
    assert_eq!(r.code, Some(130), "{r:?}");
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["state"], "stopped", "{r:?}");
    assert!(proxy.count(|e| e.is_abort() && !e.is_probe()) >= 1, "{r:?}");
    assert!(r.stderr.contains("stopped by Ctrl-C"), "{r:?}");
}

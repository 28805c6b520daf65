//! Interrupts as a person sends them (Ctrl-C, SIGTERM, a second one, a
//! kill) and what `resume` makes of what they leave: exit statuses, the
//! lines said, and what the server holds afterwards.

use super::*;

#[test]
fn ctrl_c_aborts_every_open_upload_and_exits_130() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    // Parts crawl, so the upload is surely in flight when Ctrl-C comes.
    proxy.add_rule(Rule::new(
        Match::file_parts(),
        Action::Throttle {
            bytes_per_sec: MIB as u64,
        },
    ));
    // Parts of 16 MiB (the default part size), more than loopback socket buffers
    // hold: a part the client abandons can never arrive whole. (A smaller
    // one could sit complete in the buffers and, forwarded by the proxy
    // after the abort, be stored by s3s-fs as a stray part.)
    let dir = tempfile::tempdir().unwrap();
    make_tree(
        dir.path(),
        &[
            ("a.bin", 32 * MIB),
            ("b.bin", 32 * MIB),
            ("c.bin", 32 * MIB),
            ("small.txt", 10),
        ],
    );
    let mut args: Vec<String> = vec!["upload".into(), dir.path().to_string_lossy().into()];
    args.extend(dest(&server, &proxy.endpoint()));
    args.extend(["--workers", "4", "--multipart-threshold", "16MiB"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = batchput(&args).spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    assert!(
        proxy.wait_for(Duration::from_secs(30), |log| log
            .iter()
            .filter(|e| e.is_file_part())
            .count()
            >= 2),
        "parts never started"
    );
    let sent = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let r = finish(child, 60);
    let took = sent.elapsed();
    assert_eq!(r.code, Some(130), "{r:?}");
    assert!(
        r.stderr.contains(
            "Ctrl-C: stopping and aborting open uploads (press Ctrl-C again to quit at once)"
        ),
        "{r:?}"
    );
    assert!(r.stderr.contains("stopped by Ctrl-C: "), "{r:?}");
    assert!(
        r.stdout.contains("stopped:"),
        "the report is printed: {r:?}"
    );
    assert!(
        took < Duration::from_secs(15),
        "stopping took {took:?}: in-flight parts should be cut"
    );
    assert!(
        proxy.count(|e| e.is_abort() && !e.is_probe()) >= 1,
        "uploads were aborted"
    );
    server.assert_no_open_uploads();
}

/// Starts an upload of three 16 MiB files through `proxy` with `extra`
/// flags and returns the child once its parts are on the wire.
fn upload_in_flight(
    server: &Server,
    proxy: &Proxy,
    dir: &std::path::Path,
    extra: &[&str],
) -> Child {
    proxy.add_rule(Rule::new(
        Match::file_parts(),
        Action::Throttle {
            bytes_per_sec: MIB as u64,
        },
    ));
    let mut args: Vec<String> = vec!["upload".into(), dir.to_string_lossy().into()];
    args.extend(dest(server, &proxy.endpoint()));
    args.extend(["--workers", "4", "--multipart-threshold", "16MiB"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = batchput(&args).spawn().unwrap();
    assert!(
        proxy.wait_for(Duration::from_secs(30), |log| log
            .iter()
            .filter(|e| e.is_file_part())
            .count()
            >= 2),
        "parts never started"
    );
    child
}

#[test]
fn ctrl_c_with_the_server_frozen_ends_within_the_cleanup_budget() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path(), &[("a.bin", 32 * MIB), ("b.bin", 32 * MIB)]);
    let child = upload_in_flight(
        &server,
        &proxy,
        dir.path(),
        &["--json", "--cleanup-timeout", "3s"],
    );
    // SIGSTOP, as the client sees it: nothing answers any more.
    proxy.freeze(true);
    let sent = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let r = finish(child, 60);
    let took = sent.elapsed();
    // The 3 s budget, plus 2 s, plus room for a loaded machine.
    assert!(took < Duration::from_secs(9), "Ctrl-C took {took:?}: {r:?}");
    assert_eq!(r.code, Some(130), "{r:?}");
    let report: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("one JSON object");
    let files = report["files"].as_array().unwrap();
    let still_open: Vec<_> = files
        .iter()
        .filter(|f| f["state"] == "abort_failed")
        .collect();
    assert!(!still_open.is_empty(), "{r:?}");
    for f in &still_open {
        // Reported by id, so the janitor (or a person) can end it.
        assert!(
            f["upload_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{f}"
        );
    }
    assert!(files
        .iter()
        .all(|f| f["state"] != "aborted" || f["upload_id"].is_null()));
    proxy.freeze(false);
}

#[test]
fn a_second_ctrl_c_quits_at_once() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path(), &[("a.bin", 32 * MIB)]);
    let child = upload_in_flight(&server, &proxy, dir.path(), &["--cleanup-timeout", "60s"]);
    proxy.freeze(true);
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    std::thread::sleep(Duration::from_millis(700));
    let second = Instant::now();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let r = finish(child, 30);
    assert!(
        second.elapsed() < Duration::from_secs(3),
        "{:?}: {r:?}",
        second.elapsed()
    );
    assert_eq!(r.code, Some(130), "{r:?}");
    proxy.freeze(false);
}

#[test]
fn a_killed_upload_continues_with_resume() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    proxy.add_rule(Rule::new(
        Match::file_parts(),
        Action::Throttle {
            bytes_per_sec: 6 * MIB as u64,
        },
    ));
    let dir = tempfile::tempdir().unwrap();
    let tree = make_tree(
        dir.path(),
        &[
            ("a.bin", 12 * MIB),
            ("b.bin", 11 * MIB),
            ("small.txt", 1000),
        ],
    );
    let journal = tempfile::tempdir().unwrap();
    let journal = journal.path().join("job.journal");
    let journal_arg = journal.to_str().unwrap();
    let mut args: Vec<String> = vec!["upload".into(), dir.path().to_string_lossy().into()];
    args.extend(dest(&server, &proxy.endpoint()));
    args.extend(
        [
            "--journal",
            journal_arg,
            "--prefix",
            "r/",
            "--part-size",
            "5MiB",
            "--multipart-threshold",
            "5MiB",
            "--workers",
            "4",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = batchput(&args).spawn().unwrap();
    assert!(
        proxy.wait_for(Duration::from_secs(60), |log| log
            .iter()
            .filter(|e| e.is_file_part() && e.status == Some(200))
            .count()
            >= 2),
        "no part was acknowledged"
    );
    // A crash, not a Ctrl-C: nothing is cleaned up.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    let _ = child.wait();
    // Let s3s-fs store what the dead process had fully sent.
    std::thread::sleep(Duration::from_secs(1));
    proxy.clear_rules();
    assert!(
        !server.open_uploads().is_empty(),
        "the crash left uploads open"
    );

    let mut args: Vec<String> = vec!["resume".into(), "--journal".into(), journal_arg.into()];
    args.extend(dest(&server, &proxy.endpoint()));
    args.push("--json".into());
    let r = run_owned(&args);
    assert_eq!(r.code, Some(0), "{r:?}");
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["state"], "succeeded", "{r:?}");
    assert_eq!(v["files_done"], 3);
    let store = server.store();
    for (rel, data) in &tree {
        let got = store.get_object(&format!("r/{rel}")).unwrap();
        assert!(got == *data, "bytes of 'r/{rel}' differ");
    }
    server.assert_no_open_uploads();
}

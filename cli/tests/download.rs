//! `batchput download` as a person runs it: a prefix into a directory,
//! byte for byte, with `--json` saying how each file was checked; a
//! SIGTERM with a journal pauses (the temporary file kept, no file under
//! its final name) and `resume` finishes it fetching only what was
//! missing; a key that would escape the directory refuses the job before
//! anything is written.

use batchput::store::{Body, SentChecksum};

use super::*;

/// `batchput download` of `prefix` into `dir` from `server` through
/// `endpoint`, with `extra` arguments.
fn download_args(server: &Server, endpoint: &str, prefix: &str, dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "download".into(),
        dir.to_string_lossy().into(),
        "--prefix".into(),
        prefix.into(),
    ];
    args.extend(dest(server, endpoint));
    args
}

/// Uploads `tree` (made under a fresh directory) to `prefix` with 5 MiB
/// parts, through the command itself.
fn upload_tree(server: &Server, prefix: &str, tree: &[(&str, usize)]) -> Vec<(String, Vec<u8>)> {
    let src = tempfile::tempdir().unwrap();
    let files = make_tree(src.path(), tree);
    let mut args: Vec<String> = vec!["upload".into(), src.path().to_string_lossy().into()];
    args.extend(dest(server, &server.endpoint));
    args.extend(
        [
            "--prefix",
            prefix,
            "--part-size",
            "5MiB",
            "--multipart-threshold",
            "5MiB",
        ]
        .map(String::from),
    );
    let r = run_owned(&args);
    assert_eq!(r.code, Some(0), "{r:?}");
    files
}

/// Files under `dir` whose names say they are unfinished downloads.
fn partial_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".batchput-partial") {
                found.push(p);
            }
        }
    }
    found
}

#[test]
fn download_writes_a_prefix_below_the_directory_and_json_says_how_each_file_was_checked() {
    let server = support::s3s();
    let tree = upload_tree(&server, "t/", AWKWARD_TREE);
    // Not under the prefix: not downloaded.
    server
        .store()
        .put_object("tother/x", Body::Bytes(b"x"), SentChecksum::None, 0)
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("in");
    let mut args = download_args(&server, &server.endpoint, "t/", &dir);
    args.push("--json".into());
    let r = run_owned(&args);
    assert_eq!(r.code, Some(0), "{r:?}");
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("one JSON object");
    assert_eq!(v["state"], "succeeded", "{r:?}");
    assert_eq!(v["bucket"], server.bucket.as_str());
    assert_eq!(v["files_total"], tree.len() as u64, "{v}");
    for (rel, data) in &tree {
        let got = std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(got == *data, "bytes of {rel} differ");
    }
    assert!(!out.path().join("x").exists() && !dir.join("x").exists());
    assert!(partial_files(out.path()).is_empty());
    let files = v["files"].as_array().unwrap();
    let verified = |key: &str| {
        let f = files
            .iter()
            .find(|f| f["key"] == key)
            .unwrap_or_else(|| panic!("no {key} in {v}"));
        assert_eq!(f["state"], "completed", "{f}");
        assert_eq!(f["path"], dir.join(&key[2..]).to_str().unwrap(), "{f}");
        f["verified"].as_str().unwrap_or("null").to_string()
    };
    assert_eq!(verified("t/top.txt"), "md5");
    assert_eq!(
        verified("t/nested/deeper/deepest/leaf.bin"),
        "multipart-etag"
    );
    for (rel, _) in &tree {
        assert_ne!(verified(&format!("t/{rel}")), "null", "{rel}");
    }

    // Without --json: the summary names the directory.
    let again = out.path().join("again");
    let r = run_owned(&download_args(&server, &server.endpoint, "t/", &again));
    assert_eq!(r.code, Some(0), "{r:?}");
    let total: usize = tree.iter().map(|(_, d)| d.len()).sum();
    assert!(
        r.stdout.starts_with(&format!(
            "downloaded {} files, {} to {} in ",
            tree.len(),
            batchput_cli::human_bytes(total as u64),
            again.display()
        )),
        "{r:?}"
    );
}

#[test]
fn sigterm_pauses_a_journaled_download_and_resume_fetches_only_what_is_missing() {
    let server = support::s3s();
    let tree = upload_tree(
        &server,
        "big/",
        &[("big.bin", 20 * MIB), ("small.txt", 1000)],
    );
    let proxy = Proxy::start(&server.endpoint);
    // The big object's last part never answers (by part number, or its
    // first range when the store serves none), so the job is mid-object
    // when the signal comes.
    proxy.add_rule(Rule::new(
        Match::method("GET").and_query("partNumber=4"),
        Action::BlackHole,
    ));
    proxy.add_rule(Rule::new(Match::method("GET").and_header("range"), Action::BlackHole).times(1));
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("in");
    let journal = out.path().join("get.journal");
    let mut args = download_args(&server, &proxy.endpoint(), "big/", &dir);
    args.extend(
        [
            "--journal",
            journal.to_str().unwrap(),
            "--part-size",
            "5MiB",
            "--multipart-threshold",
            "5MiB",
            "--workers",
            "2",
            "--json",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = batchput(&args).spawn().unwrap();
    // Two parts of the big object in place, as the job's journal records
    // them. Not two answers finished at the proxy: a part whose bytes
    // have all gone through still has to be written and checked in the
    // client, and a signal in between rightly leaves it to the resume (CI
    // saw one part done of two finished so, on a loaded machine).
    assert!(
        support::eventually(Duration::from_secs(60), || {
            support::journal_parts(&journal) >= 2
        }),
        "no part was fetched: {:?}",
        proxy.log()
    );
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let r = finish(child, 60);
    assert_eq!(r.code, Some(143), "{r:?}");
    assert!(
        r.stderr.contains(
            "SIGTERM: pausing; fetched parts stay in the temporary files for resume \
             (a second SIGTERM or Ctrl-C quits at once)"
        ),
        "{r:?}"
    );
    assert!(
        r.stderr.lines().any(|l| l
            == format!(
                "paused: resume with `batchput resume --journal {}`",
                journal.display()
            )),
        "{r:?}"
    );
    let paused: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("one JSON object");
    assert_eq!(paused["state"], "paused", "{r:?}");
    let parts_done = paused["parts_done"].as_u64().unwrap();
    assert!(parts_done >= 2, "{paused}");
    let big = dir.join("big.bin");
    assert!(!big.exists(), "a partial file under the final name");
    assert_eq!(
        partial_files(out.path()),
        vec![dir.join(".big.bin.batchput-partial")]
    );

    // Resume through the same proxy, no longer faulty: bucket and
    // endpoint come from the journal.
    proxy.clear_rules();
    proxy.reset_log();
    let resume = |json: bool| {
        let mut args: Vec<String> = vec![
            "resume".into(),
            "--journal".into(),
            journal.to_string_lossy().into(),
            "--access-key".into(),
            server.access_key.clone(),
            "--secret-key".into(),
            server.secret_key.clone(),
        ];
        if json {
            args.push("--json".into());
        }
        run_owned(&args)
    };
    let r = resume(true);
    assert_eq!(r.code, Some(0), "{r:?}");
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["state"], "succeeded", "{r:?}");
    for (rel, data) in &tree {
        assert!(
            std::fs::read(dir.join(rel)).unwrap() == *data,
            "bytes of {rel}"
        );
    }
    assert!(partial_files(out.path()).is_empty());
    let big_report = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == "big/big.bin")
        .unwrap();
    assert_eq!(big_report["verified"], "multipart-etag", "{v}");
    let gets = proxy.count(|e| e.method == "GET") as u64;
    // Of the job's parts (the big object's 4, the small file's 1), those
    // done before the pause are not fetched again.
    let parts_total = paused["parts_total"].as_u64().unwrap();
    assert_eq!(parts_total, 5, "{paused}");
    assert!(
        gets + parts_done <= parts_total,
        "{gets} GETs on resume, {parts_done} parts were done: {:?}",
        proxy.log()
    );

    // Resuming the finished journal: nothing to do, and said so.
    let r = resume(false);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        r.stdout,
        format!(
            "nothing left to download: all 2 files ({}) were already complete at {}\n",
            batchput_cli::human_bytes((20 * MIB + 1000) as u64),
            dir.display()
        ),
        "{r:?}"
    );
}

#[test]
fn a_key_that_would_escape_the_directory_is_refused_and_nothing_is_written() {
    let server = support::s3s();
    let store = server.store();
    for key in ["esc/fine.txt", "esc/..\\..\\evil"] {
        store
            .put_object(key, Body::Bytes(b"data"), SentChecksum::None, 0)
            .unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("in");
    let r = run_owned(&download_args(&server, &server.endpoint, "esc/", &dir));
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr.starts_with(
            r"error: key 'esc/..\\..\\evil' cannot be downloaded: it holds a NUL or a backslash"
        ),
        "{r:?}"
    );
    assert_eq!(r.stdout, "", "{r:?}");
    let mut args = download_args(&server, &server.endpoint, "esc/", &dir);
    args.push("--json".into());
    let r = run_owned(&args);
    assert_eq!(r.code, Some(1), "{r:?}");
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("one JSON object");
    assert_eq!(v["state"], "failed");
    assert_eq!(v["error"]["phase"], "preflight");
    assert_eq!(v["error"]["kind"], "invalid_input");
    assert_eq!(v["error"]["key"], "esc/..\\..\\evil");
    // Nothing written: not the good key, not the bad one, not beside it.
    let written: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| !(p == &dir && std::fs::read_dir(p).unwrap().next().is_none()))
        .collect();
    assert!(written.is_empty(), "{written:?}");
}

#[test]
fn upload_options_are_refused_as_flags_and_ignored_in_the_environment() {
    let server = support::s3s();
    let files = upload_tree(&server, "opts/", &[("a.bin", 1000)]);
    let dir = tempfile::tempdir().unwrap();
    let mut args = download_args(&server, &server.endpoint, "opts/", dir.path());
    args.extend(["--acl", "private"].map(String::from));
    let r = run_owned(&args);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("'--acl'"), "the flag is named: {r:?}");
    assert!(!dir.path().join("a.bin").exists());

    // Set for uploads in the environment (even to a value an upload would
    // refuse): a download does not read it.
    let args = download_args(&server, &server.endpoint, "opts/", dir.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = batchput(&args)
        .env("BATCHPUT_INTEGRITY", "not-a-mode")
        .env("BATCHPUT_STORAGE_CLASS", "GLACIER")
        .spawn()
        .unwrap();
    let r = finish(child, 60);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(std::fs::read(dir.path().join("a.bin")).unwrap() == files[0].1);
}

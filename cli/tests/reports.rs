//! What the command says, line by line: `--json` on every exit path, the
//! messages of the issue that reported them wrong (each pinned here by
//! running the binary), and the quickstart's server for trying it.

use std::io::BufRead;

use super::*;

/// `upload PATH` to `server` at `endpoint` with `extra` flags.
fn upload_args(path: &Path, server: &Server, endpoint: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["upload".into(), path.to_string_lossy().into()];
    args.extend(dest(server, endpoint));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn json_of(r: &Run) -> serde_json::Value {
    assert_eq!(
        r.stdout.lines().count(),
        1,
        "stdout is one line of JSON: {r:?}"
    );
    serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {r:?}"))
}

/// The one stderr line that starts with `start`.
fn line<'a>(r: &'a Run, start: &str) -> &'a str {
    r.stderr
        .lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no stderr line starting {start:?}: {r:?}"))
}

#[test]
fn json_is_one_object_whatever_fails_before_the_upload() {
    let server = support::s3s();
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path(), &[("one.txt", 100)]);

    // A missing file.
    let missing = dir.path().join("gone.txt");
    let r = run_owned(&upload_args(
        &missing,
        &server,
        &server.endpoint,
        &["--json"],
    ));
    assert_eq!(r.code, Some(1), "{r:?}");
    let v = json_of(&r);
    assert_eq!(v["state"], "failed");
    assert_eq!(v["error"]["phase"], "preflight");
    assert_eq!(v["error"]["kind"], "invalid_input");
    assert_eq!(
        v["error"]["message"],
        format!(
            "cannot read {}: no such file or directory",
            missing.display()
        )
        .as_str()
    );
    assert_eq!(v["files"].as_array().unwrap().len(), 0);
    assert_eq!(
        line(&r, "error: "),
        format!(
            "error: cannot read {}: no such file or directory",
            missing.display()
        )
    );

    // An unreadable file (root reads anything: then a path through a file).
    let unreadable = dir.path().join("locked.txt");
    std::fs::write(&unreadable, b"secret").unwrap();
    // SAFETY: geteuid(2) has no preconditions.
    let unreadable = if unsafe { libc::geteuid() } != 0 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o000)).unwrap();
        unreadable
    } else {
        unreadable.join("inside")
    };
    let r = run_owned(&upload_args(
        &unreadable,
        &server,
        &server.endpoint,
        &["--json"],
    ));
    assert_eq!(r.code, Some(1), "{r:?}");
    let v = json_of(&r);
    assert_eq!(v["error"]["phase"], "preflight", "{v}");
    assert_eq!(v["error"]["kind"], "local_io", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("cannot read {}: ", unreadable.display())),
        "{v}"
    );

    // An endpoint that is no URL: a usage error, still one object.
    let r = run_owned(&upload_args(
        dir.path(),
        &server,
        "ftp://nowhere",
        &["--json"],
    ));
    assert_eq!(r.code, Some(2), "{r:?}");
    let v = json_of(&r);
    assert_eq!(v["error"]["phase"], "preflight");
    assert_eq!(v["error"]["kind"], "invalid_config");
    assert!(
        line(&r, "error: ").starts_with("error: --endpoint"),
        "{r:?}"
    );

    // An endpoint where nothing listens: a transfer error.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let r = run_owned(&upload_args(
        dir.path(),
        &server,
        &endpoint,
        &["--json", "--retries", "1"],
    ));
    assert_eq!(r.code, Some(1), "{r:?}");
    let v = json_of(&r);
    assert_eq!(v["error"]["phase"], "transfer");
    assert_eq!(v["error"]["kind"], "network");
    assert!(v["bytes_sent"].is_u64(), "{v}");
}

#[test]
fn a_stall_names_the_flag_and_the_time_as_typed() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    proxy.add_rule(Rule::new(Match::method("PUT"), Action::BlackHole));
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path(), &[("one.txt", 1000)]);
    let r = run_owned(&upload_args(
        dir.path(),
        &server,
        &proxy.endpoint(),
        // No integrity probe: its part would hang in the black hole too.
        &["--stall-timeout", "2s", "--integrity", "etag-md5"],
    ));
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(
        line(&r, "error: "),
        "error: stalled: nothing sent or acknowledged for 2s (--stall-timeout) \
         while 1 request(s) were in flight for 'one.txt'"
    );
    assert!(!r.stderr.contains("_ms"), "{r:?}");
}

#[test]
fn a_request_timeout_says_so_without_os_words() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    proxy.add_rule(Rule::new(Match::method("PUT"), Action::BlackHole));
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path(), &[("one.txt", 1000)]);
    let r = run_owned(&upload_args(
        dir.path(),
        &server,
        &proxy.endpoint(),
        &["--request-timeout", "1s", "--retries", "1"],
    ));
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(
        line(&r, "error: "),
        format!(
            "error: no answer from {} to a request for 'one.txt' within 1s (--request-timeout); \
             is the server overloaded, or the network dropping packets?",
            proxy.endpoint()
        )
    );
    assert!(!r.stderr.contains("os error"), "{r:?}");
}

#[test]
fn a_deadline_names_the_flag_and_the_counts_agree() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    // Small files go through; the big one crawls past the deadline.
    proxy.add_rule(Rule::new(
        Match::file_parts(),
        Action::Throttle {
            bytes_per_sec: MIB as u64,
        },
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<(String, usize)> = (0..10).map(|i| (format!("s{i}.txt"), 100)).collect();
    files.push(("big.bin".into(), 12 * MIB));
    let specs: Vec<(&str, usize)> = files.iter().map(|(n, l)| (n.as_str(), *l)).collect();
    make_tree(dir.path(), &specs);
    let r = run_owned(&upload_args(
        dir.path(),
        &server,
        &proxy.endpoint(),
        &[
            "--deadline",
            "3s",
            "--part-size",
            "5mib",
            "--multipart-threshold",
            "5MiB",
        ],
    ));
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(
        line(&r, "error: "),
        "error: the --deadline of 3s passed before the job finished"
    );
    let summary = r.stdout.lines().next().unwrap();
    assert!(
        summary.starts_with("failed: 10 of 11 files uploaded (1000 B of "),
        "{r:?}"
    );
}

#[test]
fn an_unknown_access_key_gets_the_credentials_hint() {
    let server = support::s3s();
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path(), &[("one.txt", 100)]);
    let mut args = upload_args(dir.path(), &server, &server.endpoint, &[]);
    let at = args.iter().position(|a| a == "--access-key").unwrap();
    args[at + 1] = "AKIDNOBODYKNOWS".into();
    let r = run_owned(&args);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(
        line(&r, "error: "),
        "error: access denied for key 'one.txt': check the credentials \
         (the server does not know this access key)"
    );
}

#[test]
fn sizes_take_any_case_and_resume_refuses_what_the_journal_fixes() {
    let server = support::s3s();
    let dir = tempfile::tempdir().unwrap();
    let tree = make_tree(dir.path(), &[("one.bin", 6 * MIB)]);
    let r = run_owned(&upload_args(
        dir.path(),
        &server,
        &server.endpoint,
        &["--part-size", "5mb", "--multipart-threshold", "5MB"],
    ));
    // 5 MB is less than 5 MiB, S3's smallest part: refused by value, not
    // by spelling.
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(
        line(&r, "error: ").starts_with("error: --part-size: "),
        "{r:?}"
    );
    let r = run_owned(&upload_args(
        dir.path(),
        &server,
        &server.endpoint,
        &["--part-size", "5mib", "--multipart-threshold", "5mib"],
    ));
    assert_eq!(r.code, Some(0), "{r:?}");
    let got = server.store().get_object("one.bin").unwrap();
    assert!(got == tree[0].1);

    for (flag, value) in [
        ("--part-size", "64MiB"),
        ("--multipart-threshold", "1GiB"),
        ("--prefix", "x/"),
    ] {
        let r = run(&["resume", "--journal", "/nonexistent/j", flag, value]);
        assert_eq!(r.code, Some(2), "{r:?}");
        assert_eq!(
            line(&r, "error: "),
            format!(
                "error: {flag} cannot apply to resume: the journal fixes the files, \
                 their keys and their parts"
            )
        );
    }
}

/// The quickstart example's binary, built beside the command: `cargo
/// test --test cli` alone does not build examples, and one left from an
/// older build may be stale (a no-op when it is fresh).
fn quickstart_binary() -> std::path::PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_batchput"));
    let profile_dir = bin.parent().unwrap();
    let mut cargo = Command::new(env!("CARGO"));
    // The variables cargo sets for this test (CARGO_MANIFEST_DIR, CARGO_PKG_*,
    // ...) would differ from a plain `cargo build`'s, and ring's build script
    // reruns when they change: the example and everything above ring would
    // be rebuilt here and again by the next `cargo test` (30 s each time).
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CARGO_") && name != "CARGO_HOME" {
            cargo.env_remove(name);
        }
    }
    let status = cargo
        .args([
            "build",
            "--quiet",
            "-p",
            "batchput-cli",
            "--example",
            "quickstart",
        ])
        .arg("--target-dir")
        .arg(profile_dir.parent().unwrap())
        .current_dir(support::repo_root())
        .status()
        .unwrap();
    assert!(status.success());
    profile_dir.join("examples/quickstart")
}

#[test]
fn quickstart_serve_prints_exports_that_work() {
    let mut child = Command::new(quickstart_binary())
        .arg("--serve")
        .env_remove("BATCHPUT_ENDPOINT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut exports: Vec<(String, String)> = Vec::new();
    let mut command = None;
    let mut text = String::new();
    loop {
        let mut l = String::new();
        assert!(out.read_line(&mut l).unwrap() > 0, "ended early: {text}");
        text.push_str(&l);
        let l = l.trim_end();
        if let Some(kv) = l.strip_prefix("export ") {
            let (k, v) = kv.split_once('=').unwrap();
            exports.push((k.into(), v.into()));
        }
        if l.starts_with("batchput upload ") {
            command = Some(l.to_string());
        }
        if l == "Ctrl-C stops the server." {
            break;
        }
    }
    let names: Vec<&str> = exports.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "BATCHPUT_ENDPOINT",
            "BATCHPUT_BUCKET",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY"
        ],
        "{text}"
    );
    assert_eq!(
        command.as_deref(),
        Some("batchput upload ./some/dir --prefix try/"),
        "{text}"
    );

    // The printed command, as pasted after the exports.
    let dir = tempfile::tempdir().unwrap();
    let tree = make_tree(&dir.path().join("some/dir"), &[("hello.txt", 4321)]);
    let mut cmd = batchput(&["upload", "./some/dir", "--prefix", "try/"]);
    cmd.current_dir(dir.path());
    for (k, v) in &exports {
        cmd.env(k, v);
    }
    let r = finish(cmd.spawn().unwrap(), 60);
    assert_eq!(r.code, Some(0), "{r:?}");
    let env = |k: &str| exports.iter().find(|e| e.0 == k).unwrap().1.clone();
    let store = batchput::store::Store::new(
        &batchput::Config::new()
            .endpoint(&env("BATCHPUT_ENDPOINT"))
            .bucket(&env("BATCHPUT_BUCKET"))
            .credentials(&env("AWS_ACCESS_KEY_ID"), &env("AWS_SECRET_ACCESS_KEY")),
    )
    .unwrap();
    assert!(store.get_object("try/hello.txt").unwrap() == tree[0].1);

    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success(), "{rest}");
    assert_eq!(rest, "stopped the server\n");
}

//! The `batchput` command as a person or a script runs it: a child process
//! against a real server, judged by its exit status, its output and what
//! ends up on the server.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// The servers and the fault proxy of the library's integration tests.
#[path = "../../tests/support/mod.rs"]
mod support;

use support::proxy::{Action, Match, Proxy, Rule};

mod download;
mod interrupts;
mod objects;
mod pause;
mod reports;
use support::{md5_hex, pattern, Server, MIB};

/// What a finished run printed and how it exited.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The command, with no BATCHPUT_*, AWS_* or RUST_LOG variable of the
/// caller's environment leaking into it.
fn batchput(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_batchput"));
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        if n.starts_with("BATCHPUT_") || n.starts_with("AWS_") || n == "RUST_LOG" {
            cmd.env_remove(&name);
        }
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Everything needed to reach the server's bucket.
fn dest(server: &Server, endpoint: &str) -> Vec<String> {
    vec![
        "--endpoint".into(),
        endpoint.into(),
        "--bucket".into(),
        server.bucket.clone(),
        "--access-key".into(),
        server.access_key.clone(),
        "--secret-key".into(),
        server.secret_key.clone(),
    ]
}

/// Collects a child's output while it runs; kills it after `secs`.
fn finish(mut child: Child, secs: u64) -> Run {
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "batchput did not exit within {secs} s; stderr so far: {}",
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn run(args: &[&str]) -> Run {
    finish(batchput(args).spawn().expect("running batchput"), 120)
}

fn run_owned(args: &[String]) -> Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&args)
}

/// A tree of files, each with pattern bytes; returns (relative path, bytes).
fn make_tree(root: &Path, files: &[(&str, usize)]) -> Vec<(String, Vec<u8>)> {
    files
        .iter()
        .enumerate()
        .map(|(i, (rel, len))| {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let data = pattern(*len, 500 + i as u64);
            std::fs::write(&path, &data).unwrap();
            (rel.to_string(), data)
        })
        .collect()
}

const AWKWARD_TREE: &[(&str, usize)] = &[
    ("top.txt", 1000),
    ("empty", 0),
    ("nested/deeper/deepest/leaf.bin", 7 * MIB),
    ("with space/a file name.txt", 2048),
    ("unicode/été 東京 ☃.txt", 333),
    ("plus/a+b=c&d.txt", 77),
    ("odd/50% off (copy) [1].txt", 12),
];

#[test]
fn upload_keys_a_tree_by_relative_path_whatever_the_names() {
    let server = support::s3s();
    let dir = tempfile::tempdir().unwrap();
    let tree = make_tree(dir.path(), AWKWARD_TREE);
    let single_dir = tempfile::tempdir().unwrap();
    let single = single_dir.path().join("given directly.dat");
    std::fs::write(&single, pattern(4321, 9)).unwrap();

    let mut args: Vec<String> = vec!["upload".into()];
    args.push(dir.path().to_string_lossy().into());
    args.push(single.to_string_lossy().into());
    args.extend(dest(&server, &server.endpoint));
    for a in [
        "--prefix",
        "backup/2026/",
        "--part-size",
        "5MiB",
        "--multipart-threshold",
        "5MiB",
        "--workers",
        "4",
    ] {
        args.push(a.into());
    }
    let r = run_owned(&args);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout.contains("uploaded 8 files"),
        "the summary counts the files: {r:?}"
    );
    assert!(
        !r.stdout.contains('\r') && !r.stderr.contains('\r'),
        "no progress drawing when not on a terminal: {r:?}"
    );

    let store = server.store();
    for (rel, data) in &tree {
        let key = format!("backup/2026/{rel}");
        let got = store
            .get_object(&key)
            .unwrap_or_else(|e| panic!("object '{key}': {e}"));
        assert!(got == *data, "bytes of '{key}' differ");
    }
    let got = store.get_object("backup/2026/given directly.dat").unwrap();
    assert!(
        got == pattern(4321, 9),
        "a file given directly is keyed by its name"
    );
    server.assert_no_open_uploads();
}

#[test]
fn json_report_lists_every_file_with_its_etag() {
    let server = support::s3s();
    let dir = tempfile::tempdir().unwrap();
    let tree = make_tree(
        dir.path(),
        &[
            ("a.txt", 10),
            ("quote\"back\\slash.txt", 20),
            ("big.bin", 6 * MIB),
        ],
    );
    let mut args: Vec<String> = vec!["upload".into(), dir.path().to_string_lossy().into()];
    args.extend(dest(&server, &server.endpoint));
    args.extend(
        [
            "--json",
            "--no-progress",
            "--part-size",
            "5MiB",
            "--multipart-threshold",
            "5MiB",
        ]
        .map(String::from),
    );
    let r = run_owned(&args);
    assert_eq!(r.code, Some(0), "{r:?}");
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {r:?}"));
    assert_eq!(v["state"], "succeeded");
    assert_eq!(v["bucket"], server.bucket.as_str());
    assert_eq!(v["files_total"], 3);
    assert_eq!(v["files_done"], 3);
    let total: usize = tree.iter().map(|(_, d)| d.len()).sum();
    assert_eq!(v["bytes_total"], total);
    assert_eq!(v["bytes_done"], total);
    assert!(v["error"].is_null());
    assert!(v["elapsed_secs"].as_f64().is_some());
    assert!(v["avg_speed_bps"].as_f64().unwrap() > 0.0);
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    for (rel, data) in &tree {
        let f = files
            .iter()
            .find(|f| f["key"] == rel.as_str())
            .unwrap_or_else(|| panic!("no report for '{rel}': {v}"));
        assert_eq!(f["state"], "completed");
        assert_eq!(f["size"], data.len());
        assert_eq!(f["bytes_done"], data.len());
        assert_eq!(
            f["path"].as_str().unwrap(),
            dir.path().join(rel).to_str().unwrap()
        );
        assert!(f["avg_speed_bps"].as_f64().is_some());
        assert!(f["peak_speed_bps"].as_f64().is_some());
        assert!(f["error"].is_null());
        let expected_etag = if data.len() >= 5 * MIB {
            support::multipart_etag(data, 5 * MIB)
        } else {
            md5_hex(data)
        };
        assert_eq!(f["etag"], expected_etag.as_str(), "ETag of '{rel}'");
    }
}

#[test]
fn a_failing_upload_exits_1_and_says_why_on_stderr() {
    let server = support::s3s();
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path(), &[("one.txt", 100), ("two.txt", 200)]);
    let mut args: Vec<String> = vec!["upload".into(), dir.path().to_string_lossy().into()];
    args.extend(dest(&server, &server.endpoint));
    // The right access key with the wrong secret.
    let at = args.iter().position(|a| a == "--secret-key").unwrap();
    args[at + 1] = "not-the-secret".into();
    args.push("--json".into());
    let r = run_owned(&args);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr.contains("error: access denied for key '")
            && r.stderr.contains("check the credentials"),
        "stderr says what to do: {r:?}"
    );
    assert!(
        r.stderr.contains("SignatureDoesNotMatch"),
        "the server's own code is kept: {r:?}"
    );
    // (The other file may be reported apart, as unknown: its request can
    // be cut by the failure after its body went out, and HeadObject with
    // the wrong secret cannot tell.)
    assert!(
        r.stderr.matches("access denied for key").count() == 1
            && !r.stderr.contains("batchput: error: job failed"),
        "the failure is said once, not logged as well: {r:?}"
    );
    let mut verbose = args.clone();
    verbose.push("-v".into());
    let r = run_owned(&verbose);
    assert!(
        r.stderr.contains("batchput: error: job failed: "),
        "-v shows the library's record of it too: {r:?}"
    );
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["state"], "failed");
    assert_eq!(v["error"]["code"], "SignatureDoesNotMatch");
    assert_eq!(v["error"]["status"], 403);
    assert_eq!(v["files_done"], 0);

    // A missing source: named, with the reason.
    let missing = dir.path().join("no such dir");
    let mut args: Vec<String> = vec!["upload".into(), missing.to_string_lossy().into()];
    args.extend(dest(&server, &server.endpoint));
    let r = run_owned(&args);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr.contains(&format!(
            "cannot read {}: no such file or directory",
            missing.display()
        )),
        "{r:?}"
    );

    // A server that is not there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut args: Vec<String> = vec!["upload".into(), dir.path().to_string_lossy().into()];
    args.extend(dest(&server, &format!("http://127.0.0.1:{port}")));
    args.extend(["--retries", "1"].map(String::from));
    let r = run_owned(&args);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr
            .contains(&format!("cannot reach http://127.0.0.1:{port}")),
        "{r:?}"
    );
}

#[test]
fn a_missing_bucket_is_named_with_its_endpoint() {
    // s3s-fs does not check the bucket on writes; moto does.
    let Some(server) = support::moto() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path(), &[("one.txt", 100)]);
    let mut args: Vec<String> = vec!["upload".into(), dir.path().to_string_lossy().into()];
    args.extend(dest(&server, &server.endpoint));
    let at = args.iter().position(|a| a == "--bucket").unwrap();
    args[at + 1] = "no-such-bucket-here".into();
    let r = run_owned(&args);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr.contains(&format!(
            "error: bucket 'no-such-bucket-here' does not exist at {}",
            server.endpoint
        )),
        "{r:?}"
    );
}

#[test]
fn log_lines_go_to_stderr_and_json_stays_alone_on_stdout() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    let dir = tempfile::tempdir().unwrap();
    let tree = make_tree(dir.path(), &[("one.txt", 1000)]);
    // Every run meets one retryable error, which the library logs at debug.
    let upload = |extra: &[&str], rust_log: Option<&str>| -> Run {
        proxy.clear_rules();
        // Not the integrity probe's parts (which carry a CRC32C).
        proxy.add_rule(Rule::new(
            Match::method("PUT").and_header("x-amz-checksum-crc32c"),
            Action::Delay(Duration::ZERO),
        ));
        proxy.add_rule(
            Rule::new(
                Match::method("PUT"),
                Action::respond(500, "InternalError", "We encountered an internal error."),
            )
            .times(1),
        );
        let mut args: Vec<String> = vec!["upload".into(), dir.path().to_string_lossy().into()];
        args.extend(dest(&server, &proxy.endpoint()));
        args.push("--json".into());
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = batchput(&args);
        if let Some(value) = rust_log {
            cmd.env("RUST_LOG", value);
        }
        let r = finish(cmd.spawn().unwrap(), 60);
        assert_eq!(r.code, Some(0), "{r:?}");
        let v: serde_json::Value =
            serde_json::from_str(&r.stdout).expect("stdout is one JSON object and nothing else");
        assert_eq!(v["state"], "succeeded", "{r:?}");
        // --integrity auto (the default) on s3s-fs, which takes any CRC32C on a part.
        assert_eq!(v["integrity_used"], "etag-md5", "{r:?}");
        r
    };
    let retried = |r: &Run| {
        r.stderr.lines().any(|l| {
            l.starts_with("batchput: debug: attempt 1 failed, retrying: ")
                && l.contains("InternalError")
        })
    };

    let r = upload(&["-vv"], None);
    assert!(retried(&r), "-vv shows the retry on stderr: {r:?}");
    let got = server.store().get_object("one.txt").unwrap();
    assert!(got == tree[0].1, "the bytes on the server are the file's");

    // By default only warnings and errors show, and a retry is neither.
    let r = upload(&[], None);
    assert_eq!(r.stderr, "", "{r:?}");
    // -v is info: still no debug line.
    let r = upload(&["-v"], None);
    assert!(!r.stderr.contains("batchput: debug:"), "{r:?}");
    // ... and it says which integrity mode the job got.
    assert!(
        r.stderr.contains("integrity: etag-md5 (auto)"),
        "-v logs the integrity mode: {r:?}"
    );

    // Without -v, RUST_LOG decides.
    let r = upload(&[], Some("batchput=debug"));
    assert!(
        retried(&r),
        "RUST_LOG=batchput=debug shows the retry: {r:?}"
    );
    let r = upload(&[], Some("off"));
    assert_eq!(r.stderr, "", "{r:?}");
}

#[test]
fn cleanup_dry_run_lists_and_changes_nothing() {
    // s3s-fs cannot list multipart uploads; moto can.
    let Some(server) = support::moto() else {
        return;
    };
    let store = server.store();
    let id = store.create_multipart_upload("left/behind.bin", 0).unwrap();
    let other = store.create_multipart_upload("elsewhere.bin", 0).unwrap();
    let mut args: Vec<String> = vec!["cleanup".into()];
    args.extend(dest(&server, &server.endpoint));
    args.extend(["--prefix", "left/", "--older-than", "0s"].map(String::from));

    let mut dry = args.clone();
    dry.push("--dry-run".into());
    let r = run_owned(&dry);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("left/behind.bin"), "{r:?}");
    assert!(r.stdout.contains(&id), "{r:?}");
    assert!(
        !r.stdout.contains("elsewhere.bin"),
        "the prefix filters: {r:?}"
    );
    assert!(r.stdout.contains("nothing was changed"), "{r:?}");
    let open = server.open_uploads();
    assert_eq!(open.len(), 2, "a dry run aborts nothing: {open:?}");

    // --older-than defaults to 24h: uploads younger than a day may be
    // running elsewhere.
    let mut default_age: Vec<String> = vec!["cleanup".into(), "--dry-run".into()];
    default_age.extend(dest(&server, &server.endpoint));
    default_age.extend(["--prefix", "left/"].map(String::from));
    let r = run_owned(&default_age);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        r.stdout.lines().last().unwrap(),
        format!(
            "dry run: 1 multipart upload under s3://{}/left/ initiated more than 24h ago \
             would be aborted; nothing was changed",
            server.bucket
        ),
        "{r:?}"
    );

    // (moto dates every upload 2010-11-10, so the age filter itself cannot
    // be seen failing to match here.)

    // For real: only the prefix's upload goes.
    let r = run_owned(&args);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("aborted 1 multipart upload"), "{r:?}");
    let open = server.open_uploads();
    assert_eq!(open, vec![format!("elsewhere.bin {other}")]);
}

#[test]
fn usage_errors_exit_2_and_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"x").unwrap();
    let d = dir.path().to_str().unwrap();
    let ep = [
        "--endpoint",
        "http://127.0.0.1:9",
        "--access-key",
        "a",
        "--secret-key",
        "s",
    ];
    let with_ep = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        v.extend(ep.iter().map(|s| s.to_string()));
        v
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![], "Usage"),
        (vec!["fly".into()], "unrecognized subcommand"),
        (with_ep(&["upload", "--bucket", "bkt"]), "<PATH>"),
        (with_ep(&["upload", d]), "--bucket"),
        (
            vec!["upload".into(), d.into(), "--bucket".into(), "bkt".into()],
            "no endpoint",
        ),
        (
            with_ep(&["upload", d, "--bucket", "bkt", "--part-size", "1MiB"]),
            "--part-size",
        ),
        (
            with_ep(&["upload", d, "--bucket", "bkt", "--part-size", "lots"]),
            "--part-size",
        ),
        (
            with_ep(&["upload", d, "--bucket", "bkt", "--workers", "0"]),
            "--workers",
        ),
        (
            with_ep(&["upload", d, "--bucket", "bkt", "--stall-timeout", "soon"]),
            "--stall-timeout",
        ),
        (
            with_ep(&["upload", d, "--bucket", "bkt", "--integrity", "sha1"]),
            "--integrity",
        ),
        (
            with_ep(&["upload", d, "--bucket", "bkt", "--acl", "everyone"]),
            "--acl",
        ),
        (
            with_ep(&["upload", d, "--bucket", "bkt", "--meta", "novalue"]),
            "--meta",
        ),
        (
            with_ep(&["upload", d, "--bucket", "Bad_Bucket!"]),
            "--bucket",
        ),
        (
            with_ep(&["upload", d, "--bucket", "bkt", "--colour"]),
            "--colour",
        ),
        (
            vec![
                "upload".into(),
                d.into(),
                "--bucket".into(),
                "bkt".into(),
                "--endpoint".into(),
                "ftp://x".into(),
            ],
            "--endpoint",
        ),
        (
            with_ep(&["cleanup", "--bucket", "bkt", "--older-than", "later"]),
            "--older-than",
        ),
        (with_ep(&["resume", "--bucket", "bkt"]), "--journal"),
    ];
    for (args, says) in cases {
        let r = run_owned(&args);
        assert_eq!(r.code, Some(2), "batchput {args:?}: {r:?}");
        assert!(
            r.stderr.contains(says),
            "batchput {args:?} should mention {says:?}: {r:?}"
        );
        assert!(r.stdout.is_empty(), "batchput {args:?}: {r:?}");
    }
    // Help is not an error.
    let r = run(&["upload", "--help"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("--part-size") && r.stdout.contains("[default: 16MiB]"));
}

#[test]
fn options_come_from_batchput_environment_variables() {
    let server = support::s3s();
    let dir = tempfile::tempdir().unwrap();
    let tree = make_tree(dir.path(), &[("env.txt", 64)]);
    let r = finish(
        batchput(&["upload", dir.path().to_str().unwrap()])
            .env("BATCHPUT_ENDPOINT", &server.endpoint)
            .env("BATCHPUT_BUCKET", &server.bucket)
            .env("BATCHPUT_PREFIX", "from-env/")
            .env("AWS_ACCESS_KEY_ID", &server.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &server.secret_key)
            .spawn()
            .unwrap(),
        60,
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    let got = server.store().get_object("from-env/env.txt").unwrap();
    assert!(got == tree[0].1);
}

#[test]
fn readme_lists_every_option_with_its_flag_and_default() {
    let readme = std::fs::read_to_string(support::repo_root().join("README.md")).unwrap();
    let help = run(&["upload", "--help"]).stdout;
    for (key, default, _) in batchput::OPTIONS {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{key}` |")))
            .unwrap_or_else(|| panic!("README's option table has no row for '{key}'"));
        let flag = format!(
            "--{}",
            key.trim_end_matches("_ms")
                .trim_end_matches(".NAME")
                .replace('_', "-")
        );
        assert!(
            row.contains(&format!("`{flag}")),
            "README row of '{key}' names {flag}: {row}"
        );
        assert!(help.contains(&flag), "upload --help has {flag}");
        if !default.is_empty() {
            assert!(
                row.contains(&format!("`{default}`")),
                "README row of '{key}' gives the default {default}: {row}"
            );
        }
    }
}

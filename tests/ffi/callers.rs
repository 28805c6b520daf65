//! The C examples as child processes (also under valgrind and through
//! pkg-config), and the README's examples as a newcomer would copy them.
//! (The Python and Go packages' tests stay in `ffi.rs`, so that
//! `ffi::python` and `ffi::go` still select them.)

use super::*;

// ------------------------------------------------------------- C examples

#[test]
fn c_upload_example_uploads_and_reports() {
    let server = support::s3s();
    let bin = tempfile::tempdir().unwrap();
    build_examples(bin.path());
    let files = make_files(&[
        ("a".to_string(), 0),
        ("b".to_string(), 4000),
        ("c".to_string(), 6 * MIB + 5),
    ]);
    let mut cmd = Command::new(bin.path().join("upload"));
    cmd.args(server_args(
        &server,
        &[("part_size", "5MiB"), ("multipart_threshold", "5MiB")],
    ))
    .args(["-p", "c-example/"])
    .args(files.items.iter().map(|f| &f.0));
    let out = run(&mut cmd, Duration::from_secs(120));
    let (so, se) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{so}\n{se}");
    assert!(so.contains("succeeded: 3 of 3 files"), "{so}");
    assert_eq!(so.matches("  completed ").count(), 3, "{so}");
    let store = server.store();
    for (path, _, len, seed) in &files.items {
        let key = format!("c-example/{}", path.file_name().unwrap().to_str().unwrap());
        assert_eq!(
            store.get_object(&key).unwrap(),
            pattern(*len, *seed),
            "{key}"
        );
        assert!(so.contains(&format!("-> {key}  {len}/{len} bytes")), "{so}");
    }
    assert!(
        so.contains(&md5_hex(&pattern(4000, files.items[1].3))),
        "{so}"
    );
    server.assert_no_open_uploads();
}

#[test]
fn c_upload_example_exits_non_zero_on_failure() {
    let server = support::s3s();
    let bin = tempfile::tempdir().unwrap();
    build_examples(bin.path());
    let files = make_files(&[("a".to_string(), 10)]);
    let out = run(
        Command::new(bin.path().join("upload"))
            .args(server_args(
                &server,
                &[("secret_key", "wrong"), ("retries", "1")],
            ))
            .arg(&files.items[0].0),
        Duration::from_secs(60),
    );
    let (so, se) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{so}\n{se}");
    assert!(so.contains("failed: 0 of 1 files"), "{so}");
    assert!(se.contains("SignatureDoesNotMatch"), "{se}");
    // A bad option is named, before anything starts.
    let out = run(
        Command::new(bin.path().join("upload"))
            .args(server_args(&server, &[("part_size", "12 apples")]))
            .arg(&files.items[0].0),
        Duration::from_secs(60),
    );
    let (_, se) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{se}");
    assert!(se.contains("bp_config_set: option 'part_size'"), "{se}");
}

#[test]
fn c_stop_example_aborts_every_upload() {
    let server = support::s3s();
    let bin = tempfile::tempdir().unwrap();
    build_examples(bin.path());
    let files = slow_job_files();
    let out = run(
        Command::new(bin.path().join("stop"))
            .args(server_args(&server, SLOW))
            .args(["-p", "ffi/slow/", "-d", "300"])
            .args(files.items.iter().map(|f| &f.0)),
        Duration::from_secs(60),
    );
    let (so, se) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{so}\n{se}");
    assert!(so.contains("job stopped"), "{so}");
    assert!(so.contains("stop returned ok, then ok"), "{so}");
    assert!(so.contains("every upload was aborted"), "{so}");
    assert!(so.contains("  aborted     "), "{so}");
    assert!(!so.contains("completed"), "{so}");
    assert_nothing_left(&server, &files);
}

#[test]
fn c_examples_run_clean_under_valgrind() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "valgrind is required on CI"
        );
        eprintln!("SKIPPED: valgrind is not installed");
        return;
    }
    let server = support::s3s();
    let bin = tempfile::tempdir().unwrap();
    build_examples(bin.path());
    let valgrind = |program: &str, args: Vec<String>| -> (String, String) {
        let out = run(
            Command::new("valgrind")
                // "possibly lost" counts too: uploader_free joins every
                // thread, so none holds memory at exit. The suppressions are
                // two statics of dependencies (see the file).
                .args([
                    "--leak-check=full",
                    "--show-leak-kinds=definite,indirect,possible",
                    "--errors-for-leak-kinds=definite,indirect,possible",
                    "--error-exitcode=99",
                ])
                .arg(format!(
                    "--suppressions={}",
                    repo().join("examples-c/valgrind.supp").display()
                ))
                .arg(bin.path().join(program))
                .args(args),
            Duration::from_secs(300),
        );
        let (so, se) = text(&out);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{program} under valgrind:\n{so}\n{se}"
        );
        assert!(se.contains("ERROR SUMMARY: 0 errors"), "{se}");
        assert!(se.contains("possibly lost: 0 bytes"), "{se}");
        (so, se)
    };
    let files = make_files(&[("a".to_string(), 100), ("b".to_string(), 6 * MIB)]);
    let mut args = server_args(
        &server,
        &[("part_size", "5MiB"), ("multipart_threshold", "5MiB")],
    );
    args.extend(["-p".into(), "valgrind/".into()]);
    args.extend(
        files
            .items
            .iter()
            .map(|f| f.0.to_str().unwrap().to_string()),
    );
    let (so, _) = valgrind("upload", args);
    assert!(so.contains("succeeded: 2 of 2 files"), "{so}");

    let slow = slow_job_files();
    let mut args = server_args(&server, SLOW);
    args.extend(["-p".into(), "ffi/slow/".into(), "-d".into(), "500".into()]);
    args.extend(slow.items.iter().map(|f| f.0.to_str().unwrap().to_string()));
    let (so, _) = valgrind("stop", args);
    assert!(so.contains("every upload was aborted"), "{so}");
    assert_nothing_left(&server, &slow);
}

#[test]
fn c_program_links_through_pkg_config_static_and_shared() {
    let server = support::s3s();
    let prefix = tempfile::tempdir().unwrap();
    let out = run(
        Command::new(repo().join("capi/install.sh"))
            .arg(prefix.path())
            .arg(lib_dir()),
        Duration::from_secs(120),
    );
    let (so, se) = text(&out);
    assert!(out.status.success(), "{so}\n{se}");
    let pc = |args: &[&str]| -> Vec<String> {
        let out = run(
            Command::new("pkg-config")
                .args(args)
                .env("PKG_CONFIG_PATH", prefix.path().join("lib/pkgconfig")),
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "pkg-config {args:?}: {}",
            text(&out).1
        );
        text(&out).0.split_whitespace().map(String::from).collect()
    };
    assert_eq!(
        pc(&["--modversion", "batchput"]),
        [env!("CARGO_PKG_VERSION")]
    );
    let files = make_files(&[("x".to_string(), 3000)]);
    for (lib, extra) in [
        ("batchput-static", vec![]),
        (
            "batchput",
            vec![format!(
                "-Wl,-rpath,{}",
                prefix.path().join("lib").display()
            )],
        ),
    ] {
        let program = prefix.path().join(format!("upload-{lib}"));
        let out = run(
            Command::new("cc")
                .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"])
                .args(pc(&["--cflags", lib]))
                .arg("-o")
                .arg(&program)
                .arg(repo().join("examples-c/upload.c"))
                .args(pc(&["--libs", lib]))
                .args(extra),
            Duration::from_secs(120),
        );
        assert!(out.status.success(), "cc with {lib}: {}", text(&out).1);
        let out = run(
            Command::new(&program)
                .args(server_args(&server, &[]))
                .args(["-p", &format!("{lib}/")])
                .arg(&files.items[0].0),
            Duration::from_secs(60),
        );
        let (so, se) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{lib}: {so}\n{se}");
        let key = format!(
            "{lib}/{}",
            files.items[0].0.file_name().unwrap().to_str().unwrap()
        );
        assert_eq!(
            server.store().get_object(&key).unwrap(),
            pattern(3000, files.items[0].3)
        );
    }
}

// ------------------------------------------------------------- README

/// The first fenced block of `lang` after the README heading `section`.
fn readme_block(section: &str, lang: &str) -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find(&format!("\n## {section}\n"))
        .unwrap_or_else(|| panic!("no section {section:?} in the README"));
    let fence = format!("\n```{lang}\n");
    let from = readme[start..].find(&fence).unwrap() + start + fence.len();
    let to = readme[from..].find("\n```").unwrap() + from;
    readme[from..to].to_string()
}

/// The README's examples, as a newcomer would copy them, with the server,
/// bucket, credentials and file names replaced: each uploads both files.
#[test]
fn readme_examples_run_against_a_server() {
    let server = support::s3s();
    let files = make_files(&[
        ("2026/a.jpg".to_string(), 3000),
        ("2026/b.jpg".to_string(), 70_000),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let lib = lib_dir();
    let adapt = |code: String, bucket: &str| -> String {
        code.replace("http://127.0.0.1:9000", &server.endpoint)
            .replace("\"photos\"", &format!("\"{bucket}\""))
            .replace("AKID", &server.access_key)
            .replace("SECRET", &server.secret_key)
            .replace("/data/a.jpg", files.items[0].0.to_str().unwrap())
            .replace("/data/b.jpg", files.items[1].0.to_str().unwrap())
    };
    let check = |bucket: &str, what: &str, out: Output| {
        let (so, se) = text(&out);
        assert!(out.status.success(), "{what}:\n{so}\n{se}");
        let store = batchput::store::Store::new(&server.config().bucket(bucket)).unwrap();
        for (_, key, len, seed) in &files.items {
            assert_eq!(
                store.get_object(key).unwrap(),
                pattern(*len, *seed),
                "{what}: {key}"
            );
        }
    };

    let bucket = server.new_bucket();
    std::fs::write(
        dir.path().join("app.c"),
        adapt(readme_block("C ABI", "c"), &bucket),
    )
    .unwrap();
    let out = run(
        Command::new("cc")
            .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"])
            .arg(format!("-I{}", repo().join("include").display()))
            .arg(dir.path().join("app.c"))
            .arg(format!("-L{}", lib.display()))
            .arg("-lbatchput")
            .arg(format!("-Wl,-rpath,{}", lib.display()))
            .arg("-o")
            .arg(dir.path().join("app")),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "the README's C example: {}",
        text(&out).1
    );
    check(
        &bucket,
        "C",
        run(
            &mut Command::new(dir.path().join("app")),
            Duration::from_secs(60),
        ),
    );

    let bucket = server.new_bucket();
    std::fs::write(
        dir.path().join("example.py"),
        adapt(readme_block("Python", "python"), &bucket),
    )
    .unwrap();
    let out = run(
        Command::new("python3")
            .arg(dir.path().join("example.py"))
            .env("PYTHONPATH", repo().join("capi/python"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("BATCHPUT_LIB", lib.join("libbatchput.so")),
        Duration::from_secs(60),
    );
    check(&bucket, "Python", out);

    if Command::new("go").arg("version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "Go is required on CI");
        eprintln!("SKIPPED: the README's Go example (go is not installed)");
        return;
    }
    let bucket = server.new_bucket();
    let module = dir.path().join("goexample");
    std::fs::create_dir(&module).unwrap();
    let requires = readme_block("Go", "").replace(
        "/path/to/batchput/capi/go/batchput",
        repo().join("capi/go/batchput").to_str().unwrap(),
    );
    std::fs::write(
        module.join("go.mod"),
        format!("module example\n\ngo 1.19\n\n{requires}\n"),
    )
    .unwrap();
    std::fs::write(
        module.join("main.go"),
        adapt(readme_block("Go", "go"), &bucket),
    )
    .unwrap();
    let out = run(
        Command::new("go")
            .args(["run", "."])
            .current_dir(&module)
            .env(
                "CGO_LDFLAGS",
                format!("-L{0} -Wl,-rpath,{0}", lib.display()),
            )
            .env("GOCACHE", lib.join("../../go/cache"))
            .env("GOPATH", lib.join("../../go/path"))
            .env("GOPROXY", "off")
            .env("GOTOOLCHAIN", "local"),
        Duration::from_secs(300),
    );
    check(&bucket, "Go", out);
}

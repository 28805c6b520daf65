//! The C ABI as its callers see it. Rust calls the `bp_*` exports directly
//! for every kind of bad input; the C examples, the Python ctypes module and
//! the Go cgo package run as child processes against s3s-fs, and the tests
//! check from Rust what a user would: exit codes, output, the objects'
//! bytes, and that no multipart upload is left open.
//!
//! Here: the helpers, the header, statuses, jobs, and the Python and Go
//! packages' tests. `ffi/args.rs` has bad input; `ffi/callers.rs` the C
//! examples and the README; `ffi/abi.rs` pins the fixed-width types, the
//! layouts and the struct_size rule; `ffi/log.rs` the pull log;
//! `ffi/sigpipe.rs` a host that keeps SIGPIPE's default; `ffi/objects.rs`
//! listing, deleting a prefix and presigning.

mod abi;
mod args;
mod callers;
mod download;
mod log;
mod objects;
mod sigpipe;

use std::ffi::{c_char, CStr, CString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::ptr::{null, null_mut};
use std::time::{Duration, Instant};

use batchput::ffi::*;

use crate::support::{self, make_files, md5_hex, pattern, Server, MIB};

// ------------------------------------------------------------- helpers

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// This thread's `bp_last_error`.
fn last_error() -> String {
    let mut buf = [0 as c_char; 4096];
    let mut n = 0usize;
    let st = unsafe { bp_last_error(buf.as_mut_ptr(), buf.len(), &mut n) };
    assert_eq!(st, bp_status::BP_OK);
    let s = unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(s.len(), n);
    s
}

/// Asserts a status and that the last error has every word.
#[track_caller]
fn assert_fails(st: bp_status, want: bp_status, words: &[&str]) {
    assert_eq!(st, want, "last error: {}", last_error());
    let msg = last_error();
    for w in words {
        assert!(msg.contains(w), "{w:?} not in {msg:?}");
    }
}

fn job_error(job: *const bp_job) -> String {
    let mut buf = [0 as c_char; 4096];
    let st = unsafe { bp_job_last_error(job, buf.as_mut_ptr(), buf.len(), null_mut()) };
    assert_eq!(st, bp_status::BP_OK);
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// A configuration for `server`, through the C ABI.
fn config_for(server: &Server, extra: &[(&str, &str)]) -> *mut bp_config {
    let cfg = bp_config_new();
    assert!(!cfg.is_null());
    let opts = [
        ("endpoint", server.endpoint.as_str()),
        ("bucket", server.bucket.as_str()),
        ("access_key", server.access_key.as_str()),
        ("secret_key", server.secret_key.as_str()),
    ];
    for (k, v) in opts.iter().chain(extra) {
        let st = unsafe { bp_config_set(cfg, c(k).as_ptr(), c(v).as_ptr()) };
        assert_eq!(st, bp_status::BP_OK, "{k}={v}: {}", last_error());
    }
    cfg
}

fn uploader_for(server: &Server, extra: &[(&str, &str)]) -> *mut bp_uploader {
    let cfg = config_for(server, extra);
    let mut up = null_mut();
    let st = unsafe { bp_uploader_new(cfg, &mut up) };
    assert_eq!(st, bp_status::BP_OK, "{}", last_error());
    unsafe { bp_config_free(cfg) };
    up
}

/// An uploader that never connects anywhere (port 1), for argument checks.
fn offline_uploader() -> *mut bp_uploader {
    let cfg = bp_config_new();
    for (k, v) in [
        ("endpoint", "http://127.0.0.1:1"),
        ("bucket", "nowhere"),
        ("access_key", "AK"),
        ("secret_key", "SK"),
    ] {
        assert_eq!(
            unsafe { bp_config_set(cfg, c(k).as_ptr(), c(v).as_ptr()) },
            bp_status::BP_OK
        );
    }
    let mut up = null_mut();
    assert_eq!(unsafe { bp_uploader_new(cfg, &mut up) }, bp_status::BP_OK);
    unsafe { bp_config_free(cfg) };
    up
}

fn batch_of(files: &[(PathBuf, String)]) -> *mut bp_batch {
    let b = bp_batch_new();
    for (path, key) in files {
        let st = unsafe { bp_batch_add(b, c(path.to_str().unwrap()).as_ptr(), c(key).as_ptr()) };
        assert_eq!(st, bp_status::BP_OK, "{}", last_error());
    }
    b
}

fn start(up: *mut bp_uploader, files: &[(PathBuf, String)]) -> *mut bp_job {
    let b = batch_of(files);
    let mut job = null_mut();
    let st = unsafe { bp_start(up, b, &mut job) };
    assert_eq!(st, bp_status::BP_OK, "{}", last_error());
    unsafe { bp_batch_free(b) };
    job
}

/// A zeroed bp_progress with its struct_size set, as a C caller makes one.
fn progress_out() -> bp_progress {
    // SAFETY: every field is a number or an enum whose 0 is a value.
    let mut p: bp_progress = unsafe { std::mem::zeroed() };
    p.struct_size = std::mem::size_of::<bp_progress>();
    p
}

/// A zeroed bp_file_report with its struct_size set.
fn report_out() -> bp_file_report {
    // SAFETY: numbers, NULL pointers and enums whose 0 is a value.
    let mut r: bp_file_report = unsafe { std::mem::zeroed() };
    r.struct_size = std::mem::size_of::<bp_file_report>();
    r
}

fn poll(job: *const bp_job) -> bp_progress {
    let mut p = progress_out();
    assert_eq!(unsafe { bp_job_poll(job, &mut p) }, bp_status::BP_OK);
    assert_eq!(p.struct_size, std::mem::size_of::<bp_progress>());
    p
}

fn report(job: *const bp_job, i: usize) -> bp_file_report {
    let mut r = report_out();
    let st = unsafe { bp_job_file(job, i, &mut r) };
    assert_eq!(st, bp_status::BP_OK, "{}", last_error());
    r
}

/// A job-owned string of a report; None for NULL.
fn report_str(s: *const c_char) -> Option<String> {
    (!s.is_null()).then(|| unsafe { CStr::from_ptr(s) }.to_str().unwrap().to_string())
}

fn etag(r: &bp_file_report) -> String {
    report_str(r.etag).expect("an ETag")
}

fn pairs(files: &support::Files) -> Vec<(PathBuf, String)> {
    files
        .items
        .iter()
        .map(|(p, k, _, _)| (p.clone(), k.clone()))
        .collect()
}

/// Where `cargo test` put libbatchput.{a,so} for this build: beside the
/// test binary, in target/<profile>/deps (only `cargo build` copies them up
/// to target/<profile>, so the copies there may be older).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().to_path_buf();
    for lib in ["libbatchput.so", "libbatchput.a"] {
        assert!(
            dir.join(lib).exists(),
            "{} is missing: cargo builds it with the tests",
            dir.join(lib).display()
        );
    }
    dir
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a child to its end, killing it after `timeout`.
fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} ran longer than {timeout:?}; output so far:\n{}\n{}",
                String::from_utf8_lossy(&out_reader.join().unwrap()),
                String::from_utf8_lossy(&err_reader.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Builds the C examples (linked to the shared library) into `dir`.
fn build_examples(dir: &Path) {
    let out = run(
        Command::new("make")
            .arg("-C")
            .arg(repo().join("examples-c"))
            .arg(format!("OUT={}", dir.display()))
            .arg(format!("LIBDIR={}", lib_dir().display()))
            .arg("LINK=shared"),
        Duration::from_secs(120),
    );
    let (so, se) = text(&out);
    assert!(out.status.success(), "make failed:\n{so}\n{se}");
}

/// `-o key=value` arguments for the examples.
fn server_args(server: &Server, extra: &[(&str, &str)]) -> Vec<String> {
    let mut v = Vec::new();
    for (k, val) in [
        ("endpoint", server.endpoint.as_str()),
        ("bucket", server.bucket.as_str()),
        ("access_key", server.access_key.as_str()),
        ("secret_key", server.secret_key.as_str()),
    ]
    .iter()
    .chain(extra)
    {
        v.push("-o".to_string());
        v.push(format!("{k}={val}"));
    }
    v
}

/// The environment the Python and Go tests read.
fn server_env(cmd: &mut Command, server: &Server, workdir: &Path) {
    cmd.env("BATCHPUT_TEST_ENDPOINT", &server.endpoint)
        .env("BATCHPUT_TEST_BUCKET", &server.bucket)
        .env("BATCHPUT_TEST_ACCESS_KEY", &server.access_key)
        .env("BATCHPUT_TEST_SECRET_KEY", &server.secret_key)
        .env("BATCHPUT_TEST_WORKDIR", workdir)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN");
}

/// After a Python or Go run: every file under workdir/<lang>/success is the
/// object <lang>/success/<name> with the same bytes; nothing under
/// <lang>/stop exists; no multipart upload is open.
fn verify_caller_uploads(server: &Server, workdir: &Path, lang: &str) {
    let store = server.store();
    let success = workdir.join(lang).join("success");
    let mut checked = 0;
    for entry in std::fs::read_dir(&success).unwrap() {
        let path = entry.unwrap().path();
        let key = format!(
            "{lang}/success/{}",
            path.file_name().unwrap().to_str().unwrap()
        );
        let want = std::fs::read(&path).unwrap();
        let got = store
            .get_object(&key)
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        assert!(got == want, "{key}: bytes differ from {}", path.display());
        checked += 1;
    }
    assert_eq!(checked, 3, "the {lang} success test uploads three files");
    let stop = workdir.join(lang).join("stop");
    for entry in std::fs::read_dir(&stop).unwrap() {
        let path = entry.unwrap().path();
        let key = format!(
            "{lang}/stop/{}",
            path.file_name().unwrap().to_str().unwrap()
        );
        assert_eq!(
            store.head_object(&key).unwrap(),
            None,
            "{key} exists after stop"
        );
    }
    server.assert_no_open_uploads();
}

// ------------------------------------------------------------- header

#[test]
fn header_version_macros_match_cargo_toml() {
    let header = std::fs::read_to_string(repo().join("include/batchput.h")).unwrap();
    let define = |name: &str| -> String {
        let prefix = format!("#define {name} ");
        header
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {name} in the header"))
            .trim()
            .to_string()
    };
    let version = env!("CARGO_PKG_VERSION");
    let parts: Vec<u32> = version
        .split(['.', '-', '+'])
        .take(3)
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(define("BATCHPUT_VERSION_MAJOR"), parts[0].to_string());
    assert_eq!(define("BATCHPUT_VERSION_MINOR"), parts[1].to_string());
    assert_eq!(define("BATCHPUT_VERSION_PATCH"), parts[2].to_string());
    let packed = parts[0] * 1_000_000 + parts[1] * 1_000 + parts[2];
    assert_eq!(define("BATCHPUT_VERSION_NUMBER"), packed.to_string());
    assert_eq!(define("BATCHPUT_VERSION"), format!("\"{version}\""));
    assert_eq!(bp_version_number(), packed);
    assert_eq!(
        unsafe { CStr::from_ptr(bp_version()) }.to_str().unwrap(),
        version
    );
}

#[test]
fn header_declares_every_export_with_its_doc() {
    let header = std::fs::read_to_string(repo().join("include/batchput.h")).unwrap();
    for f in [
        "bp_config *bp_config_new(void);",
        "bp_status bp_config_set(struct bp_config *cfg, const char *key, const char *value);",
        "void bp_config_free(struct bp_config *cfg);",
        "bp_status bp_uploader_new(const struct bp_config *cfg, struct bp_uploader **out);",
        "void bp_uploader_free(struct bp_uploader *up);",
        "bp_batch *bp_batch_new(void);",
        "bp_status bp_batch_add(struct bp_batch *batch, const char *path, const char *key);",
        "bp_status bp_batch_set_journal(struct bp_batch *batch, const char *journal_path);",
        "void bp_batch_free(struct bp_batch *batch);",
        "bp_status bp_start(struct bp_uploader *up, const struct bp_batch *batch, struct bp_job **out);",
        "bp_status bp_resume(struct bp_uploader *up, const char *journal_path, struct bp_job **out);",
        "bp_status bp_job_poll(const struct bp_job *job, struct bp_progress *out);",
        "bp_status bp_job_wait(struct bp_job *job, uint32_t timeout_ms);",
        "bp_status bp_job_stop(struct bp_job *job);",
        "bp_status bp_job_pause(struct bp_job *job);",
        "size_t bp_job_file_count(const struct bp_job *job);",
        "bp_status bp_job_file(const struct bp_job *job, size_t index, struct bp_file_report *out);",
        "bp_status bp_job_last_error(const struct bp_job *job, char *buf, size_t len, size_t *written);",
        "void bp_job_free(struct bp_job *job);",
        "bp_status bp_last_error(char *buf, size_t len, size_t *written);",
        "const char *bp_status_str(uint32_t status);",
        "uint32_t bp_version_number(void);",
        "const char *etag;",
        "const char *upload_id;",
        "uint64_t bytes_sent;",
        "bp_integrity integrity_used;",
        "BP_INTEGRITY_CRC32C = 3,",
        "bp_status bp_set_log_level(uint32_t level);",
        "bp_status bp_log_next(uint32_t *level, char *buf, size_t len, size_t *written);",
        "typedef struct bp_job bp_job;",
        "#define BP_WAIT_FOREVER UINT32_MAX",
    ] {
        assert!(header.contains(f), "the header lacks `{f}`");
    }
    // bp_cleanup's declaration is wrapped over lines.
    let flat: String = header.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains(
        "bp_status bp_cleanup(struct bp_uploader *up, const char *prefix, \
         uint64_t older_than_secs, uint64_t *aborted);"
    ));
    // Every function has a comment right above it.
    let lines: Vec<&str> = header.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        let declaration = !l.starts_with([' ', '#', '}', '/']) && !l.starts_with("typedef");
        if declaration && l.contains("bp_") && l.contains('(') {
            assert_eq!(lines[i - 1].trim(), "*/", "no doc above `{l}`");
        }
    }
}

#[test]
fn the_header_compiles_as_strict_c_and_cxx() {
    let dir = tempfile::tempdir().unwrap();
    let src = "#include \"batchput.h\"\n\
               int main(void) {\n\
                   bp_status st = BP_OK;\n\
                   bp_progress p;\n\
                   bp_file_report r;\n\
                   (void)p; (void)r;\n\
                   return bp_status_str(st) != 0 && BATCHPUT_VERSION_NUMBER > 0 ? 0 : 1;\n\
               }\n";
    for (compiler, file, std) in [("cc", "t.c", "-std=c99"), ("c++", "t.cc", "-std=c++11")] {
        std::fs::write(dir.path().join(file), src).unwrap();
        let out = run(
            Command::new(compiler)
                .args([
                    std,
                    "-Wall",
                    "-Wextra",
                    "-Werror",
                    "-pedantic",
                    "-fsyntax-only",
                ])
                .arg(format!("-I{}", repo().join("include").display()))
                .arg(dir.path().join(file)),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "{compiler}: {}", text(&out).1);
    }
}

// ------------------------------------------------------------- statuses

#[test]
fn status_text_is_static_and_distinct() {
    let mut seen = std::collections::HashSet::new();
    for code in 0..=21 {
        let s = unsafe { CStr::from_ptr(bp_status_str(code)) }
            .to_str()
            .unwrap();
        assert!(!s.is_empty() && s != "unknown status", "{code}: {s}");
        assert!(seen.insert(s), "{code} repeats {s:?}");
    }
    for code in [u32::MAX, 22, 999, i32::MAX as u32] {
        let s = unsafe { CStr::from_ptr(bp_status_str(code)) };
        assert_eq!(s.to_str().unwrap(), "unknown status");
    }
    assert_eq!(bp_status::BP_OK as i32, 0);
    assert_eq!(bp_status::BP_PENDING as i32, 1);
    assert_eq!(bp_status::BP_INVALID_ARGUMENT as i32, 2);
    assert_eq!(bp_status::BP_PANIC as i32, 17);
    assert_eq!(bp_status::BP_EMPTY as i32, 18);
    assert_eq!(bp_status::BP_LOGGER_IN_USE as i32, 19);
    assert_eq!(bp_status::BP_DONE as i32, 20);
    assert_eq!(bp_status::BP_BUFFER_TOO_SMALL as i32, 21);
}

// ------------------------------------------------------------- jobs

#[test]
fn job_reports_and_polls_after_the_end() {
    let server = support::s3s();
    let files = make_files(&[
        ("ffi/job/small".to_string(), 1000),
        ("ffi/job/big".to_string(), 6 * MIB + 1),
    ]);
    let up = uploader_for(
        &server,
        &[("part_size", "5MiB"), ("multipart_threshold", "5MiB")],
    );
    let job = start(up, &pairs(&files));
    unsafe {
        assert_eq!(bp_job_file_count(job), 2);
        assert_eq!(
            bp_job_wait(job, 60_000),
            bp_status::BP_OK,
            "{}",
            job_error(job)
        );
        let p = poll(job);
        assert_eq!(
            p.state,
            bp_job_state::BP_JOB_SUCCEEDED,
            "{}",
            job_error(job)
        );
        assert_eq!(p.error, bp_status::BP_OK);
        assert_eq!((p.files_total, p.files_done, p.files_failed), (2, 2, 0));
        assert_eq!((p.parts_total, p.parts_done), (3, 3));
        assert_eq!(p.bytes_done, (6 * MIB + 1001) as u64);
        assert_eq!(p.bytes_total, p.bytes_done);
        assert_eq!(job_error(job), "");
        // After the end: the same final snapshot, as often as asked; wait
        // returns at once; stop is a harmless no-op, twice.
        for _ in 0..3 {
            let again = poll(job);
            assert_eq!(again.state, p.state);
            assert_eq!(again.bytes_done, p.bytes_done);
            assert_eq!(again.elapsed_ms, p.elapsed_ms);
        }
        assert_eq!(bp_job_wait(job, 0), bp_status::BP_OK);
        assert_eq!(bp_job_stop(job), bp_status::BP_OK);
        assert_eq!(bp_job_stop(job), bp_status::BP_OK);
        assert_eq!(poll(job).state, bp_job_state::BP_JOB_SUCCEEDED);

        for (i, (path, key, len, seed)) in files.items.iter().enumerate() {
            let r = report(job, i);
            assert_eq!(
                CStr::from_ptr(r.path).to_str().unwrap(),
                path.to_str().unwrap()
            );
            assert_eq!(CStr::from_ptr(r.key).to_str().unwrap(), key);
            assert_eq!(r.state, bp_file_state::BP_FILE_COMPLETED);
            assert_eq!((r.size, r.bytes_done), (*len as u64, *len as u64));
            assert_eq!(r.error, bp_status::BP_OK);
            // A completed multipart upload is no longer open.
            assert!(r.upload_id.is_null(), "{:?}", report_str(r.upload_id));
            if *len < 5 * MIB {
                assert_eq!(etag(&r), md5_hex(&pattern(*len, *seed)));
            } else {
                assert!(etag(&r).ends_with("-2"), "{}", etag(&r));
            }
        }
        let mut r = report_out();
        assert_fails(
            bp_job_file(job, 2, &mut r),
            bp_status::BP_INVALID_ARGUMENT,
            &["'index' is 2", "2 files"],
        );
        // The report's strings live as long as the job, not the call.
        let r0 = report(job, 0);
        let _ = poll(job);
        assert_eq!(CStr::from_ptr(r0.key).to_str().unwrap(), "ffi/job/small");

        // Pausing needs a journal.
        assert_fails(
            bp_job_pause(job),
            bp_status::BP_MISUSE,
            &["bp_job_pause", "journal"],
        );
        bp_job_free(job);
        bp_uploader_free(up);
    }
    files.verify_all(&server.store());
}

/// Files big enough, with a 1 MiB/s limit, that a job is still running
/// long after a stop request.
fn slow_job_files() -> support::Files {
    make_files(&[
        // Keyed like the C examples key them: prefix + base name.
        ("ffi/slow/f00000".to_string(), 12 * MIB),
        ("ffi/slow/f00001".to_string(), 2 * MIB),
        // One PutObject, more than the rate limit lets through before the
        // tests stop: in flight like the others then, whatever the order.
        ("ffi/slow/f00002".to_string(), 900 * 1024),
    ])
}

/// Waits until file `i` of the job is uploading (so a stop has an upload
/// to abort), failing the test after 10 s.
fn wait_until_file_runs(job: *const bp_job, i: usize) {
    let t = Instant::now();
    while report(job, i).state != bp_file_state::BP_FILE_RUNNING {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "file {i} did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

const SLOW: &[(&str, &str)] = &[
    ("part_size", "5MiB"),
    ("multipart_threshold", "1MiB"),
    ("rate_limit", "1MiB"),
    ("workers", "4"),
];

fn assert_nothing_left(server: &Server, files: &support::Files) {
    let store = server.store();
    for i in 0..files.items.len() {
        files.assert_absent(&store, i);
    }
    server.assert_no_open_uploads();
}

#[test]
fn stop_from_another_thread_aborts_every_upload() {
    let server = support::s3s();
    let files = slow_job_files();
    let up = uploader_for(&server, SLOW);
    let job = start(up, &pairs(&files));
    wait_until_file_runs(job, 0);
    let job_addr = job as usize;
    let stopper = std::thread::spawn(move || {
        // Meanwhile the test's thread blocks in bp_job_wait.
        std::thread::sleep(Duration::from_millis(100));
        let job = job_addr as *mut bp_job;
        unsafe { [bp_job_stop(job), bp_job_stop(job)] }
    });
    let started = Instant::now();
    unsafe {
        assert_eq!(bp_job_wait(job, 1), bp_status::BP_PENDING);
        assert_eq!(bp_job_wait(job, BP_WAIT_FOREVER), bp_status::BP_OK);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            stopper.join().unwrap(),
            [bp_status::BP_OK, bp_status::BP_OK]
        );
        let p = poll(job);
        assert_eq!(p.state, bp_job_state::BP_JOB_STOPPED);
        assert_eq!(p.error, bp_status::BP_STOPPED);
        assert!(job_error(job).contains("stopped"), "{}", job_error(job));
        let states: Vec<_> = (0..3).map(|i| report(job, i).state).collect();
        assert_eq!(states[0], bp_file_state::BP_FILE_ABORTED, "{states:?}");
        for s in &states {
            assert!(
                matches!(
                    s,
                    bp_file_state::BP_FILE_ABORTED | bp_file_state::BP_FILE_NOT_STARTED
                ),
                "{states:?}"
            );
        }
        bp_job_free(job);
        bp_uploader_free(up);
    }
    assert_nothing_left(&server, &files);
}

#[test]
fn freeing_a_running_job_stops_it_first() {
    let server = support::s3s();
    let files = slow_job_files();
    let up = uploader_for(&server, SLOW);
    let job = start(up, &pairs(&files));
    wait_until_file_runs(job, 0);
    let started = Instant::now();
    unsafe {
        assert_eq!(poll(job).state, bp_job_state::BP_JOB_RUNNING);
        bp_job_free(job);
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // bp_job_free returned only after the job ended: its uploads are gone now.
    assert_nothing_left(&server, &files);
    unsafe { bp_uploader_free(up) };
}

#[test]
fn freeing_the_uploader_stops_its_jobs_and_keeps_their_handles() {
    let server = support::s3s();
    let files = slow_job_files();
    let up = uploader_for(&server, SLOW);
    let job = start(up, &pairs(&files));
    wait_until_file_runs(job, 0);
    unsafe {
        bp_uploader_free(up);
        // The job ended with the uploader; its handle still answers.
        assert_eq!(bp_job_wait(job, 0), bp_status::BP_OK);
        assert_eq!(poll(job).state, bp_job_state::BP_JOB_STOPPED);
        assert_eq!(report(job, 0).state, bp_file_state::BP_FILE_ABORTED);
        bp_job_free(job);
    }
    assert_nothing_left(&server, &files);
}

#[test]
fn pause_keeps_uploads_and_resume_finishes_them() {
    let server = support::s3s();
    let files = slow_job_files();
    let dir = tempfile::tempdir().unwrap();
    let journal = c(dir.path().join("job.journal").to_str().unwrap());
    let up = uploader_for(&server, SLOW);
    let batch = batch_of(&pairs(&files));
    let mut job = null_mut();
    unsafe {
        assert_eq!(
            bp_batch_set_journal(batch, journal.as_ptr()),
            bp_status::BP_OK
        );
        assert_eq!(
            bp_start(up, batch, &mut job),
            bp_status::BP_OK,
            "{}",
            last_error()
        );
        bp_batch_free(batch);
        wait_until_file_runs(job, 0);
        assert_eq!(bp_job_pause(job), bp_status::BP_OK, "{}", last_error());
        assert_eq!(bp_job_wait(job, 30_000), bp_status::BP_OK);
        let p = poll(job);
        assert_eq!(p.state, bp_job_state::BP_JOB_PAUSED);
        assert_eq!(p.error, bp_status::BP_PAUSED);
        let paused = report(job, 0);
        assert_eq!(paused.state, bp_file_state::BP_FILE_PAUSED);
        // The report names the upload the pause kept open.
        let upload_id = report_str(paused.upload_id).expect("a paused file's upload id");
        bp_job_free(job);
        bp_uploader_free(up);
        assert!(
            server.open_uploads().iter().any(|u| u.contains(&upload_id)),
            "{upload_id} is not among the open uploads {:?}",
            server.open_uploads()
        );
    }

    // Another uploader, at full speed, continues from the journal.
    let up = uploader_for(
        &server,
        &[("part_size", "5MiB"), ("multipart_threshold", "1MiB")],
    );
    let mut job = null_mut();
    unsafe {
        assert_eq!(
            bp_resume(up, journal.as_ptr(), &mut job),
            bp_status::BP_OK,
            "{}",
            last_error()
        );
        assert_eq!(bp_job_file_count(job), 3);
        assert_eq!(bp_job_wait(job, 60_000), bp_status::BP_OK);
        assert_eq!(
            poll(job).state,
            bp_job_state::BP_JOB_SUCCEEDED,
            "{}",
            job_error(job)
        );
        for (i, (path, key, _, _)) in files.items.iter().enumerate() {
            let r = report(job, i);
            assert_eq!(
                CStr::from_ptr(r.path).to_str().unwrap(),
                path.to_str().unwrap()
            );
            assert_eq!(CStr::from_ptr(r.key).to_str().unwrap(), key);
            assert_eq!(r.state, bp_file_state::BP_FILE_COMPLETED);
        }
        bp_job_free(job);
        bp_uploader_free(up);
    }
    files.verify_all(&server.store());
    server.assert_no_open_uploads();
}

#[test]
fn wrong_credentials_fail_the_job_with_the_servers_words() {
    let server = support::s3s();
    let files = make_files(&[("ffi/denied".to_string(), 100)]);
    let up = uploader_for(&server, &[("secret_key", "wrong"), ("retries", "1")]);
    let job = start(up, &pairs(&files));
    unsafe {
        assert_eq!(bp_job_wait(job, 60_000), bp_status::BP_OK);
        let p = poll(job);
        assert_eq!(p.state, bp_job_state::BP_JOB_FAILED);
        assert_eq!(p.error, bp_status::BP_SERVER);
        let msg = job_error(job);
        assert!(
            msg.contains("HTTP 403") && msg.contains("SignatureDoesNotMatch"),
            "{msg}"
        );
        assert!(msg.contains("ffi/denied"), "{msg}");
        let r = report(job, 0);
        assert_eq!(r.state, bp_file_state::BP_FILE_FAILED);
        assert_eq!(r.error, bp_status::BP_SERVER);
        // bp_job_last_error with a short buffer: cut, full length reported.
        let mut buf = [0 as c_char; 8];
        let mut n = 0;
        assert_eq!(
            bp_job_last_error(job, buf.as_mut_ptr(), buf.len(), &mut n),
            bp_status::BP_OK
        );
        assert_eq!(n, msg.len());
        assert_eq!(CStr::from_ptr(buf.as_ptr()).to_str().unwrap(), &msg[..7]);
        bp_job_free(job);
        bp_uploader_free(up);
    }
}

#[test]
fn resume_of_a_missing_journal_is_a_journal_error() {
    let up = offline_uploader();
    let mut job = null_mut();
    unsafe {
        let st = bp_resume(up, c("/nonexistent/batchput.journal").as_ptr(), &mut job);
        assert_fails(
            st,
            bp_status::BP_JOURNAL,
            &["bp_resume", "/nonexistent/batchput.journal"],
        );
        assert!(job.is_null());
        bp_uploader_free(up);
    }
}

// ------------------------------------------------------------- Python, Go

#[test]
fn python_ctypes_module_passes_its_tests() {
    let server = support::s3s();
    let work = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("capi/python/test_batchput.py"))
        .env("BATCHPUT_LIB", lib_dir().join("libbatchput.so"))
        .env("PYTHONDONTWRITEBYTECODE", "1");
    server_env(&mut cmd, &server, work.path());
    let out = run(&mut cmd, Duration::from_secs(180));
    let (so, se) = text(&out);
    assert!(out.status.success(), "{so}\n{se}");
    let last = so.lines().last().unwrap_or_default();
    assert!(last.ends_with(" passed, 0 failed"), "{so}\n{se}");
    let passed: u32 = last.split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 9, "{so}");
    assert!(
        so.contains("ok   test_list_delete_prefix_and_presign"),
        "{so}"
    );
    verify_caller_uploads(&server, work.path(), "python");
}

#[test]
fn go_package_passes_its_tests() {
    if Command::new("go").arg("version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "Go is required on CI: scripts/test.sh installs golang-go"
        );
        eprintln!("SKIPPED: go is not installed (apt-get install golang-go)");
        return;
    }
    let server = support::s3s();
    let work = tempfile::tempdir().unwrap();
    let lib = lib_dir();
    let mut cmd = Command::new("go");
    cmd.args(["test", "-count=1", "-v", "."])
        .current_dir(repo().join("capi/go/batchput"))
        // This build's library first, whatever else target/ holds.
        .env(
            "CGO_LDFLAGS",
            format!("-L{0} -Wl,-rpath,{0}", lib.display()),
        )
        .env("LD_LIBRARY_PATH", &lib)
        // Build caches under target/, not $HOME (CI may not set it).
        .env("GOCACHE", lib.join("../../go/cache"))
        .env("GOPATH", lib.join("../../go/path"))
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local");
    server_env(&mut cmd, &server, work.path());
    let out = run(&mut cmd, Duration::from_secs(300));
    let (so, se) = text(&out);
    assert!(out.status.success(), "{so}\n{se}");
    assert!(!so.contains("--- SKIP"), "{so}");
    for t in [
        "TestVersionMatchesHeader",
        "TestUploadSucceeds",
        "TestStopFromAnotherGoroutine",
        "TestBadKey",
        "TestBadOption",
        "TestClosedHandlesAreMisuse",
        "TestNewStatesKeepTheirNumbers",
        "TestDrainLogDeliversLibraryRecords",
        "TestNoSIGPIPEWhenTheServerAnswersEarly",
        "TestListDeletePrefixAndPresign",
        "TestDownloadAndDownloadPrefix",
    ] {
        assert!(so.contains(&format!("--- PASS: {t}")), "{t}:\n{so}");
    }
    verify_caller_uploads(&server, work.path(), "go");
}

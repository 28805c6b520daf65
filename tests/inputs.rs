//! Inputs a system library must survive: a file swapped for a FIFO after
//! planning, special entries in a directory walk, pseudo files that lie
//! about their size, a full descriptor table, and rate limits low enough
//! to outlast the stall timer.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use batchput::{
    Batch, Config, ErrorKind, FileState, Integrity, JobState, SkipReason, Skipped, Uploader,
};

use crate::support::{self, finish, make_files, pattern, MIB};

fn specs(list: &[(&str, usize)]) -> Vec<(String, usize)> {
    list.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[test]
fn a_file_swapped_for_a_fifo_after_planning_fails_fast_naming_it() {
    let server = support::s3s();
    // One worker and a slow first file: the second file (multipart, so an
    // upload exists when its source is opened) cannot be opened before the
    // first is done, long after the swap below.
    let files = make_files(&specs(&[("fifo/first", 2 * MIB), ("fifo/second", 6 * MIB)]));
    let up = Uploader::new(
        server
            .config()
            .workers(1)
            .rate_limit(MIB as u64)
            .part_size(5 * MIB as u64)
            .multipart_threshold(5 * MIB as u64),
    )
    .unwrap();
    let job = up.start(&files.batch()).unwrap();
    let second = files.items[1].0.clone();
    std::fs::remove_file(&second).unwrap();
    mkfifo(&second);
    let t = Instant::now();
    if !job.wait(Some(Duration::from_secs(20))) {
        // A blocked open(2) of the FIFO: free it before failing the test,
        // so the uploader can be dropped.
        let _writer = std::fs::OpenOptions::new().write(true).open(&second);
        panic!("the job hangs on the FIFO: {:?}", job.progress());
    }
    let p = job.progress();
    assert_eq!(p.state, JobState::Failed, "{:?}", p.error);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let e = p.error.unwrap();
    assert!(
        e.to_string().contains(&format!(
            "{} is a FIFO, not a regular file",
            second.display()
        )),
        "{e}"
    );
    let reports = job.files();
    assert_eq!(reports[0].state, FileState::Completed);
    assert_eq!(reports[1].state, FileState::Failed);
    files.verify(&server.store(), 0);
    files.assert_absent(&server.store(), 1);
    server.assert_no_open_uploads();
}

/// A tree with one of each entry a walk cannot upload, beside a file and a
/// link to a file, which it can.
fn special_tree(root: &Path) -> std::os::unix::net::UnixListener {
    use std::os::unix::fs::symlink;
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/file"), pattern(1000, 1)).unwrap();
    symlink(root.join("sub/file"), root.join("to-file")).unwrap();
    symlink(root.join("nowhere"), root.join("dangling")).unwrap();
    symlink(root.join("loop"), root.join("loop")).unwrap();
    symlink(root.join("sub"), root.join("to-dir")).unwrap();
    symlink("/dev/null", root.join("to-device")).unwrap();
    mkfifo(&root.join("sub/fifo"));
    std::os::unix::net::UnixListener::bind(root.join("socket")).unwrap()
}

#[test]
fn a_directory_walk_skips_what_it_cannot_upload_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let _socket = special_tree(root);
    let (batch, skipped) = Batch::from_dir_report(root, "p/", false).unwrap();
    let files: Vec<(PathBuf, String)> = batch
        .files()
        .map(|(p, k)| (p.to_path_buf(), k.to_string()))
        .collect();
    assert_eq!(
        files,
        vec![
            (root.join("sub/file"), "p/sub/file".to_string()),
            (root.join("to-file"), "p/to-file".to_string()),
        ]
    );
    let skip = |name: &str, reason| Skipped {
        path: root.join(name),
        reason,
    };
    assert_eq!(
        skipped,
        vec![
            skip("dangling", SkipReason::DanglingSymlink),
            skip("loop", SkipReason::SymlinkLoop),
            skip("socket", SkipReason::Socket),
            skip("sub/fifo", SkipReason::Fifo),
            skip("to-device", SkipReason::Device),
            skip("to-dir", SkipReason::DirectorySymlink),
        ]
    );
    assert_eq!(
        skipped[3].to_string(),
        format!(
            "{} is a FIFO, not a regular file",
            root.join("sub/fifo").display()
        )
    );
    // The old entry point walks the same way.
    assert_eq!(Batch::from_dir(root, "p/").unwrap().len(), 2);

    // Uploading the tree: the dangling link aborts nothing.
    let server = support::s3s();
    let up = Uploader::new(server.config()).unwrap();
    let job = up.start_dir(root, "p/").unwrap();
    assert_eq!(finish(&job, 30).state, JobState::Succeeded);
    let store = server.store();
    assert!(store.get_object("p/sub/file").unwrap() == pattern(1000, 1));
    assert!(store.get_object("p/to-file").unwrap() == pattern(1000, 1));
    assert_eq!(store.head_object("p/sub/fifo").unwrap(), None);
}

#[test]
fn strict_inputs_turns_a_skipped_entry_into_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("file"), b"x").unwrap();
    std::os::unix::fs::symlink(root.join("nowhere"), root.join("dangling")).unwrap();
    let e = Batch::from_dir_report(root, "", true).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        e.to_string(),
        format!(
            "{} is a symbolic link to nothing, not a regular file (strict_inputs)",
            root.join("dangling").display()
        )
    );

    let server = support::s3s();
    let mut cfg = server.config();
    cfg.set("strict_inputs", "true").unwrap();
    let up = Uploader::new(cfg).unwrap();
    let e = up.start_dir(root, "strict/").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("dangling"), "{e}");
    assert_eq!(server.store().head_object("strict/file").unwrap(), None);
}

#[test]
fn a_pseudo_file_that_says_it_is_empty_is_refused_not_uploaded_empty() {
    let status = Path::new("/proc/self/status");
    if std::fs::metadata(status).ok().map(|m| m.len()) != Some(0) {
        eprintln!("no procfs: skipped");
        return;
    }
    let server = support::s3s();
    let up = Uploader::new(server.config()).unwrap();
    let mut batch = Batch::new();
    batch.add(status, "proc/status");
    let e = up.start(&batch).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.to_string()
            .contains("/proc/self/status reports a size of 0 bytes but has content"),
        "{e}"
    );
    assert_eq!(server.store().head_object("proc/status").unwrap(), None);
}

#[test]
fn a_low_rate_limit_completes_and_is_not_taken_for_a_stall() {
    let server = support::s3s();
    let files = make_files(&specs(&[("slow/a", 64 << 10)]));
    let up = Uploader::new(
        server
            .config()
            .rate_limit(8 << 10)
            .stall_timeout(Duration::from_secs(5)),
    )
    .unwrap();
    let t = Instant::now();
    let job = up.start(&files.batch()).unwrap();
    let p = finish(&job, 60);
    assert_eq!(p.state, JobState::Succeeded, "{:?}", p.error);
    // 64 KiB at 8 KiB/s, less a quarter second of burst: the limit held.
    assert!(t.elapsed() >= Duration::from_secs(6), "{:?}", t.elapsed());
    files.verify_all(&server.store());
}

#[test]
fn a_rate_limit_below_one_byte_per_second_is_refused() {
    let mut cfg = Config::new();
    let e = cfg.set("rate_limit", "0.5").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig);
    assert!(
        e.to_string()
            .starts_with("option 'rate_limit': below 1 byte per second"),
        "{e}"
    );
}

#[test]
fn control_characters_in_options_are_refused_before_any_request() {
    let server = support::s3s();
    for (key, value) in [
        ("session_token", "token\r\nX-Injected: 1"),
        ("endpoint", "http://127.0.0.1:1/\n"),
        ("secret_key", "secret\0"),
        ("meta.owner", "a\tb"),
    ] {
        let mut cfg = server.config();
        let e = cfg.set(key, value).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("option '{key}': contains the control character")),
            "{e}"
        );
    }
    // Through the typed builder, `Uploader::new` refuses it the same way.
    let e = Uploader::new(server.config().session_token("token\r\nX-Injected: 1"))
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig);
    assert_eq!(
        e.to_string(),
        "option 'session_token': contains the control character '\\r'; no option may hold \
         one (CR, LF, NUL, tab, ...)"
    );
}

/// The child side of the descriptor-table tests: fills the table, leaving
/// `BPI_FREE` descriptors, then uploads one file and prints the error.
#[test]
#[ignore = "run by the inputs tests in a child process"]
fn descriptor_table_child() {
    let Ok(free) = std::env::var("BPI_FREE") else {
        return;
    };
    let var = |k: &str| std::env::var(k).unwrap();
    let cfg = Config::new()
        .endpoint(&var("BPI_ENDPOINT"))
        .bucket(&var("BPI_BUCKET"))
        .credentials(&var("BPI_ACCESS_KEY"), &var("BPI_SECRET_KEY"))
        .region(&var("BPI_REGION"))
        .retries(1)
        // An explicit mode: the integrity probe's pooled connection would
        // hold the one free descriptor the test leaves.
        .integrity(Integrity::EtagMd5);
    let up = Uploader::new(cfg).unwrap();
    let mut batch = Batch::new();
    batch.add(var("BPI_FILE"), "emfile/a");
    // A small table, then every slot taken but `free`.
    // SAFETY: getrlimit/setrlimit on structs we own; open/close on
    // descriptors this function owns.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_cur.min(256);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        let null = CString::new("/dev/null").unwrap();
        let mut held = Vec::new();
        loop {
            let fd = libc::open(null.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd < 0 {
                break;
            }
            held.push(fd);
        }
        for _ in 0..free.parse::<usize>().unwrap() {
            libc::close(held.pop().unwrap());
        }
    }
    let job = up.start(&batch).unwrap();
    assert!(job.wait(Some(Duration::from_secs(30))), "the job hangs");
    println!(
        "CHILD-RESULT {:?} {}",
        job.state(),
        job.error().map(|e| e.to_string()).unwrap_or_default()
    );
}

/// Runs the child with `free` descriptors; returns what it printed and the
/// path of the file it uploaded.
fn run_descriptor_child(free: usize) -> (String, PathBuf) {
    let server = support::s3s();
    let files = make_files(&specs(&[("emfile/a", 1000)]));
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "inputs::descriptor_table_child",
            "--nocapture",
        ])
        .env("BPI_FREE", free.to_string())
        .env("BPI_ENDPOINT", &server.endpoint)
        .env("BPI_BUCKET", &server.bucket)
        .env("BPI_ACCESS_KEY", &server.access_key)
        .env("BPI_SECRET_KEY", &server.secret_key)
        .env("BPI_REGION", &server.region)
        .env("BPI_FILE", &files.items[0].0)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("CHILD-RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "no result from the child: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string();
    files.assert_absent(&server.store(), 0);
    (result, files.items[0].0.clone())
}

const TOO_MANY: &str = "too many open files: lower max_open_files or raise the limit (ulimit -n)";

#[test]
fn a_full_descriptor_table_says_so_when_opening_a_file() {
    let (result, path) = run_descriptor_child(0);
    assert!(result.starts_with("Failed "), "{result}");
    assert!(
        result.contains(&format!("cannot open {}: {TOO_MANY}", path.display())),
        "{result}"
    );
}

#[test]
fn a_full_descriptor_table_says_so_when_opening_a_connection() {
    // One slot: the file opens, the socket cannot.
    let (result, _) = run_descriptor_child(1);
    assert!(result.starts_with("Failed "), "{result}");
    assert!(
        result.contains(&format!("cannot open a connection: {TOO_MANY}")),
        "{result}"
    );
}

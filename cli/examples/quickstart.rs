//! batchput's main job in one command, with nothing to set up:
//!
//! ```sh
//! cargo run --release --example quickstart
//! ```
//!
//! It starts an S3 server (s3s-fs) on 127.0.0.1 in a temporary directory,
//! makes a sample batch in another (four 32 MiB files and a few hundred
//! small ones in nested folders, some with spaces, '+' and accents in their
//! names), uploads it with the live progress display, prints the per-file
//! report and the totals, then reads every object back with GET and
//! compares it byte for byte with its file. It exits non-zero if anything
//! failed or differs.
//!
//! Against a server of your own, give a directory and the destination in
//! the environment (credentials from BATCHPUT_ACCESS_KEY/BATCHPUT_SECRET_KEY
//! or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY):
//!
//! ```sh
//! BATCHPUT_ENDPOINT=http://127.0.0.1:9000 BATCHPUT_BUCKET=my-bucket \
//! AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \
//!   cargo run --release --example quickstart -- ./some/dir
//! ```
//!
//! The directory's files go under the prefix `quickstart/` (or
//! BATCHPUT_PREFIX) and are verified the same way.
//!
//! A server to try the `batchput` command on:
//!
//! ```sh
//! cargo run --release --example quickstart -- --serve
//! ```
//!
//! keeps the embedded s3s-fs running on 127.0.0.1 (port 9000 when it is
//! free) with a bucket, prints the `export` lines that point the command
//! (and AWS tools) at it and a ready `batchput upload` command, and stops
//! on Ctrl-C, deleting what it stored.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use batchput::{Config, FileState, JobState, Uploader};
use batchput_cli::{self as ui, Destination};

const BUCKET: &str = "quickstart";
const ACCESS_KEY: &str = "AKIAQUICKSTART000001";
const SECRET_KEY: &str = "quickstart/secret/key/0123456789abcdef";
const BIG_FILES: usize = 4;
const BIG_SIZE: usize = 32 << 20;
const SMALL_FILES: usize = 300;

fn main() -> ExitCode {
    // The library's warnings (and RUST_LOG's choice) on stderr, as the
    // command shows them.
    batchput_cli::logger::init(0);
    if std::env::args().nth(1).as_deref() == Some("--serve") {
        return serve_until_interrupted();
    }
    match std::env::var("BATCHPUT_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => own_server(&endpoint),
        _ => embedded(),
    }
}

/// The demo: embedded server, generated batch.
fn embedded() -> ExitCode {
    let server_root = tempfile::tempdir().expect("a temporary directory for the server");
    let server = EmbeddedS3::start(server_root.path(), 0);
    println!(
        "started an S3 server (s3s-fs) at {}, storing in {}",
        server.endpoint,
        server_root.path().display()
    );

    let sample = tempfile::tempdir().expect("a temporary directory for the sample");
    let bytes = make_sample(sample.path());
    println!(
        "made a sample batch in {}: {BIG_FILES} files of {} and {SMALL_FILES} small ones, {} in all",
        sample.path().display(),
        ui::human_bytes(BIG_SIZE as u64),
        ui::human_bytes(bytes)
    );

    let cfg = Config::new()
        .endpoint(&server.endpoint)
        .bucket(BUCKET)
        .credentials(ACCESS_KEY, SECRET_KEY);
    let up = Uploader::new(cfg).expect("a valid configuration");
    up.store()
        .create_bucket(None)
        .expect("creating the bucket 'quickstart'");
    let code = upload_and_verify(&up, sample.path(), "quickstart/");
    drop(up);
    drop(server);
    if code == ExitCode::SUCCESS {
        println!(
            "\nNext: try the command on a server that stays up:\n  \
             cargo run --release --example quickstart -- --serve\n\
             (it prints the exports and the upload command to paste)"
        );
    }
    code
}

/// `--serve`: the embedded server, its bucket and how to point the command
/// at it, until Ctrl-C or SIGTERM.
fn serve_until_interrupted() -> ExitCode {
    let root = tempfile::tempdir().expect("a temporary directory for the server");
    let server = EmbeddedS3::start(root.path(), 9000);
    let up = Uploader::new(
        Config::new()
            .endpoint(&server.endpoint)
            .bucket(BUCKET)
            .credentials(ACCESS_KEY, SECRET_KEY),
    )
    .expect("a valid configuration");
    if let Err(e) = up.store().create_bucket(None) {
        eprintln!("error: cannot create the bucket '{BUCKET}': {e}");
        return ExitCode::FAILURE;
    }
    drop(up);
    ui::catch_interrupts();
    println!(
        "serving S3 (s3s-fs) at {} with bucket '{BUCKET}', storing in {} (deleted when it stops)\n\n\
         In another terminal, point batchput (and AWS tools) at it:\n\n\
         export BATCHPUT_ENDPOINT={}\n\
         export BATCHPUT_BUCKET={BUCKET}\n\
         export AWS_ACCESS_KEY_ID={ACCESS_KEY}\n\
         export AWS_SECRET_ACCESS_KEY={SECRET_KEY}\n\n\
         then upload a directory:\n\n\
         batchput upload ./some/dir --prefix try/\n\n\
         (batchput not on PATH? From this repository: cargo run --release -- upload ./some/dir --prefix try/)\n\
         Ctrl-C stops the server.",
        server.endpoint,
        root.path().display(),
        server.endpoint,
    );
    while ui::interrupted().is_none() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(server);
    println!("stopped the server");
    ExitCode::SUCCESS
}

/// Uploads a directory given on the command line to BATCHPUT_ENDPOINT.
fn own_server(endpoint: &str) -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!(
            "error: BATCHPUT_ENDPOINT is set, so give the directory to upload: \
             cargo run --release --example quickstart -- DIR"
        );
        return ExitCode::from(2);
    };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let Some(bucket) = env("BATCHPUT_BUCKET") else {
        eprintln!("error: set BATCHPUT_BUCKET to the bucket to upload to");
        return ExitCode::from(2);
    };
    let mut cfg = Config::new();
    let mut settings = vec![
        ("endpoint", Some(endpoint.to_string())),
        ("bucket", Some(bucket)),
    ];
    settings.push((
        "region",
        env("BATCHPUT_REGION").or_else(|| ui::aws_env("region")),
    ));
    for (key, var) in [
        ("access_key", "BATCHPUT_ACCESS_KEY"),
        ("secret_key", "BATCHPUT_SECRET_KEY"),
        ("session_token", "BATCHPUT_SESSION_TOKEN"),
        ("addressing", "BATCHPUT_ADDRESSING"),
        ("ca_file", "BATCHPUT_CA_FILE"),
    ] {
        settings.push((key, env(var)));
    }
    for (key, value) in settings {
        if let Some(v) = value {
            if let Err(e) = cfg.set(key, &v) {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let up = match Uploader::new(cfg) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let prefix = env("BATCHPUT_PREFIX").unwrap_or_else(|| "quickstart/".into());
    upload_and_verify(&up, &dir, &prefix)
}

/// The main job: upload `dir` under `prefix` with the live display, print
/// the report, then GET every object and compare. Exits 0 when all of it
/// went well, 130 after Ctrl-C (the upload cleaned up), 1 otherwise.
fn upload_and_verify(up: &Uploader, dir: &Path, prefix: &str) -> ExitCode {
    let dest = Destination {
        bucket: up.store().bucket().to_string(),
        endpoint: up.store().endpoint_urls().join(","),
        typed: Vec::new(),
    };
    let target = format!("s3://{}/{prefix}", dest.bucket);
    println!("\nuploading {} to {target}", dir.display());
    ui::catch_interrupts();
    let job = match up.start_dir(dir, prefix) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: {}", ui::explain(&e, &dest));
            return ExitCode::FAILURE;
        }
    };
    let display = ui::Display::new(true, job.progress().bytes_total, ui::Direction::Upload);
    let outcome = ui::watch(&job, &display, &ui::OnInterrupt::Stop);
    let p = &outcome.progress;
    let files = job.files();

    // The largest first: the big files are the interesting ones.
    let mut by_size = files.clone();
    by_size.sort_by_key(|f| std::cmp::Reverse(f.size));
    println!("\n{}", ui::file_table(&by_size, 12));
    println!(
        "{}",
        ui::summary(p, &files, &target, outcome.peak_bps, ui::Direction::Upload)
    );
    if p.state != JobState::Succeeded {
        if outcome.signal.is_some() {
            eprintln!("interrupted: the upload was stopped and cleaned up");
            return ExitCode::from(outcome.exit_code());
        }
        if let Some(e) = &p.error {
            eprintln!("error: {}", ui::explain(e, &dest));
            if let Some(d) = ui::detail(e, &dest) {
                eprintln!("  ({d})");
            }
        }
        return ExitCode::FAILURE;
    }

    println!("\nverifying: reading every object back with GET and comparing it with its file");
    let store = up.store();
    let (mut checked, mut bytes, mut bad) = (0usize, 0u64, 0usize);
    for f in files.iter().filter(|f| f.state == FileState::Completed) {
        let local = match std::fs::read(&f.path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("  cannot read {} again: {e}", f.path.display());
                bad += 1;
                continue;
            }
        };
        match store.get_object(&f.key) {
            Ok(remote) if remote == local => {
                checked += 1;
                bytes += remote.len() as u64;
            }
            Ok(remote) => {
                eprintln!(
                    "  MISMATCH: '{}' has {} bytes on the server, {} differ from {}",
                    f.key,
                    remote.len(),
                    differing(&remote, &local),
                    f.path.display()
                );
                bad += 1;
            }
            Err(e) => {
                eprintln!("  cannot GET '{}': {}", f.key, ui::explain(&e, &dest));
                bad += 1;
            }
        }
    }
    if bad == 0 && checked == files.len() {
        println!(
            "verified: all {checked} objects ({}) match their files byte for byte",
            ui::human_bytes(bytes)
        );
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "verification FAILED: {bad} of {} objects missing or different",
            files.len()
        );
        ExitCode::FAILURE
    }
}

/// How many bytes differ between two buffers (a length difference counts).
fn differing(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count() + a.len().abs_diff(b.len())
}

// ---------------------------------------------------------------- the sample

/// Writes the sample batch under `root`; returns its size in bytes.
fn make_sample(root: &Path) -> u64 {
    let mut total = 0u64;
    let mut write = |rel: String, len: usize, seed: u64| {
        let path = root.join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).expect("creating a sample folder");
        std::fs::write(&path, pattern(len, seed)).expect("writing a sample file");
        total += len as u64;
    };
    for i in 0..BIG_FILES {
        write(format!("videos/take-{}.bin", i + 1), BIG_SIZE, i as u64);
    }
    for i in 0..SMALL_FILES {
        // Sizes from 1 byte to 64 KiB; names a real tree would have.
        let len = 1 + (i * 7919) % (64 << 10);
        let rel = match i % 3 {
            0 => format!("photos/2026 summer/été {i:03}.jpg"),
            1 => format!("docs/q{}/report+notes {i:03}.txt", i % 4 + 1),
            _ => format!("logs/day-{:02}/app.{i:03}.log", i % 7 + 1),
        };
        write(rel, len, 1000 + i as u64);
    }
    total
}

/// Bytes that look random (so nothing compresses them away), cheaply.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

// ---------------------------------------------------------------- the server

/// s3s-fs served on 127.0.0.1 from its own thread (on `port` when it is
/// free, else on any free port); stops when dropped. The same way the
/// integration tests run it.
struct EmbeddedS3 {
    endpoint: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedS3 {
    fn start(root: &Path, port: u16) -> EmbeddedS3 {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .or_else(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a port on 127.0.0.1");
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let root = root.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("s3s-fs".into())
            .spawn(move || serve(listener, root, rx))
            .unwrap();
        EmbeddedS3 {
            endpoint,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for EmbeddedS3 {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    listener: std::net::TcpListener,
    root: PathBuf,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder as ConnBuilder;
    use s3s::auth::SimpleAuth;
    use s3s::service::S3ServiceBuilder;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let fs = s3s_fs::FileSystem::new(root).expect("the s3s-fs root");
        let service = {
            let mut b = S3ServiceBuilder::new(fs);
            b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            b.build()
        };
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let http = ConnBuilder::new(TokioExecutor::new());
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((socket, _)) = accepted else { continue };
                    // Without it, a response written as head + body waits
                    // for the client's delayed ACK: 40 ms per request.
                    let _ = socket.set_nodelay(true);
                    let conn = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                    tokio::spawn(async move { let _ = conn.await; });
                }
                _ = &mut stop => break,
            }
        }
    });
    rt.shutdown_background();
}

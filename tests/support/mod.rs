//! Real S3 servers for the tests, started on 127.0.0.1 with a free port:
//! s3s-fs in-process (fast; no part ETag checks, no ListMultipartUploads)
//! and moto as a child process with authentication on (checks InvalidPart,
//! EntityTooSmall, lists uploads; slow, so tests give it small data).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use batchput::store::Store;
use batchput::Config;

pub mod garage;
pub mod proxy;
pub mod tls;

pub const S3S_ACCESS_KEY: &str = "AKIATESTBATCHPUT0001";
pub const S3S_SECRET_KEY: &str = "batchput/test/secret/key/0123456789abcdef";

/// Which implementation a server is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    S3s,
    Moto,
    Garage,
}

/// A running S3 server with one bucket of its own.
pub struct Server {
    pub kind: Kind,
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
    pub addressing: batchput::Addressing,
    pub region: String,
    /// s3s-fs's storage directory, where open uploads are visible as files.
    root: Option<PathBuf>,
    _guard: Guard,
}

enum Guard {
    S3s(S3sGuard),
    Moto(MotoGuard),
    Garage(garage::Cluster),
}

impl Server {
    /// A configuration pointing at this server and its bucket.
    pub fn config(&self) -> Config {
        self.config_via(&self.endpoint)
    }

    /// The same, but through another endpoint URL (a fault proxy).
    pub fn config_via(&self, endpoint: &str) -> Config {
        Config::new()
            .endpoint(endpoint)
            .bucket(&self.bucket)
            .credentials(&self.access_key, &self.secret_key)
            .addressing(self.addressing)
            .region(&self.region)
    }

    /// A client for direct checks (GET the bytes, list uploads).
    pub fn store(&self) -> Store {
        Store::new(&self.config()).expect("store for the test server")
    }

    /// A fresh bucket on the same server, for tests that need two.
    pub fn new_bucket(&self) -> String {
        let name = unique_bucket();
        self.create_bucket(&name);
        name
    }

    fn create_bucket(&self, name: &str) {
        match &self._guard {
            // Garage's imported test key may not create buckets: its CLI does.
            Guard::Garage(cluster) => cluster.create_bucket(name),
            _ => Store::new(&self.config().bucket(name))
                .unwrap()
                .create_bucket(None)
                .unwrap_or_else(|e| panic!("creating the test bucket on {:?}: {e}", self.kind)),
        }
    }

    /// The Garage cluster behind this server, to kill and restart nodes.
    pub fn garage(&mut self) -> Option<&mut garage::Cluster> {
        match &mut self._guard {
            Guard::Garage(c) => Some(c),
            _ => None,
        }
    }

    /// Every multipart upload still open on the server (any bucket): s3s-fs
    /// keeps each as `.upload-<id>.json` and its parts as
    /// `.upload_id-<id>.part-<n>` in its root, which is checked directly;
    /// moto and Garage are asked (see [`listed_open_uploads`]).
    pub fn open_uploads(&self) -> Vec<String> {
        match &self.root {
            Some(root) => std::fs::read_dir(root)
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".upload-") || n.starts_with(".upload_id-"))
                .collect(),
            None => listed_open_uploads(&self.store()),
        }
    }

    /// Fails the test, listing them, if any multipart upload or stray part
    /// is left on the server: what a user is billed for.
    pub fn assert_no_open_uploads(&self) {
        let open = self.open_uploads();
        assert!(
            open.is_empty(),
            "{:?}: uploads left open: {open:?}",
            self.kind
        );
    }

    /// Fails the test, naming this server and the job's error, unless the
    /// job succeeded.
    #[track_caller]
    pub fn assert_succeeded(&self, p: &batchput::Progress) {
        assert_eq!(
            p.state,
            batchput::JobState::Succeeded,
            "{:?}: {:?}",
            self.kind,
            p.error
        );
    }

    /// Whether the server implements ListMultipartUploads (s3s-fs does not).
    pub fn lists_uploads(&self) -> bool {
        self.kind != Kind::S3s
    }
}

fn unique_bucket() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "bp-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn with_bucket(
    kind: Kind,
    endpoint: String,
    ak: String,
    sk: String,
    addressing: batchput::Addressing,
    guard: Guard,
) -> Server {
    let server = Server {
        kind,
        endpoint,
        access_key: ak,
        secret_key: sk,
        bucket: unique_bucket(),
        addressing,
        root: match &guard {
            Guard::S3s(g) => Some(g._root.path().to_path_buf()),
            _ => None,
        },
        region: match kind {
            Kind::Garage => garage::REGION.to_string(),
            _ => "us-east-1".to_string(),
        },
        _guard: guard,
    };
    let bucket = server.bucket.clone();
    server.create_bucket(&bucket);
    server
}

// ---------------------------------------------------------------- s3s-fs

struct S3sGuard {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _root: tempfile::TempDir,
}

impl Drop for S3sGuard {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// s3s-fs in this process, path-style.
pub fn s3s() -> Server {
    s3s_addressed(batchput::Addressing::Path)
}

/// s3s-fs with its files in memory (/dev/shm, where there is one): a
/// store whose answers come as soon as it can work, for tests of how the
/// client judges distance. On disk, a PUT waits for the file system (about
/// 4 ms each here, 50 ms with 16 at once), which is a far store's
/// answer time.
pub fn s3s_in_memory() -> Server {
    let shm = std::path::Path::new("/dev/shm");
    let root = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    };
    s3s_rooted(
        root.expect("temp dir for s3s-fs"),
        batchput::Addressing::Path,
        &[],
    )
}

/// s3s-fs with the given addressing; virtual-hosted serves
/// `http://BUCKET.localhost:PORT` (batchput resolves `*.localhost` to
/// loopback itself) and only that.
pub fn s3s_addressed(addressing: batchput::Addressing) -> Server {
    s3s_serving(addressing, &[])
}

/// s3s-fs with virtual-hosted addressing that also answers for the
/// `extra_domains` (`localhost:PORT` of a front before it, say).
pub fn s3s_virtual_also_for(extra_domains: &[String]) -> Server {
    s3s_serving(batchput::Addressing::Virtual, extra_domains)
}

fn s3s_serving(addressing: batchput::Addressing, extra_domains: &[String]) -> Server {
    let root = tempfile::tempdir().expect("temp dir for s3s-fs");
    s3s_rooted(root, addressing, extra_domains)
}

fn s3s_rooted(
    root: tempfile::TempDir,
    addressing: batchput::Addressing,
    extra_domains: &[String],
) -> Server {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let root_path = root.path().to_path_buf();
    let virtual_hosted = addressing == batchput::Addressing::Virtual;
    let domain = virtual_hosted.then(|| {
        let mut all = vec![format!("localhost:{port}")];
        all.extend(extra_domains.iter().cloned());
        all
    });
    let thread = std::thread::Builder::new()
        .name("s3s-fs".into())
        .spawn(move || serve_s3s(listener, root_path, domain, rx))
        .unwrap();
    let guard = S3sGuard {
        shutdown: Some(tx),
        thread: Some(thread),
        _root: root,
    };
    let host = if virtual_hosted {
        "localhost"
    } else {
        "127.0.0.1"
    };
    with_bucket(
        Kind::S3s,
        format!("http://{host}:{port}"),
        S3S_ACCESS_KEY.into(),
        S3S_SECRET_KEY.into(),
        addressing,
        Guard::S3s(guard),
    )
}

fn serve_s3s(
    listener: std::net::TcpListener,
    root: PathBuf,
    domain: Option<Vec<String>>,
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
        let fs = s3s_fs::FileSystem::new(root).unwrap();
        let service = {
            let mut b = S3ServiceBuilder::new(fs);
            b.set_auth(SimpleAuth::from_single(S3S_ACCESS_KEY, S3S_SECRET_KEY));
            if let Some(d) = domain {
                b.set_host(s3s::host::MultiDomain::new(&d).unwrap());
            }
            b.build()
        };
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let http = ConnBuilder::new(TokioExecutor::new());
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((socket, _)) = accepted else { continue };
                    // Without it, a response written as head + body waits
                    // for the client's delayed ACK: 40 ms per GET.
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

// ---------------------------------------------------------------- moto

struct MotoGuard {
    child: Child,
}

impl Drop for MotoGuard {
    fn drop(&mut self) {
        // Closing stdin ends the script; kill in case it hangs.
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The repository's root, whichever package's tests include this module
/// (the library's, or cli/'s by path).
pub fn repo_root() -> PathBuf {
    let package = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    package
        .ancestors()
        .find(|dir| dir.join("tests/support/mod.rs").is_file())
        .unwrap_or(&package)
        .to_path_buf()
}

/// The Python that has moto installed: $BATCHPUT_TEST_PYTHON, or the
/// repository's .venv (which `.ci/run` creates).
fn moto_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BATCHPUT_TEST_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = repo_root().join(".venv/bin/python");
    venv.exists().then_some(venv)
}

/// moto with authentication on, or `None` (with a visible note) when moto
/// is not installed here. On CI (CI=true) a missing moto is a failure.
pub fn moto() -> Option<Server> {
    let Some(python) = moto_python() else {
        if std::env::var_os("CI").is_some() {
            panic!("moto is required on CI: .ci/run must install it into .venv");
        }
        eprintln!("SKIPPED: moto is not installed (run .ci/run or create .venv with moto[server])");
        return None;
    };
    let script = repo_root().join("tests/support/moto_server.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .env_remove("AWS_CA_BUNDLE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting moto with {}: {e}", python.display()));
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let guard = MotoGuard { child };
    let field = |name: &str| -> String {
        let pat = format!("\"{name}\": \"");
        let at = line
            .find(&pat)
            .unwrap_or_else(|| panic!("moto did not start: {line:?}"))
            + pat.len();
        line[at..line[at..].find('"').unwrap() + at].to_string()
    };
    Some(with_bucket(
        Kind::Moto,
        field("endpoint"),
        field("access_key"),
        field("secret_key"),
        batchput::Addressing::Path,
        Guard::Moto(guard),
    ))
}

/// The multipart uploads `store` lists that ListParts still finds, as
/// "key upload-id". Garage's listing filters each replica before it merges
/// their answers, so a replica that missed an abort can still list that
/// upload; ListParts reads by quorum.
pub fn listed_open_uploads(store: &Store) -> Vec<String> {
    store
        .list_multipart_uploads("")
        .unwrap()
        .into_iter()
        .filter(|u| match store.list_parts(&u.key, &u.upload_id, 0) {
            Err(e) if e.code() == Some("NoSuchUpload") => {
                eprintln!("listed, but gone by ListParts: {u:?}");
                false
            }
            Ok(_) => true,
            Err(e) => panic!("ListParts of {} {}: {e}", u.key, u.upload_id),
        })
        .map(|u| format!("{} {}", u.key, u.upload_id))
        .collect()
}

/// Puts `data` at `key` in parts of `part_size` as an AWS SDK does with a
/// full-object CRC32C (boto3 with the CRT's checksums, from .venv: see
/// put_full_object.py). Returns what HeadObject with checksum mode then
/// said, as JSON (`etag`, `crc32c`, `type`, and the `full` CRC32C the
/// bytes have); `None` (with a visible note) when that Python is missing
/// here, a failure on CI.
pub fn put_full_object_crc32c(
    server: &Server,
    key: &str,
    data: &[u8],
    part_size: usize,
) -> Option<String> {
    let Some(python) = moto_python() else {
        if std::env::var_os("CI").is_some() {
            panic!("boto3 and awscrt are required on CI: .ci/run installs them into .venv");
        }
        eprintln!("SKIPPED: no .venv with boto3 and awscrt (run scripts/test.sh once)");
        return None;
    };
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), data).unwrap();
    let out = Command::new(&python)
        .arg(repo_root().join("tests/support/put_full_object.py"))
        .args([
            &server.endpoint,
            &server.access_key,
            &server.secret_key,
            &server.region,
            &server.bucket,
            key,
        ])
        .arg(file.path())
        .arg(part_size.to_string())
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "put_full_object.py on {:?}: {}",
        server.kind,
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

/// Garage, a single node, or `None` (with a visible note) when it is not
/// installed here.
pub fn garage() -> Option<Server> {
    let bin = garage::available()?;
    let cluster = garage::Cluster::start(bin, 1);
    Some(with_bucket(
        Kind::Garage,
        cluster.endpoint(0),
        garage::ACCESS_KEY.into(),
        garage::SECRET_KEY.into(),
        batchput::Addressing::Path,
        Guard::Garage(cluster),
    ))
}

/// A three-node Garage cluster (replication factor 3); `endpoint` is
/// node 0's, `garage().endpoint(i)` the others'.
pub fn garage_cluster() -> Option<Server> {
    let bin = garage::available()?;
    let cluster = garage::Cluster::start(bin, 3);
    Some(with_bucket(
        Kind::Garage,
        cluster.endpoint(0),
        garage::ACCESS_KEY.into(),
        garage::SECRET_KEY.into(),
        batchput::Addressing::Path,
        Guard::Garage(cluster),
    ))
}

/// Every server available here: s3s-fs always, moto and Garage when installed.
pub fn servers() -> Vec<Server> {
    let mut v = vec![s3s()];
    v.extend(moto());
    v.extend(garage());
    v
}

/// The servers that are quick with real data: s3s-fs, and Garage when installed.
pub fn fast_servers() -> Vec<Server> {
    let mut v = vec![s3s()];
    v.extend(garage());
    v
}

// ---------------------------------------------------------------- data

/// Deterministic, incompressible-looking bytes: a test can regenerate
/// what it uploaded instead of keeping it.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
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

/// Hex MD5 of `data`.
pub fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    hex(&md5::Md5::digest(data))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The multipart ETag S3 gives parts of these sizes: md5 of the part md5s, "-N".
pub fn multipart_etag(data: &[u8], part_size: usize) -> String {
    use md5::Digest;
    let mut all = md5::Md5::new();
    let mut n = 0;
    for chunk in data.chunks(part_size) {
        all.update(md5::Md5::digest(chunk));
        n += 1;
    }
    format!("{}-{n}", hex(&all.finalize()))
}

// ---------------------------------------------------------------- batches

/// Files made for a test, each with its key and the seed of its bytes.
pub struct Files {
    pub dir: tempfile::TempDir,
    pub items: Vec<(PathBuf, String, usize, u64)>,
}

/// Writes one file per (key, length) with pattern bytes.
pub fn make_files(specs: &[(String, usize)]) -> Files {
    let dir = tempfile::tempdir().unwrap();
    let mut items = Vec::new();
    for (i, (key, len)) in specs.iter().enumerate() {
        let path = dir.path().join(format!("f{i:05}"));
        let seed = i as u64 + 1000;
        std::fs::write(&path, pattern(*len, seed)).unwrap();
        items.push((path, key.clone(), *len, seed));
    }
    Files { dir, items }
}

impl Files {
    pub fn batch(&self) -> batchput::Batch {
        let mut b = batchput::Batch::new();
        for (path, key, _, _) in &self.items {
            b.add(path.clone(), key.clone());
        }
        b
    }

    /// Every object exists with exactly the bytes of its file.
    pub fn verify_all(&self, store: &Store) {
        for i in 0..self.items.len() {
            self.verify(store, i);
        }
    }

    pub fn verify(&self, store: &Store, i: usize) {
        let (_, key, len, seed) = &self.items[i];
        let got = store
            .get_object(key)
            .unwrap_or_else(|e| panic!("object {key}: {e}"));
        assert_eq!(got.len(), *len, "size of {key}");
        assert!(got == pattern(*len, *seed), "bytes of {key} differ");
    }

    /// The object does not exist.
    pub fn assert_absent(&self, store: &Store, i: usize) {
        let key = &self.items[i].1;
        assert_eq!(
            store.head_object(key).unwrap(),
            None,
            "{key} should not exist"
        );
    }
}

/// (key, length) specs for [`make_files`] from literals.
pub fn specs(list: &[(&str, usize)]) -> Vec<(String, usize)> {
    list.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

/// The configuration with S3's smallest parts, so a few MiB make a
/// multipart upload.
pub fn small_parts(cfg: Config) -> Config {
    cfg.part_size(5 * MIB as u64)
        .multipart_threshold(5 * MIB as u64)
}

/// Waits for a job to finish, failing the test after `secs`.
pub fn finish(job: &batchput::Job, secs: u64) -> batchput::Progress {
    assert!(
        job.wait(Some(std::time::Duration::from_secs(secs))),
        "job did not finish within {secs} s: {:?}",
        job.progress()
    );
    job.progress()
}

pub const MIB: usize = 1 << 20;

/// Polls `done` until it holds or `timeout` passes; whether it held.
pub fn eventually(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The parts a job's journal records as in place: its `P` lines (a
/// running job writes them, if not syncs them, on every turn of its loop).
pub fn journal_parts(journal: &Path) -> usize {
    std::fs::read(journal)
        .map(|text| {
            text.split(|&b| b == b'\n')
                .filter(|l| l.starts_with(b"P\t"))
                .count()
        })
        .unwrap_or(0)
}

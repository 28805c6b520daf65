//! Garage (a real distributed S3 store, crates.io `garage` 2.5.0) for the
//! tests: a single node, or a cluster of three with replication factor 3,
//! all on 127.0.0.1 with free ports, temporary directories and fixed test
//! credentials.
//!
//! Every node is a child process that dies with the test: `Drop` kills it,
//! and PR_SET_PDEATHSIG kills it if the test process itself dies first.

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "GK0123456789abcdef01234567";
pub const SECRET_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub const REGION: &str = "garage";
const RPC_SECRET: &str = "4425f5c26c5e11581d3223904324dcb5b5d5dfb14e5e7f35e38c595424f5f1e6";

/// The garage binary: $BATCHPUT_GARAGE, on PATH, or in ~/.cargo/bin.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BATCHPUT_GARAGE") {
        return Some(PathBuf::from(p));
    }
    let in_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("garage"))
            .find(|p| p.is_file())
    });
    in_path.or_else(|| {
        let home = std::env::var_os("HOME")?;
        let p = Path::new(&home).join(".cargo/bin/garage");
        p.is_file().then_some(p)
    })
}

/// `None` with a visible note when Garage is not installed; on CI a
/// missing Garage is a failure.
pub fn available() -> Option<PathBuf> {
    let b = binary();
    if b.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("garage is required on CI: scripts/test.sh installs it");
        }
        eprintln!(
            "SKIPPED: garage is not installed (cargo install garage --locked --version 2.5.0)"
        );
    }
    b
}

struct Node {
    config: PathBuf,
    s3_port: u16,
    rpc_port: u16,
    child: Option<Child>,
    id: String,
}

/// A running Garage cluster (one node or several) with the test key.
pub struct Cluster {
    bin: PathBuf,
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    /// Starts `n` nodes (replication factor `n`), joins them, applies a
    /// layout and imports the test key.
    pub fn start(bin: PathBuf, n: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for i in 0..n {
            let root = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&root).unwrap();
            let (s3_port, rpc_port, admin_port) = (free_port(), free_port(), free_port());
            let config = root.join("garage.toml");
            std::fs::write(
                &config,
                format!(
                    "metadata_dir = \"{root}/meta\"\n\
                     data_dir = \"{root}/data\"\n\
                     db_engine = \"sqlite\"\n\
                     replication_factor = {n}\n\
                     rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\n\
                     rpc_public_addr = \"127.0.0.1:{rpc_port}\"\n\
                     rpc_secret = \"{RPC_SECRET}\"\n\
                     [s3_api]\n\
                     s3_region = \"{REGION}\"\n\
                     api_bind_addr = \"127.0.0.1:{s3_port}\"\n\
                     root_domain = \".s3.garage.localhost\"\n\
                     [admin]\n\
                     api_bind_addr = \"127.0.0.1:{admin_port}\"\n",
                    root = root.display()
                ),
            )
            .unwrap();
            nodes.push(Node {
                config,
                s3_port,
                rpc_port,
                child: None,
                id: String::new(),
            });
        }
        let mut c = Cluster {
            bin,
            nodes,
            _dir: dir,
        };
        for i in 0..n {
            c.spawn(i);
        }
        for i in 0..n {
            // `node id` reads a local file; `status` needs the running node.
            c.wait_for_cli(i, &["status"]);
            let out = c.wait_for_cli(i, &["node", "id", "-q"]);
            c.nodes[i].id = out.trim().split('@').next().unwrap().to_string();
        }
        for i in 1..n {
            let peer = format!("{}@127.0.0.1:{}", c.nodes[i].id, c.nodes[i].rpc_port);
            c.wait_for_cli(0, &["node", "connect", &peer]);
        }
        for i in 0..n {
            let id = c.nodes[i].id.clone();
            c.wait_for_cli(
                0,
                &["layout", "assign", "-z", &format!("dc{i}"), "-c", "1G", &id],
            );
        }
        c.wait_for_cli(0, &["layout", "apply", "--version", "1"]);
        c.wait_for_cli(
            0,
            &[
                "key",
                "import",
                "--yes",
                "-n",
                "batchput-test",
                ACCESS_KEY,
                SECRET_KEY,
            ],
        );
        c
    }

    fn spawn(&mut self, i: usize) {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c")
            .arg(&self.nodes[i].config)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe; nothing else runs before exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.nodes[i].child = Some(cmd.spawn().expect("starting garage"));
    }

    /// Runs the garage CLI against node `i`; panics with its output on failure.
    pub fn cli(&self, i: usize, args: &[&str]) -> String {
        self.try_cli(i, args)
            .unwrap_or_else(|e| panic!("garage {}: {e}", args.join(" ")))
    }

    fn try_cli(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let mut child = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.nodes[i].config)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let (mut out, mut err) = (String::new(), String::new());
        child.stdout.take().unwrap().read_to_string(&mut out).ok();
        child.stderr.take().unwrap().read_to_string(&mut err).ok();
        let status = child.wait().map_err(|e| e.to_string())?;
        if status.success() {
            Ok(out)
        } else {
            Err(format!("{out}{err}"))
        }
    }

    /// Retries a CLI call while the node starts up (30 s at most).
    fn wait_for_cli(&self, i: usize, args: &[&str]) -> String {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            match self.try_cli(i, args) {
                Ok(out) => return out,
                Err(e) if Instant::now() > until => panic!("garage {}: {e}", args.join(" ")),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Creates a bucket the test key owns.
    pub fn create_bucket(&self, name: &str) {
        self.wait_for_cli(0, &["bucket", "create", name]);
        self.cli(
            0,
            &[
                "bucket", "allow", "--read", "--write", "--owner", name, "--key", ACCESS_KEY,
            ],
        );
    }

    /// The S3 endpoint of node `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].s3_port)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Kills node `i` at once (SIGKILL): a node lost mid-batch.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts node `i` again and waits until it answers.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_for_cli(i, &["status"]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

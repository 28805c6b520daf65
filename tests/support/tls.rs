//! A TLS front for the tests: terminates https with certificates made for
//! the test run (rcgen), and passes the plain bytes on to an upstream http
//! server (s3s-fs). It records the name each client asked for (SNI) and how
//! many connections it passed on, so a test can tell a refused handshake
//! from a request that reached the server.
//!
//! One thread per connection, copying both ways with short socket timeouts;
//! every wait looks at a stop flag, so dropping the front ends every thread
//! within a tick.

#![allow(dead_code)]

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const TICK: Duration = Duration::from_millis(20);

/// A CA made for the test, and a server certificate it signed.
pub struct Certs {
    _dir: tempfile::TempDir,
    /// The CA certificate, PEM, for `ca_file`.
    pub ca_file: PathBuf,
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

impl Certs {
    /// A new CA and a certificate for `names` (DNS names or IP addresses).
    pub fn for_names(names: &[&str]) -> Certs {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "batchput test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        Certs {
            _dir: dir,
            ca_file,
            chain: vec![cert.der().clone()],
            key: key.serialize_der(),
        }
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()));
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(self.chain.clone(), key)
                .unwrap(),
        )
    }
}

struct Shared {
    stop: AtomicBool,
    /// The SNI name of each handshake that completed (None: no SNI).
    names: Mutex<Vec<Option<String>>>,
    /// Connections whose handshake completed and were passed upstream.
    passed: AtomicUsize,
}

/// A running front; dropping it stops it.
pub struct TlsFront {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
}

impl TlsFront {
    /// Binds 127.0.0.1 on a free port; `start` then serves it.
    pub fn bind() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").unwrap()
    }

    /// Serves https on `listener` with `certs`, passing connections to
    /// `upstream` (`http://host:port`).
    pub fn start(listener: TcpListener, certs: &Certs, upstream: &str) -> TlsFront {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_socket_addrs()
            .unwrap()
            .next()
            .unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            names: Mutex::new(Vec::new()),
            passed: AtomicUsize::new(0),
        });
        let config = certs.server_config();
        let sh = shared.clone();
        let accept = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !sh.stop.load(SeqCst) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        let (sh, config) = (sh.clone(), config.clone());
                        conns.push(std::thread::spawn(move || {
                            let _ = serve(tcp, config, upstream, &sh);
                        }));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(TICK),
                    Err(_) => std::thread::sleep(TICK),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        TlsFront {
            shared,
            addr,
            accept: Some(accept),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The SNI names clients sent, one per completed handshake.
    pub fn names(&self) -> Vec<Option<String>> {
        self.shared.names.lock().unwrap().clone()
    }

    /// How many connections got past the handshake to the server.
    pub fn passed(&self) -> usize {
        self.shared.passed.load(SeqCst)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

fn serve(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    upstream: SocketAddr,
    sh: &Shared,
) -> io::Result<()> {
    tcp.set_nonblocking(false)?;
    tcp.set_read_timeout(Some(TICK))?;
    tcp.set_write_timeout(Some(Duration::from_secs(5)))?;
    let conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        if sh.stop.load(SeqCst) {
            return Ok(());
        }
        match tls.conn.complete_io(&mut tls.sock) {
            Ok(_) => {}
            Err(e) if transient(&e) => {}
            // A client that refused our certificate, say.
            Err(e) => return Err(e),
        }
    }
    sh.names
        .lock()
        .unwrap()
        .push(tls.conn.server_name().map(str::to_string));
    let mut up = TcpStream::connect(upstream)?;
    up.set_nodelay(true)?;
    up.set_read_timeout(Some(TICK))?;
    sh.passed.fetch_add(1, SeqCst);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if sh.stop.load(SeqCst) {
            return Ok(());
        }
        match tls.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => up.write_all(&buf[..n])?,
            Err(e) if transient(&e) => {}
            Err(e) => return Err(e),
        }
        match up.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                tls.write_all(&buf[..n])?;
                tls.flush()?;
            }
            Err(e) if transient(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

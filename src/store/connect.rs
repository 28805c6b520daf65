//! Opening TCP connections: name resolution with a short-lived cache, and a
//! non-blocking connect that an [`Interrupt`] can cut off.
//!
//! `TcpStream::connect_timeout` blocks in `poll` for the whole timeout and
//! a stop cannot wake it (shutting down a socket that is still connecting
//! does nothing on Linux), so the connect here waits in steps of at most
//! [`STEP`] and looks at the interrupt between them.
//!
//! Resolution: IP literals need none; `localhost` and every `*.localhost`
//! name are the loopback address (RFC 6761), so virtual-hosted addressing
//! works against a local server without /etc/hosts entries. Other names go
//! through the system resolver, whose answer is kept for [`DNS_TTL`]: a job
//! makes thousands of requests to one host, so a lookup happens about once
//! a minute, not once per connection.
//!
//! `getaddrinfo` cannot be interrupted or given a timeout, so a lookup runs
//! on a thread of its own while the caller waits at most the connect
//! timeout, looking at the interrupt every [`STEP`]: a stop never waits for
//! a hung resolver. A lookup thread the caller gave up on ends at the
//! resolver's own timeout; the [`Resolver`] joins every one it started when
//! it is dropped, so none outlives the uploader (a C host may unload the
//! library next).

use std::collections::HashMap;
use std::io;
use std::mem::size_of;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::interrupt::Interrupt;

/// Longest wait between two looks at the interrupt while connecting.
const STEP: Duration = Duration::from_millis(50);
/// How long a resolved address list is reused.
const DNS_TTL: Duration = Duration::from_secs(60);

/// The io error a request cut off by its interrupt fails with.
pub(crate) fn cancelled() -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, "request cancelled")
}

/// When a name was resolved, and to what.
type Resolved = (Instant, Vec<SocketAddr>);

/// Resolved addresses by (host, port), and the lookup threads started.
#[derive(Default)]
pub(crate) struct Resolver {
    cache: Mutex<HashMap<(String, u16), Resolved>>,
    lookups: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Resolver {
    fn drop(&mut self) {
        for lookup in std::mem::take(&mut *self.lookups.lock()) {
            let _ = lookup.join();
        }
    }
}

impl Resolver {
    /// The addresses of `host` (no brackets around IPv6 literals needed),
    /// within `timeout`; fails at once (with [`cancelled`]) when `interrupt`
    /// is cancelled.
    pub fn resolve(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
        interrupt: Option<&Interrupt>,
    ) -> io::Result<Vec<SocketAddr>> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let lower = bare.to_ascii_lowercase();
        if lower == "localhost" || lower.ends_with(".localhost") {
            return Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))]);
        }
        let key = (lower, port);
        if let Some((at, addrs)) = self.cache.lock().get(&key) {
            if at.elapsed() < DNS_TTL {
                return Ok(addrs.clone());
            }
        }
        let addrs = self.look_up(bare, port, timeout, interrupt)?;
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} has no address"),
            ));
        }
        self.cache
            .lock()
            .insert(key, (Instant::now(), addrs.clone()));
        Ok(addrs)
    }

    /// Asks the system resolver on a thread of its own (see the module doc).
    fn look_up(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
        interrupt: Option<&Interrupt>,
    ) -> io::Result<Vec<SocketAddr>> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let name = host.to_string();
        let lookup = std::thread::Builder::new()
            .name("batchput-dns".into())
            .spawn(move || {
                let found = (name.as_str(), port)
                    .to_socket_addrs()
                    .map(|a| a.collect::<Vec<_>>());
                let _ = tx.send(found);
            })?;
        {
            let mut lookups = self.lookups.lock();
            let (done, running): (Vec<_>, Vec<_>) =
                lookups.drain(..).partition(|l| l.is_finished());
            *lookups = running;
            lookups.push(lookup);
            drop(lookups);
            for l in done {
                let _ = l.join();
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            if interrupt.is_some_and(|i| i.is_cancelled()) {
                return Err(cancelled());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no address for {host} within {} ms (the name lookup hangs)",
                        timeout.as_millis()
                    ),
                ));
            }
            match rx.recv_timeout(left.min(STEP)) {
                Ok(found) => return found,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::other("the name lookup thread failed"))
                }
            }
        }
    }

    /// Forgets `host`: after a failed connect, the next one asks again.
    pub fn forget(&self, host: &str, port: u16) {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        self.cache.lock().remove(&(bare.to_ascii_lowercase(), port));
    }
}

/// Connects to the first address of `addrs` that answers within `timeout`
/// each; fails at once (with [`cancelled`]) when `interrupt` is cancelled.
pub(crate) fn connect(
    addrs: &[SocketAddr],
    timeout: Duration,
    interrupt: Option<&Interrupt>,
) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
    for addr in addrs {
        match connect_one(addr, timeout, interrupt) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn connect_one(
    addr: &SocketAddr,
    timeout: Duration,
    interrupt: Option<&Interrupt>,
) -> io::Result<TcpStream> {
    if interrupt.is_some_and(|i| i.is_cancelled()) {
        return Err(cancelled());
    }
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket(2) with constant arguments; the result is checked and
    // owned at once.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let (storage, len) = sockaddr(addr);
    // SAFETY: `storage` holds a sockaddr of `len` bytes for this family.
    let rc = unsafe {
        libc::connect(
            socket.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
        wait_connected(&socket, timeout, interrupt)?;
    }
    // Back to blocking: reads and writes use socket timeouts.
    // SAFETY: fcntl on our own open descriptor.
    unsafe {
        let flags = libc::fcntl(socket.as_raw_fd(), libc::F_GETFL);
        if flags < 0
            || libc::fcntl(socket.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(TcpStream::from(socket))
}

/// Waits until a non-blocking connect ends, in steps that look at the
/// interrupt; its outcome is SO_ERROR.
fn wait_connected(
    socket: &OwnedFd,
    timeout: Duration,
    interrupt: Option<&Interrupt>,
) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if interrupt.is_some_and(|i| i.is_cancelled()) {
            return Err(cancelled());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no connection within {} ms", timeout.as_millis()),
            ));
        }
        let wait = (deadline - now).min(STEP);
        let mut pfd = libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one pollfd, valid for the call.
        let n = unsafe { libc::poll(&mut pfd, 1, wait.as_millis().max(1) as libc::c_int) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            continue;
        }
        let mut err: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: SO_ERROR writes one c_int into `err`.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        return if err == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(err))
        };
    }
}

/// `addr` as a C socket address.
fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe {
                std::ptr::write(
                    (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>(),
                    sin,
                )
            };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe {
                std::ptr::write(
                    (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>(),
                    sin6,
                )
            };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::Arc;

    #[test]
    fn connects_to_a_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let s = connect(&[addr], Duration::from_secs(2), None).unwrap();
        assert_eq!(s.peer_addr().unwrap(), addr);
    }

    #[test]
    fn refused_is_an_error_not_a_hang() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let e = connect(&[addr], Duration::from_secs(2), None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn a_cancelled_interrupt_refuses_at_once() {
        let interrupt = Arc::new(Interrupt::new());
        interrupt.cancel();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let e = connect(
            &[listener.local_addr().unwrap()],
            Duration::from_secs(2),
            Some(&interrupt),
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Interrupted);
    }

    #[test]
    fn literals_and_localhost_need_no_resolver() {
        let r = Resolver::default();
        let t = Duration::from_secs(1);
        assert_eq!(
            r.resolve("[::1]", 80, t, None).unwrap(),
            vec!["[::1]:80".parse().unwrap()]
        );
        assert_eq!(
            r.resolve("bucket.localhost", 9000, t, None).unwrap(),
            vec!["127.0.0.1:9000".parse().unwrap()]
        );
        assert!(r.lookups.lock().is_empty(), "no thread for these");
    }
}

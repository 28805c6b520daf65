//! Cutting requests off: an [`Interrupt`] that shuts down every socket a
//! request is blocked on, and the per-thread [`Scope`] that says which
//! interrupt (and which timeouts) a request made on this thread obeys.
//!
//! A stop must not wait for the server. A worker blocked in `recv` on a
//! connection whose server never answers wakes only when the socket is shut
//! down, so every request registers its socket with the interrupt of the
//! job it works for while it runs; `cancel` sets the flag and shuts each of
//! them down (`shutdown(SHUT_RDWR)` wakes a blocked read, write or
//! sendfile at once). A request that starts after the cancel is refused
//! before it opens anything. Connecting is done in short non-blocking steps
//! that look at the flag (see `connect`), because shutting down a socket
//! that is still connecting does not wake its `connect`.
//!
//! The socket of a registered request is closed only after it has been
//! unregistered (the registration borrows the interrupt and is dropped
//! before the connection), and `cancel` shuts sockets down under the same
//! lock, so a descriptor number reused by someone else is never touched.
//!
//! The scope is a thread-local rather than a parameter of every S3
//! operation: the engine sets it once per task, cleanup once per thread,
//! and the store's public API stays as it is for callers who need neither.

use std::cell::RefCell;
use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

/// Cuts off every request registered with it, and every later one.
pub(crate) struct Interrupt {
    cancelled: Arc<AtomicBool>,
    /// Registered sockets: id, descriptor, and whether the request is
    /// gentle (see [`Interrupt::cancel_gently`]).
    sockets: Mutex<Vec<(u64, RawFd, bool)>>,
    next_id: AtomicU64,
}

impl Interrupt {
    /// An interrupt that sets `flag` when cancelled (the flag a job's
    /// workers also check between chunks and before each attempt).
    pub fn with_flag(flag: Arc<AtomicBool>) -> Interrupt {
        Interrupt {
            cancelled: flag,
            sockets: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
        }
    }

    /// A fresh interrupt with a flag of its own.
    pub fn new() -> Interrupt {
        Interrupt::with_flag(Arc::new(AtomicBool::new(false)))
    }

    /// Sets the flag and shuts down every registered socket: each request
    /// blocked on one fails at once. Idempotent; any thread.
    pub fn cancel(&self) {
        self.shut_down(true);
    }

    /// Sets the flag and shuts down every socket but those of gentle
    /// requests: a request that creates something the caller must learn
    /// the id of to undo it (CreateMultipartUpload) may still take its
    /// answer, until [`cancel`](Interrupt::cancel) follows a moment later.
    /// Cut off, its upload would be made with an id nobody knows.
    pub fn cancel_gently(&self) {
        self.shut_down(false);
    }

    fn shut_down(&self, gentle_too: bool) {
        // The flag first: a request registering from now on sees it under
        // the lock below and is refused.
        self.cancelled.store(true, Ordering::SeqCst);
        // Linger zero: when the request's connection closes (at once, once
        // its worker wakes), the kernel resets it and drops what is still
        // queued instead of delivering it. A part cut off must not reach the
        // server whole from the socket buffers and land after its upload was
        // aborted.
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        for &(_, fd, gentle) in self.sockets.lock().iter() {
            if gentle && !gentle_too {
                continue;
            }
            // SAFETY: `fd` is open: it is unregistered (under this lock)
            // before its connection closes it. `linger` is valid for the call.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
                libc::shutdown(fd, libc::SHUT_RDWR);
            }
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// The flag itself, for waits that poll it (backoff, the rate limit).
    pub fn flag(&self) -> &AtomicBool {
        &self.cancelled
    }

    /// Registers `fd` until the returned guard drops; `None` once cancelled.
    pub(crate) fn register(&self, fd: RawFd, gentle: bool) -> Option<Registration<'_>> {
        let mut sockets = self.sockets.lock();
        if self.is_cancelled() {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        sockets.push((id, fd, gentle));
        Some(Registration {
            interrupt: self,
            id,
        })
    }
}

/// A socket registered with an [`Interrupt`]; unregisters on drop.
pub(crate) struct Registration<'a> {
    interrupt: &'a Interrupt,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut sockets = self.interrupt.sockets.lock();
        if let Some(i) = sockets.iter().position(|(id, _, _)| *id == self.id) {
            sockets.swap_remove(i);
        }
    }
}

/// What requests made on a thread obey: the interrupt that cuts them off,
/// and limits tighter or looser than the client's own.
#[derive(Clone)]
pub(crate) struct Scope {
    pub interrupt: Arc<Interrupt>,
    /// The idle timeout of each read and write (the client's when `None`).
    pub io_timeout: Option<Duration>,
    /// The connect and TLS handshake timeout (the client's when `None`).
    pub connect_timeout: Option<Duration>,
    /// Open a new connection for each request instead of reusing one: after
    /// a failure the pooled connections may lead to a server that hangs.
    pub fresh_connections: bool,
    /// Requests spared by [`Interrupt::cancel_gently`].
    pub gentle: bool,
}

impl Scope {
    /// Requests that `interrupt` cuts off, with the client's own limits.
    pub fn new(interrupt: Arc<Interrupt>) -> Scope {
        Scope {
            interrupt,
            io_timeout: None,
            connect_timeout: None,
            fresh_connections: false,
            gentle: false,
        }
    }

    /// The same scope for requests [`Interrupt::cancel_gently`] spares.
    pub fn gentle(&self) -> Scope {
        Scope {
            gentle: true,
            ..self.clone()
        }
    }

    /// The same scope with another idle timeout.
    pub fn with_io_timeout(&self, timeout: Duration) -> Scope {
        Scope {
            io_timeout: Some(timeout),
            ..self.clone()
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// Runs `f` with `scope` governing every request it makes on this thread;
/// the previous scope is back afterwards, even if `f` panics.
pub(crate) fn in_scope<R>(scope: &Scope, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Scope>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = previous);
        }
    }
    let previous = CURRENT.with(|c| c.borrow_mut().replace(scope.clone()));
    let _restore = Restore(previous);
    f()
}

/// The scope of this thread, if one is set.
pub(crate) fn current() -> Option<Scope> {
    CURRENT.with(|c| c.borrow().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::io::AsRawFd;
    use std::time::Instant;

    #[test]
    fn cancel_wakes_a_blocked_read_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        // The server accepts and never writes: the read blocks.
        let _server = listener.accept().unwrap();
        let interrupt = Arc::new(Interrupt::new());
        let reg_interrupt = interrupt.clone();
        let fd = client.as_raw_fd();
        let reader = std::thread::spawn(move || {
            let _reg = reg_interrupt
                .register(fd, false)
                .expect("not cancelled yet");
            let started = Instant::now();
            let mut b = [0u8; 1];
            let n = client.read(&mut b);
            (n.map_err(|e| e.kind()), started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(200));
        interrupt.cancel();
        let (result, waited) = reader.join().unwrap();
        // EOF (Ok(0)) is what a shut-down socket reads.
        assert_eq!(result, Ok(0));
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        assert!(
            interrupt.register(0, true).is_none(),
            "refused after cancel"
        );
    }

    #[test]
    fn scopes_nest_and_restore() {
        let a = Scope::new(Arc::new(Interrupt::new()));
        let b = a.with_io_timeout(Duration::from_secs(1));
        assert!(current().is_none());
        in_scope(&a, || {
            assert!(current().unwrap().io_timeout.is_none());
            in_scope(&b, || {
                assert_eq!(current().unwrap().io_timeout, Some(Duration::from_secs(1)))
            });
            assert!(current().unwrap().io_timeout.is_none());
        });
        assert!(current().is_none());
    }
}

//! The write path of request bodies, the part of the transport measured
//! to matter (see `http`): the body is read straight into a per-thread send
//! buffer that goes out in 256 KiB writes, the head sharing the first one;
//! or, when nothing is hashed on the way, the kernel sends the file's pages
//! itself (sendfile), with SIGPIPE kept from the host process.
//!
//! Every buffer that file pages are copied into starts on a page boundary
//! (see [`page_aligned`]): where it does not, the copy costs three times as
//! much CPU on some machines.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::io::AsRawFd;

use super::http::{io_error, HttpError, WRITE_CHUNK};

thread_local! {
    /// The send buffer of this thread: request head plus one piece of body.
    static SEND_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Bytes of a page, the alignment of the buffers file pages are copied into.
const PAGE: usize = 4096;

/// The first `len` bytes of `buf` from a page boundary on; `buf` grows
/// (zeroed once, then reused) to hold them.
///
/// Why: a heap block of 256 KiB is its own mmap, whose data glibc starts 16
/// bytes past a page boundary, and the kernel's copy of page-cache pages
/// (`rep movsb`) into a destination 16 bytes off the source's alignment
/// runs at a third of its speed on AMD EPYC (the 4 KiB aliasing of glibc
/// bug 30994): pread of 256 KiB from tmpfs cost 0.48 CPU s/GiB there
/// against 0.14 into a page-aligned buffer (bench/NOTES.md).
pub(crate) fn page_aligned(buf: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if buf.len() < len + PAGE {
        buf.resize(len + PAGE, 0);
    }
    let skip = (PAGE - buf.as_ptr() as usize % PAGE) % PAGE;
    &mut buf[skip..skip + len]
}

/// Sends the head and a body produced piece by piece: `fill(buf)` fills
/// the send buffer with the next piece (the reader writes straight into
/// it), which then goes out in one write; the first piece shares its write
/// with the head (which may be empty: already sent).
pub(super) fn send_streamed(
    stream: &mut impl Write,
    head: &[u8],
    mut fill: impl FnMut(&mut [u8]) -> Result<(), HttpError>,
    total: u64,
    piece: usize,
) -> Result<(), HttpError> {
    SEND_BUF.with(|cell| {
        let mut cell = cell.borrow_mut();
        // The head ends where a page starts, so every piece of body is
        // read into a page-aligned place.
        let lead = head.len().div_ceil(PAGE) * PAGE;
        // No bigger than the body needs: with hundreds of requests in
        // flight (workers=auto on a far server), each thread's buffer is
        // what the process's memory is made of.
        let body = (total as usize).min(WRITE_CHUNK).div_ceil(PAGE) * PAGE;
        let buf = page_aligned(&mut cell, lead + body);
        let mut first = lead - head.len();
        buf[first..lead].copy_from_slice(head);
        let mut sent = 0u64;
        loop {
            let want = ((total - sent) as usize).min(piece);
            fill(&mut buf[lead..lead + want])?;
            stream
                .write_all(&buf[first..lead + want])
                .map_err(io_error)?;
            sent += want as u64;
            first = lead;
            if sent == total {
                return Ok(());
            }
        }
    })
}

/// Fills `buf` from a reader; an early end is an error.
pub(super) fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> Result<(), HttpError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return Err(HttpError::Body(body_ended())),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(HttpError::Body(e)),
        }
    }
    Ok(())
}

fn body_ended() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the body ended before its Content-Length (the file shrank?)",
    )
}

/// Fills `buf` from `file` at `offset`.
pub(super) fn pread_full(
    file: &std::fs::File,
    offset: u64,
    buf: &mut [u8],
) -> Result<(), HttpError> {
    use std::os::unix::fs::FileExt;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => return Err(HttpError::Body(body_ended())),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(HttpError::Body(e)),
        }
    }
    Ok(())
}

/// Sends the head (unless empty: already sent), then the file range with
/// sendfile(2): the kernel moves page-cache pages to the socket, with no
/// copy through user space.
pub(super) fn send_file(
    tcp: &TcpStream,
    head: &[u8],
    file: &std::fs::File,
    offset: u64,
    len: u64,
    pace: &mut dyn FnMut(u64) -> io::Result<()>,
    piece: usize,
) -> Result<(), HttpError> {
    // MSG_MORE: the head waits to leave with the first pages of the file.
    let mut written = 0;
    while written < head.len() {
        // SAFETY: the slice is valid for its length during the call.
        let n = unsafe {
            libc::send(
                tcp.as_raw_fd(),
                head[written..].as_ptr().cast(),
                head.len() - written,
                libc::MSG_MORE | libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(io_error(e));
        }
        written += n as usize;
    }
    // sendfile cannot take MSG_NOSIGNAL: a peer that closed makes it raise
    // SIGPIPE, whose default action kills a C host. Blocked here, and a
    // SIGPIPE raised meanwhile is consumed before the mask is restored.
    let _sigpipe = SigpipeBlocked::new();
    let mut off = offset as libc::off_t;
    let end = offset + len;
    while (off as u64) < end {
        let piece = ((end - off as u64) as usize).min(piece);
        pace(piece as u64).map_err(HttpError::Body)?;
        let mut left = piece;
        while left > 0 {
            // SAFETY: both descriptors are open for the duration of the
            // call; `off` is ours and the kernel advances it.
            let n = unsafe { libc::sendfile(tcp.as_raw_fd(), file.as_raw_fd(), &mut off, left) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(match e.raw_os_error() {
                    // The socket's side: the connection, or its idle timeout.
                    Some(libc::EPIPE) | Some(libc::ECONNRESET) | Some(libc::EAGAIN) => io_error(e),
                    // The file's side.
                    _ => HttpError::Body(e),
                });
            }
            if n == 0 {
                return Err(HttpError::Body(body_ended()));
            }
            left -= n as usize;
        }
    }
    Ok(())
}

/// SIGPIPE blocked in the calling thread for the guard's life, as libcurl
/// does around writes that cannot say MSG_NOSIGNAL. On drop, a SIGPIPE that
/// became pending meanwhile is consumed (unless one was pending before: that
/// one is not ours), then the thread's signal mask is restored.
struct SigpipeBlocked {
    old_mask: libc::sigset_t,
    pending_before: bool,
}

impl SigpipeBlocked {
    fn new() -> SigpipeBlocked {
        // SAFETY: plain signal-set manipulation on values we own; the
        // calls only read and write these sets and this thread's mask.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            let mut old_mask: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old_mask);
            let mut pending: libc::sigset_t = std::mem::zeroed();
            libc::sigpending(&mut pending);
            SigpipeBlocked {
                old_mask,
                pending_before: libc::sigismember(&pending, libc::SIGPIPE) == 1,
            }
        }
    }
}

impl Drop for SigpipeBlocked {
    fn drop(&mut self) {
        // SAFETY: as in `new`; the zero timeout makes sigtimedwait a poll.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            if !self.pending_before {
                let zero = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                while libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) == libc::SIGPIPE {}
            }
            if libc::sigismember(&self.old_mask, libc::SIGPIPE) == 0 {
                libc::pthread_sigmask(libc::SIG_SETMASK, &self.old_mask, std::ptr::null_mut());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_aligned_windows_start_on_a_page() {
        let mut buf = Vec::new();
        for len in [1, 4096, 256 * 1024, 300_000] {
            let w = page_aligned(&mut buf, len);
            assert_eq!(w.len(), len);
            assert_eq!(w.as_ptr() as usize % PAGE, 0);
        }
    }

    #[test]
    fn streamed_bodies_arrive_whole_behind_heads_of_any_length() {
        let body: Vec<u8> = (0..600_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        for head_len in [0, 1, 4095, 4096, 4097, 9000] {
            let head = vec![b'h'; head_len];
            let mut out = Vec::new();
            let mut at = 0;
            send_streamed(
                &mut out,
                &head,
                |buf| {
                    // Every piece is read into a page-aligned place.
                    assert_eq!(buf.as_ptr() as usize % PAGE, 0);
                    buf.copy_from_slice(&body[at..at + buf.len()]);
                    at += buf.len();
                    Ok(())
                },
                body.len() as u64,
                WRITE_CHUNK,
            )
            .unwrap();
            assert_eq!(&out[..head_len], &head[..]);
            assert_eq!(&out[head_len..], &body[..], "head of {head_len} bytes");
        }
    }
}

//! When to acknowledge an answer's bytes at once.
//!
//! On a connection that goes request, answer, request, Linux delays its
//! ACKs (up to 40 ms) in the hope of sending them with the next request. A
//! server that writes an answer in pieces with Nagle's algorithm on (hyper
//! without `TCP_NODELAY`, as s3s-fs) holds each piece smaller than a
//! segment until what it sent before is acknowledged: the body behind the
//! head, and the body's tail behind its last full segment. Every GET waited
//! for our delayed ACKs, twice. Measured on 2,000 GETs of 64 KiB from
//! s3s-fs on loopback: 36 s with one worker, 3.3 s with quick ACKs; 8.2 s
//! and 1.2 s with four (bench/NOTES.md).
//!
//! Only the start of a body and its tail need them: set while an ACK is
//! pending (the head's), `TCP_QUICKACK` sends that ACK at once. In the
//! middle of a long body the server sends full segments, which Nagle does
//! not hold, and an ACK for every read there cost 0.5 CPU s per GiB on
//! loopback (4 x 256 MiB, medians of 6). An answer without a body (a
//! PutObject's) needs none.

use std::net::TcpStream;
use std::os::unix::io::AsRawFd;

/// Reads of an answer whose last this many bytes (or fewer) are still to
/// come acknowledge at once (see [`ack_at_once`]): four full segments on
/// loopback, many more on a real link.
const QUICK_ACK_TAIL: u64 = 256 * 1024;

/// Where the reading of an answer's body is, for [`ack_at_once`].
#[derive(Clone, Copy, Default)]
pub(super) struct BodyRead {
    /// The head has been read.
    begun: bool,
    /// Reads of the body so far.
    reads: u32,
    /// Its bytes still to come, when its length is known.
    left: Option<u64>,
}

impl BodyRead {
    /// The head has been read; `left`: the body's bytes not yet read.
    pub fn begin(left: Option<u64>) -> BodyRead {
        BodyRead {
            begun: true,
            reads: 0,
            left,
        }
    }

    /// At the body's first read (the head's delayed ACK goes out now) and
    /// near its end; never for the head, which needs none. A body of
    /// unknown length acknowledges every read.
    pub fn needs_quick_ack(&self) -> bool {
        self.begun && (self.reads == 0 || self.left.is_none_or(|l| l <= QUICK_ACK_TAIL))
    }

    /// After a read of `n` bytes.
    pub fn after(self, n: usize) -> BodyRead {
        BodyRead {
            reads: self.reads + u32::from(self.begun),
            left: self.left.map(|l| l.saturating_sub(n as u64)),
            ..self
        }
    }
}

/// Asks the kernel to acknowledge what arrives next at once (Linux's
/// `TCP_QUICKACK`, which it clears again by itself, hence before each
/// read that needs it; see the module doc).
pub(super) fn ack_at_once(tcp: &TcpStream) {
    let one: libc::c_int = 1;
    // SAFETY: a valid socket and a pointer to an int that lives through
    // the call; a failure (not TCP, say) only leaves the ACKs as they were.
    unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_acks_go_to_the_first_read_of_a_body_and_its_tail_only() {
        // The head: never.
        assert!(!BodyRead::default().needs_quick_ack());
        assert!(!BodyRead::default().after(100).needs_quick_ack());
        // 1 MiB of body: the first read, then nothing until the tail.
        let mut r = BodyRead::begin(Some(1 << 20));
        assert!(r.needs_quick_ack());
        r = r.after(64 << 10);
        assert!(!r.needs_quick_ack());
        r = r.after((1 << 20) - (64 << 10) - QUICK_ACK_TAIL as usize);
        assert!(r.needs_quick_ack());
        // A body of unknown length: every read.
        let r = BodyRead::begin(None).after(1 << 20);
        assert!(r.needs_quick_ack());
    }
}

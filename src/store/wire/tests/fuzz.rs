//! Random and mutated answers through `read_answer`: no panic, no
//! allocation past what the limits allow, whatever the bytes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use super::*;

/// Allocation sizes seen on a thread while it tracks them: the fuzz test
/// asserts that no single allocation exceeds what the limits allow (a
/// `Vec::with_capacity(content_length)` would show here first). One global
/// allocator for the whole test binary; it costs a thread-local read.
struct Tracking;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// One mutation of a valid answer.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    const PIECES: [&[u8]; 12] = [
        b"\r\n",
        b"\r\n\r\n",
        b"\n",
        b"\r",
        b"ffffffffffffffff",
        b"fffffffffffffffff",
        b"Content-Length: 5\r\n",
        b"Content-Length: 18446744073709551616\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b" folded\r\n",
        b";ext=\"x\"",
    ];
    const NUMBERS: [&[u8]; 6] = [
        b"ffffffffffffffff",
        b"18446744073709551615",
        b"4294967296",
        b"99999999999",
        b"0",
        b"801",
    ];
    let at = rng.below(data.len() + 1);
    match rng.below(8) {
        // The next number (a Content-Length, a chunk size) becomes a huge one.
        7 => {
            let Some(start) = data[at..].iter().position(u8::is_ascii_hexdigit) else {
                return;
            };
            let start = at + start;
            let len = data[start..]
                .iter()
                .take_while(|b| b.is_ascii_hexdigit())
                .count();
            let number = NUMBERS[rng.below(NUMBERS.len())];
            data.splice(start..start + len, number.iter().copied());
        }
        0 if !data.is_empty() => {
            let i = rng.below(data.len());
            data[i] ^= 1 << rng.below(8);
        }
        1 => {
            let piece = PIECES[rng.below(PIECES.len())];
            data.splice(at..at, piece.iter().copied());
        }
        2 => data.truncate(at),
        3 if at < data.len() => {
            let end = (at + 1 + rng.below(16)).min(data.len());
            data.drain(at..end);
        }
        4 => {
            let byte = rng.next() as u8;
            data.insert(at, byte);
        }
        5 if at < data.len() => {
            let end = (at + 1 + rng.below(32)).min(data.len());
            let copy = data[at..end].to_vec();
            data.splice(at..at, copy);
        }
        _ => {
            let len = rng.below(24);
            let junk: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            data.splice(at..at, junk);
        }
    }
}

#[test]
fn random_and_mutated_answers_never_panic_or_overallocate() {
    let seeds: [&[u8]; 8] = [
        CL,
        CHUNKED,
        CONTINUE_THEN_OK,
        b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\n\r\nto the close",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n",
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 8\r\nConnection: close\r\n\r\n<Error/>",
    ];
    // Small limits, so that mutations hit every one of them.
    let limits = Limits {
        max_head: 512,
        max_headers: 8,
        max_body: 2048,
    };
    let mut rng = Rng::new(0x5eed);
    let (mut answers, mut errors) = (0, 0);
    TRACKING.with(|t| t.set(true));
    for case in 0..24_000 {
        let mut data = match case % 10 {
            // Pure noise, sometimes behind a valid status line.
            0 => {
                let len = rng.below(300);
                let mut v: Vec<u8> = if rng.below(2) == 0 {
                    b"HTTP/1.1 200 OK\r\n".to_vec()
                } else {
                    Vec::new()
                };
                v.extend((0..len).map(|_| rng.next() as u8));
                v
            }
            _ => seeds[rng.below(seeds.len())].to_vec(),
        };
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut data);
        }
        let split = match rng.below(3) {
            0 => Split::Whole,
            1 => Split::Bytes1,
            _ => Split::Random(rng.next()),
        };
        let method = ["GET", "PUT", "HEAD", "POST"][rng.below(4)];
        LARGEST.with(|l| l.set(0));
        match answer_with(&data, method, split, &limits) {
            Ok(a) => {
                answers += 1;
                assert!(a.body.len() as u64 <= limits.max_body);
                assert!((100..1000).contains(&a.head.status));
                assert!(a.head.headers.len() <= limits.max_headers);
            }
            Err(_) => errors += 1,
        }
        // Nothing bigger than the answer itself or the limits, with room
        // for a Vec's doubling and the header slots.
        let bound = 2 * data
            .len()
            .max(limits.max_body as usize)
            .max(limits.max_head)
            + 16384;
        let largest = LARGEST.with(|l| l.get());
        assert!(
            largest <= bound,
            "case {case}: an allocation of {largest} bytes for {:?}",
            String::from_utf8_lossy(&data)
        );
    }
    TRACKING.with(|t| t.set(false));
    // Both outcomes were exercised: the generator is not all noise.
    assert!(
        answers > 2_000 && errors > 2_000,
        "{answers} answers, {errors} errors"
    );
}

use std::io::Write;

use md5::{Digest, Md5};

use super::*;

#[test]
fn ranges_hashed_together_match_md5() {
    let mut f = tempfile::tempfile().unwrap();
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    f.write_all(&data).unwrap();
    let file = Arc::new(f);
    let hasher = Hasher::new().unwrap();
    let h = hasher.handle();
    // Lengths around the chunk and block edges, more ranges than lanes.
    let ranges: Vec<(u64, u64)> = [
        0u64, 1, 63, 64, 65, 119, 120, 4096, 131_072, 131_073, 262_200, 1_000_001, 2_999_999,
    ]
    .iter()
    .enumerate()
    .map(|(i, &len)| ((i as u64 * 7919) % (3_000_000 - len), len))
    .collect();
    let pending: Vec<_> = ranges
        .iter()
        .map(|&(o, l)| h.submit(file.clone(), o, l))
        .collect();
    for ((o, l), p) in ranges.iter().zip(pending) {
        let want: [u8; 16] = Md5::digest(&data[*o as usize..(*o + *l) as usize]).into();
        assert_eq!(p.wait().unwrap(), want, "range {o}+{l}");
    }
}

#[test]
fn ranges_hashed_as_they_are_written_match_md5_and_stuck_ones_block_nobody() {
    let len = 3 * CHUNK + 1000;
    let data: Vec<u8> = (0..len as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    let file = Arc::new(tempfile::tempfile().unwrap());
    file.set_len(len as u64 * 10).unwrap();
    let hasher = Hasher::new().unwrap();
    let h = hasher.handle();
    // More ranges than lanes whose writers never write a byte: they
    // must not keep a range written in full from its digest.
    let stuck: Vec<_> = (0..LANES + 1)
        .map(|i| {
            let at = Arc::new(AtomicU64::new(0));
            let p = h.submit_as_written(file.clone(), (i * len) as u64, len as u64, at.clone());
            (p, at)
        })
        .collect();
    // They have taken every lane by now.
    std::thread::sleep(Duration::from_millis(50));
    file.write_all_at(&data, 9 * len as u64).unwrap();
    let whole = h.submit(file.clone(), 9 * len as u64, len as u64);
    let want: [u8; 16] = Md5::digest(&data).into();
    // Within moments, not after the stuck ones (which is never).
    let late = Arc::new(AtomicBool::new(false));
    let timer = {
        let late = late.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(10));
            late.store(true, Ordering::Relaxed);
        })
    };
    assert_eq!(whole.wait_unless(&late).unwrap(), want);
    drop(timer);
    // Two of them written now, in pieces of odd sizes, the count
    // raised after each piece.
    let writers: Vec<_> = stuck[..2]
        .iter()
        .enumerate()
        .map(|(i, (_, at))| {
            let (file, data, at) = (file.clone(), data.clone(), at.clone());
            std::thread::spawn(move || {
                let base = (i * len) as u64;
                let mut done = 0;
                for piece in data.chunks(40_000 + 777 * i) {
                    file.write_all_at(piece, base + done).unwrap();
                    done += piece.len() as u64;
                    at.fetch_max(done, Ordering::Release);
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    for (p, _) in &stuck[..2] {
        assert_eq!(p.wait().unwrap(), want);
    }
    // The rest are dropped unanswered: nobody waits for them.
    drop(stuck);
    assert_eq!(
        h.submit(file, 9 * len as u64, len as u64).wait().unwrap(),
        want
    );
}

/// A flag that is set `after` from now: a wait bounded by it fails
/// instead of hanging.
fn late_after(after: Duration) -> Arc<AtomicBool> {
    let late = Arc::new(AtomicBool::new(false));
    let set = late.clone();
    std::thread::spawn(move || {
        std::thread::sleep(after);
        set.store(true, Ordering::Relaxed);
    });
    late
}

#[test]
fn rounds_wait_for_more_ranges_only_while_that_delays_nobody() {
    let mut f = tempfile::tempfile().unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    f.write_all(&data).unwrap();
    let file = Arc::new(f);
    let md5_of = |o: usize, l: usize| <[u8; 16]>::from(Md5::digest(&data[o..o + l]));
    // Held back for a minute at most: long enough that every wait
    // below that ends in time was not held back.
    let hasher = Hasher::gathering_for(Duration::from_secs(60)).unwrap();
    let h = hasher.handle();
    let late = late_after(Duration::from_secs(10));

    // A range whose worker waits, with nothing else on its way
    // (a download with one GET in flight): hashed at once.
    assert_eq!(
        h.submit(file.clone(), 0, 70_000)
            .wait_unless(&late)
            .unwrap(),
        md5_of(0, 70_000)
    );

    // Nobody waits yet (an upload sends its part meanwhile): held back
    // for company, until its worker begins to wait.
    let sending = h.submit(file.clone(), 1000, 65_536);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        sending.slot().is_none(),
        "hashed while it could wait for company"
    );
    assert_eq!(sending.wait_unless(&late).unwrap(), md5_of(1000, 65_536));

    // Waited for, but another GET's range is announced: held back
    // until that one comes, then both are hashed.
    let announced = h.expect_range();
    let first = h.submit(file.clone(), 5, 64_000);
    let waiter = {
        let late = late.clone();
        std::thread::spawn(move || first.wait_unless(&late))
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !waiter.is_finished(),
        "hashed before the announced range came"
    );
    // As a download does: hand it over, withdraw the announcement, wait.
    let second = h.submit(file.clone(), 100_000, 99_999);
    drop(announced);
    assert_eq!(second.wait_unless(&late).unwrap(), md5_of(100_000, 99_999));
    assert_eq!(waiter.join().unwrap().unwrap(), md5_of(5, 64_000));

    // An announcement given up (its GET failed) holds nothing back.
    drop(h.expect_range());
    assert_eq!(
        h.submit(file, 7, 1).wait_unless(&late).unwrap(),
        md5_of(7, 1)
    );
}

#[test]
fn a_range_past_the_end_is_an_error_and_a_stop_ends_the_wait_only() {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(&[7u8; 1000]).unwrap();
    let file = Arc::new(f);
    let hasher = Hasher::new().unwrap();
    let h = hasher.handle();
    let err = h.submit(file.clone(), 900, 200).wait().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    let want = <[u8; 16]>::from(Md5::digest([7u8; 1000]));
    // A stop ends the wait at once; the range is still asked for, and
    // its digest comes to a wait that ignores the stop.
    let pending = h.submit(file.clone(), 0, 1000);
    let stop = AtomicBool::new(true);
    let err = pending.wait_unless(&stop).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Interrupted);
    assert_eq!(pending.wait().unwrap(), want);
    // A range nobody waits for is dropped, and the thread serves the
    // next one.
    drop(h.submit(file.clone(), 0, 1000));
    let live = AtomicBool::new(false);
    assert_eq!(h.submit(file, 0, 1000).wait_unless(&live).unwrap(), want);
    // Once the uploader drops it, the thread is gone and says so.
    drop(hasher);
    let after = h.submit(Arc::new(tempfile::tempfile().unwrap()), 0, 0);
    assert_eq!(after.wait().unwrap_err().kind(), io::ErrorKind::Interrupted);
}

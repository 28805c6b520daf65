//! The client's own ceiling: batchput's per-chunk loop alone, with no
//! server and no network. `cargo bench --bench hot_loop`.
//!
//! It reimplements the per-chunk loops (`read_range` in
//! `src/engine/worker.rs`, the MD5 thread's reads in `src/engine/hasher.rs`,
//! and the streamed write path the crate used before sends went through
//! `Body::File`): pread of CHUNK bytes into one reused buffer, the integrity
//! mode's hash, then the bytes handed to the writer through `std::io::copy`.
//! Each mode streams a 256 MiB file on /dev/shm; the figure is the sending thread's own CPU time (user+sys,
//! RUSAGE_THREAD), so GiB/s per core = bytes / CPU seconds. Best of N
//! passes (the machine may be busy; CPU time is less disturbed than wall).
//!
//! Then the same loop into real sinks: /dev/null and a loopback TCP socket
//! read by another thread, through io::copy (its 8 KiB stack buffer: one
//! write(2) per 8 KiB) and with one write per chunk, to show what the
//! socket write size costs.
//!
//! Environment: HOT_LOOP_MIB (file size, default 256), HOT_LOOP_PASSES
//! (default 3), HOT_LOOP_DIR (default /dev/shm).

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Instant;

use md5::{Digest, Md5};

/// The crate's chunk size (src/engine/worker.rs CHUNK).
const CHUNK: usize = 256 * 1024;
const GIB: f64 = (1u64 << 30) as f64;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// user+sys CPU seconds of the calling thread.
fn thread_cpu() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes a rusage into the pointer we own.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    assert_eq!(rc, 0, "getrusage");
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// `len` bytes of `backing` from `skew` bytes past a page boundary.
fn page_aligned(backing: &mut Vec<u8>, len: usize, skew: usize) -> &mut [u8] {
    backing.resize(len + 8192, 0);
    let skip = (4096 - backing.as_ptr() as usize % 4096) % 4096 + skew;
    &mut backing[skip..skip + len]
}

fn pread_exact(file: &File, offset: u64, buf: &mut [u8]) {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => panic!("file shrank"),
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("pread: {e}"),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Hash {
    None,
    Md5,
    Crc32c,
}

/// `PartBody`: pread a chunk, hash it once, hand it out in whatever pieces
/// the reader asks for.
struct Body<'a> {
    file: &'a File,
    offset: u64,
    remaining: u64,
    buf: &'a mut [u8],
    start: usize,
    end: usize,
    hash: Hash,
    md5: Md5,
    crc: u32,
}

impl<'a> Body<'a> {
    fn new(file: &'a File, len: u64, buf: &'a mut [u8], hash: Hash) -> Self {
        Body {
            file,
            offset: 0,
            remaining: len,
            buf,
            start: 0,
            end: 0,
            hash,
            md5: Md5::new(),
            crc: 0,
        }
    }

    /// Next chunk into the buffer, hashed; false at the end.
    fn fill(&mut self) -> bool {
        if self.remaining == 0 {
            return false;
        }
        let n = (self.remaining as usize).min(self.buf.len());
        pread_exact(self.file, self.offset, &mut self.buf[..n]);
        match self.hash {
            Hash::None => {}
            Hash::Md5 => self.md5.update(&self.buf[..n]),
            Hash::Crc32c => self.crc = crc32c::crc32c_append(self.crc, &self.buf[..n]),
        }
        self.offset += n as u64;
        self.remaining -= n as u64;
        self.start = 0;
        self.end = n;
        true
    }

    fn digest(self) -> u64 {
        let md5 = self.md5.finalize();
        u64::from_le_bytes(md5[..8].try_into().unwrap()) ^ self.crc as u64
    }
}

impl Read for Body<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.start == self.end && !self.fill() {
            return Ok(0);
        }
        let k = out.len().min(self.end - self.start);
        out[..k].copy_from_slice(&self.buf[self.start..self.start + k]);
        self.start += k;
        Ok(k)
    }
}

/// Discards what it is given; records the largest write.
#[derive(Default)]
struct NullSink {
    bytes: u64,
    writes: u64,
    largest: usize,
}

impl Write for NullSink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        std::hint::black_box(b);
        self.bytes += b.len() as u64;
        self.writes += 1;
        self.largest = self.largest.max(b.len());
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How the chunk reaches the writer.
#[derive(Clone, Copy)]
enum Feed {
    /// std::io::copy (what ureq 2 does with a sized body).
    IoCopy,
    /// one write_all of each whole chunk straight from the buffer.
    WholeChunk,
    /// std::io::copy of the body wrapped in a BufReader of CHUNK bytes:
    /// std then writes the BufReader's whole buffer at once (a way to get
    /// big socket writes through ureq 2's `send(reader)`).
    BufReaderCopy,
}

/// Streams the file once through a Body into `sink`; returns a digest.
fn stream(
    file: &File,
    len: u64,
    buf: &mut [u8],
    hash: Hash,
    feed: Feed,
    sink: &mut dyn Write,
) -> u64 {
    let mut body = Body::new(file, len, buf, hash);
    match feed {
        Feed::IoCopy => {
            let n = io::copy(&mut body, sink).expect("copy");
            assert_eq!(n, len);
        }
        Feed::WholeChunk => {
            while body.fill() {
                sink.write_all(&body.buf[..body.end]).expect("write");
            }
        }
        Feed::BufReaderCopy => {
            let mut reader = io::BufReader::with_capacity(CHUNK, &mut body);
            let n = io::copy(&mut reader, sink).expect("copy");
            assert_eq!(n, len);
        }
    }
    body.digest()
}

/// A pre-send pass (content-md5, crc32c): read and hash only.
fn hash_pass(file: &File, len: u64, buf: &mut [u8], hash: Hash) -> u64 {
    let mut body = Body::new(file, len, buf, hash);
    while body.fill() {}
    body.digest()
}

struct Measure {
    cpu_best: f64,
    cpu_median: f64,
    wall_best: f64,
}

fn measure(passes: u64, mut f: impl FnMut()) -> Measure {
    let mut cpus = Vec::new();
    let mut walls = Vec::new();
    f(); // warm-up: page cache of the binary, the buffers
    for _ in 0..passes {
        let (c0, t0) = (thread_cpu(), Instant::now());
        f();
        cpus.push(thread_cpu() - c0);
        walls.push(t0.elapsed().as_secs_f64());
    }
    cpus.sort_by(f64::total_cmp);
    walls.sort_by(f64::total_cmp);
    Measure {
        cpu_best: cpus[0],
        cpu_median: cpus[cpus.len() / 2],
        wall_best: walls[0],
    }
}

fn row(name: &str, what: &str, m: &Measure, len: u64) {
    let gib = len as f64 / GIB;
    println!(
        "| {name:<23} | {what:<44} | {:>7.2} | {:>9.3} | {:>9.3} | {:>7.2} |",
        gib / m.cpu_best,
        m.cpu_best / gib,
        m.cpu_median / gib,
        gib / m.wall_best
    );
}

fn header(title: &str) {
    println!("\n{title}\n");
    println!(
        "| {:<23} | {:<44} | {:>7} | {:>9} | {:>9} | {:>7} |",
        "mode", "per chunk", "GiB/s", "s/GiB", "s/GiB", "GiB/s"
    );
    println!(
        "| {:<23} | {:<44} | {:>7} | {:>9} | {:>9} | {:>7} |",
        "", "", "per core", "best", "median", "wall"
    );
    println!(
        "|{:-<25}|{:-<46}|{:->9}|{:->11}|{:->11}|{:->9}|",
        "", "", "", "", "", ""
    );
}

/// A loopback TCP connection whose far end is drained by another thread.
fn tcp_sink() -> (TcpStream, std::thread::JoinHandle<(u64, f64)>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = listener.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let c0 = thread_cpu();
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("sink read: {e}"),
            }
        }
        (total, thread_cpu() - c0)
    });
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).unwrap();
    (stream, reader)
}

fn main() {
    // `cargo bench` passes --bench; ignore arguments.
    let mib = env_num("HOT_LOOP_MIB", 256);
    let passes = env_num("HOT_LOOP_PASSES", 3).max(1);
    let dir = PathBuf::from(std::env::var("HOT_LOOP_DIR").unwrap_or_else(|_| "/dev/shm".into()));
    let len = mib << 20;
    let path = dir.join(format!("batchput-hot-loop-{}.bin", std::process::id()));

    // Pseudo-random content (xorshift), written once.
    {
        let mut f = File::create(&path).expect("create the test file");
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut block = vec![0u8; 1 << 20];
        for _ in 0..mib {
            for w in block.chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                w.copy_from_slice(&x.to_le_bytes());
            }
            f.write_all(&block).unwrap();
        }
    }
    let file = File::open(&path).unwrap();
    // Page-aligned, as the crate's buffers are (store::page_aligned).
    let mut backing = Vec::new();
    let buf = page_aligned(&mut backing, CHUNK, 0);

    let mut probe = NullSink::default();
    stream(&file, len, buf, Hash::None, Feed::IoCopy, &mut probe);
    let mut probe2 = NullSink::default();
    stream(
        &file,
        len,
        buf,
        Hash::None,
        Feed::BufReaderCopy,
        &mut probe2,
    );
    println!(
        "hot loop: {} MiB file in {}, chunk {} KiB, best of {passes} passes (+1 warm-up)\n\
         io::copy hands the writer at most {} bytes per write ({} writes per GiB); \
         through a BufReader of one chunk, at most {} bytes ({} writes per GiB)",
        mib,
        dir.display(),
        CHUNK / 1024,
        probe.largest,
        probe.writes * (1u64 << 30) / len,
        probe2.largest,
        probe2.writes * (1u64 << 30) / len
    );

    header("Integrity modes: pread + hash + io::copy into a null sink (the client's ceiling, one core)");
    let modes: [(&str, &str, Hash, Option<Hash>); 4] = [
        ("none", "pread, copy", Hash::None, None),
        // etag-md5 as it was streamed before the MD5 thread; now it sends
        // like `none` and hashes as the "md5, 8 lanes" component below.
        ("etag-md5, streamed", "pread, md5, copy", Hash::Md5, None),
        (
            "crc32c",
            "pread, crc32c | pread, copy (2 passes)",
            Hash::None,
            Some(Hash::Crc32c),
        ),
        (
            "content-md5",
            "pread, md5 | pread, copy (2 passes)",
            Hash::None,
            Some(Hash::Md5),
        ),
    ];
    for (name, what, streaming, pre) in modes {
        let m = measure(passes, || {
            if let Some(h) = pre {
                std::hint::black_box(hash_pass(&file, len, buf, h));
            }
            let mut sink = NullSink::default();
            std::hint::black_box(stream(&file, len, buf, streaming, Feed::IoCopy, &mut sink));
        });
        row(name, what, &m, len);
    }

    header("Components");
    let m = measure(passes, || {
        std::hint::black_box(hash_pass(&file, len, buf, Hash::None));
    });
    row("pread only", "pread 256 KiB", &m, len);
    // What malloc gives a 256 KiB Vec (its own mmap, data 16 bytes into
    // the page): the kernel's copy into it is far slower on some CPUs.
    let mut skewed_backing = Vec::new();
    let skewed = page_aligned(&mut skewed_backing, CHUNK, 16);
    let m = measure(passes, || {
        std::hint::black_box(hash_pass(&file, len, skewed, Hash::None));
    });
    row(
        "pread only, page+16",
        "pread 256 KiB into a buffer 16 B past a page",
        &m,
        len,
    );
    let data: Vec<u8> = {
        let mut v = vec![0u8; CHUNK];
        pread_exact(&file, 0, &mut v);
        v
    };
    let chunks = (len / CHUNK as u64) as usize;
    let m = measure(passes, || {
        let mut h = Md5::new();
        for _ in 0..chunks {
            h.update(std::hint::black_box(&data[..]));
        }
        std::hint::black_box(h.finalize());
    });
    row("md5 only", "in memory", &m, len);
    // What the uploader's MD5 thread does (src/engine/hasher.rs): eight
    // streams in the lanes of one register, the same bytes in total.
    let m = measure(passes, || {
        let mut states = [md5_lanes::INIT; md5_lanes::LANES];
        for _ in 0..chunks / md5_lanes::LANES {
            let lanes = [std::hint::black_box(&data[..]); md5_lanes::LANES];
            md5_lanes::compress(&mut states, lanes, CHUNK / 64);
        }
        std::hint::black_box(states);
    });
    row(
        "md5, 8 lanes",
        "in memory, 8 streams at once (md5_lanes)",
        &m,
        len,
    );
    let m = measure(passes, || {
        let mut c = 0u32;
        for _ in 0..chunks {
            c = crc32c::crc32c_append(c, std::hint::black_box(&data[..]));
        }
        std::hint::black_box(c);
    });
    row("crc32c only", "in memory", &m, len);
    let m = measure(passes, || {
        let mut sink = NullSink::default();
        std::hint::black_box(stream(
            &file,
            len,
            buf,
            Hash::None,
            Feed::WholeChunk,
            &mut sink,
        ));
    });
    row(
        "none, whole chunk",
        "pread, one write per chunk (no copy)",
        &m,
        len,
    );

    header("Socket write size: mode none into real sinks (sending thread's CPU only)");
    let devnull = || {
        File::options()
            .write(true)
            .open("/dev/null")
            .expect("/dev/null")
    };
    let m = measure(passes, || {
        let mut sink = devnull();
        std::hint::black_box(stream(&file, len, buf, Hash::None, Feed::IoCopy, &mut sink));
    });
    row("/dev/null, io::copy", "pread, 8 KiB write(2)s", &m, len);
    let m = measure(passes, || {
        let mut sink = devnull();
        std::hint::black_box(stream(
            &file,
            len,
            buf,
            Hash::None,
            Feed::WholeChunk,
            &mut sink,
        ));
    });
    row(
        "/dev/null, whole chunk",
        "pread, one write(2) per chunk",
        &m,
        len,
    );
    let tcp_modes = [
        (
            "loopback TCP, io::copy",
            "pread, 8 KiB write(2)s",
            Feed::IoCopy,
        ),
        (
            "loopback TCP, BufReader",
            "pread, copy, io::copy of a 256 KiB BufReader",
            Feed::BufReaderCopy,
        ),
        (
            "loopback TCP, whole",
            "pread, one write(2) per chunk",
            Feed::WholeChunk,
        ),
    ];
    let mut receiver_cpu = Vec::new();
    for (name, what, feed) in tcp_modes {
        let m = measure(passes, || {
            let (mut sock, reader) = tcp_sink();
            std::hint::black_box(stream(&file, len, buf, Hash::None, feed, &mut sock));
            drop(sock);
            let (got, cpu) = reader.join().unwrap();
            assert_eq!(got, len);
            receiver_cpu.push((name, cpu));
        });
        row(name, what, &m, len);
    }
    println!();
    for (name, _, _) in tcp_modes {
        let best = receiver_cpu
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, c)| *c)
            .fold(f64::INFINITY, f64::min);
        println!(
            "receiving thread ({name}; reads of 256 KiB): {:.3} s/GiB (best)",
            best / (len as f64 / GIB)
        );
    }

    drop(file);
    let _ = std::fs::remove_file(&path);
}

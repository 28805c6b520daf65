//! A TCP proxy that adds latency, for the WAN sets of bench/run.sh: every
//! byte is delivered RTT/2 after it arrived, in each direction, so a round
//! trip costs RTT while throughput is not limited (data in flight is
//! queued, not stalled). On loopback every request is free; behind this
//! proxy each costs a round trip, as on a real link. netem would do the
//! same in the kernel; this machine's kernel has no sch_netem.
//!
//! Standard library only, built by bench/run.sh with
//! `rustc -O bench/latency_proxy.rs`.
//!
//! Usage: latency_proxy LISTEN_ADDR UPSTREAM_ADDR RTT_MS
//! Prints "ready" on stdout once it listens.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Pieces received and not yet due, with the time each is due.
#[derive(Default)]
struct Queue {
    pieces: VecDeque<(Instant, Vec<u8>)>,
    /// The reading side ended (EOF or error).
    closed: bool,
}

/// Copies `from` to `to`, each piece delayed by `delay`.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let queue = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
    let q = queue.clone();
    let reader = thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => 0,
                Ok(n) => n,
            };
            let (lock, cv) = &*q;
            let mut s = lock.lock().unwrap();
            if n == 0 {
                s.closed = true;
                cv.notify_one();
                return;
            }
            s.pieces.push_back((Instant::now() + delay, buf[..n].to_vec()));
            cv.notify_one();
        }
    });
    let (lock, cv) = &*queue;
    loop {
        let piece = {
            let mut s = lock.lock().unwrap();
            loop {
                if let Some((due, _)) = s.pieces.front() {
                    let now = Instant::now();
                    if *due <= now {
                        break s.pieces.pop_front();
                    }
                    let wait = *due - now;
                    s = cv.wait_timeout(s, wait).unwrap().0;
                } else if s.closed {
                    break None;
                } else {
                    s = cv.wait(s).unwrap();
                }
            }
        };
        match piece {
            Some((_, bytes)) => {
                if to.write_all(&bytes).is_err() {
                    break;
                }
            }
            None => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = reader.join();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: latency_proxy LISTEN_ADDR UPSTREAM_ADDR RTT_MS");
        std::process::exit(2);
    }
    let listener = TcpListener::bind(&args[1]).expect("bind");
    let upstream = args[2].clone();
    let rtt: u64 = args[3].parse().expect("RTT_MS");
    let half = Duration::from_micros(rtt * 500);
    println!("ready");
    for client in listener.incoming().flatten() {
        let upstream = upstream.clone();
        thread::spawn(move || {
            // The connection's own handshake costs a round trip too.
            thread::sleep(half * 2);
            let Ok(server) = TcpStream::connect(&upstream) else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let up = thread::spawn(move || pipe(client, server, half));
            pipe(s2, c2, half);
            let _ = up.join();
        });
    }
}

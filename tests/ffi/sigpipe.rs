//! A C host that keeps SIGPIPE at its default action (terminate), against a
//! server that refuses an upload and closes while the body is still being
//! sent: the host must live and report the refusal, in every integrity mode
//! (each sends the body its own way: sendfile, or send with MSG_NOSIGNAL).

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;

/// A raw "S3 server" that answers every request, after its head only,
/// `403 Forbidden` with an S3 AccessDenied body and `Connection: close`,
/// then closes the socket without reading the body: the kernel resets the
/// connection on the client, which is still sending. Returns its endpoint
/// and a count of the requests it refused.
fn answer_early_and_close() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let refused = Arc::new(AtomicUsize::new(0));
    let count = refused.clone();
    // Lives until the test process ends; it owns nothing else.
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let count = count.clone();
            std::thread::spawn(move || refuse(conn, &count));
        }
    });
    (endpoint, refused)
}

fn refuse(mut conn: TcpStream, refused: &AtomicUsize) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    refused.fetch_add(1, Ordering::SeqCst);
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>\
                <Message>Access Denied</Message><RequestId>sigpipe-test</RequestId></Error>";
    let answer = format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(answer.as_bytes());
    let _ = conn.shutdown(Shutdown::Write);
    // Dropped with the body unread: the kernel sends a reset.
}

#[test]
fn a_c_host_with_default_sigpipe_survives_a_server_that_closes_early() {
    let bin = tempfile::tempdir().unwrap();
    build_examples(bin.path());
    let program = bin.path().join("sigpipe");

    // The control: a write to a closed peer on a second thread, without
    // MSG_NOSIGNAL, kills this program. So the check below can fail.
    let out = run(Command::new(&program).arg("-c"), Duration::from_secs(30));
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "the control did not die of SIGPIPE: {:?} {}",
        out.status,
        text(&out).1
    );

    let (endpoint, refused) = answer_early_and_close();
    let file = bin.path().join("big.bin");
    std::fs::write(&file, pattern(64 * MIB, 13)).unwrap();
    for (n, mode) in ["none", "crc32c", "content-md5", "etag-md5"]
        .into_iter()
        .enumerate()
    {
        let out = run(
            Command::new(&program)
                .args(["-o", &format!("endpoint={endpoint}")])
                .args([
                    "-o",
                    "bucket=sigpipe-test",
                    "-o",
                    "access_key=AK",
                    "-o",
                    "secret_key=SK",
                ])
                .args(["-o", &format!("integrity={mode}")])
                // One PUT carrying the whole 64 MiB body.
                .args(["-o", "multipart_threshold=128MiB", "-o", "retries=1"])
                .args(["-k", &format!("big-{mode}")])
                .arg(&file),
            Duration::from_secs(120),
        );
        let (so, se) = text(&out);
        assert_eq!(
            out.status.signal(),
            None,
            "{mode}: the host was killed by signal {:?}\n{so}\n{se}",
            out.status.signal()
        );
        assert_eq!(out.status.code(), Some(0), "{mode}:\n{so}\n{se}");
        assert!(
            so.contains("job failed (the server answered with an error)"),
            "{mode}: {so}"
        );
        assert!(
            so.contains("HTTP 403") && so.contains("AccessDenied"),
            "{mode}: {so}"
        );
        assert!(
            refused.load(Ordering::SeqCst) > n,
            "{mode}: no request came"
        );
    }
}

//! The wire layer against scripted byte streams: each script is handed out
//! whole, one byte at a time and in random pieces, since a parser that
//! works only when the head arrives in one read is the classic bug.

use std::io;

use super::*;

mod fuzz;

// ------------------------------------------------------------ scripts

/// How a script is cut into the pieces `fill` hands out.
#[derive(Debug, Clone, Copy)]
enum Split {
    Whole,
    Bytes1,
    Random(u64),
}

const SPLITS: [Split; 5] = [
    Split::Whole,
    Split::Bytes1,
    Split::Random(1),
    Split::Random(0xdead_beef),
    Split::Random(42),
];

/// xorshift64*: reproducible randomness without a crate.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A fill closure that hands out `data` in pieces, then end of stream.
fn script(data: &[u8], split: Split) -> impl FnMut(&mut Vec<u8>) -> io::Result<usize> + '_ {
    let mut at = 0;
    let mut rng = Rng::new(match split {
        Split::Random(seed) => seed,
        _ => 0,
    });
    move |buf| {
        let left = data.len() - at;
        let n = match split {
            Split::Whole => left,
            Split::Bytes1 => left.min(1),
            Split::Random(_) => left.min(1 + rng.below(40)),
        };
        buf.extend_from_slice(&data[at..at + n]);
        at += n;
        Ok(n)
    }
}

struct Answer {
    head: Head,
    body: Vec<u8>,
    reusable: bool,
    /// What stayed in the read buffer.
    rest: Vec<u8>,
}

fn answer_with(
    data: &[u8],
    method: &str,
    split: Split,
    limits: &Limits,
) -> Result<Answer, WireError> {
    let mut rbuf = Vec::new();
    let mut fill = script(data, split);
    let (head, body, reusable) = read_answer(&mut rbuf, &mut fill, method, limits)?;
    Ok(Answer {
        head,
        body,
        reusable,
        rest: rbuf,
    })
}

/// Reads `data` as the answer to `method` in every split; they must agree.
fn answer(data: &[u8], method: &str) -> Result<Answer, WireError> {
    let mut first: Option<Result<Answer, WireError>> = None;
    for split in SPLITS {
        let got = answer_with(data, method, split, &Limits::xml());
        match &first {
            None => first = Some(got),
            Some(Ok(a)) => {
                let b = got.unwrap_or_else(|e| panic!("{split:?}: {e}"));
                assert_eq!(a.head, b.head, "{split:?}");
                assert_eq!(a.body, b.body, "{split:?}");
                assert_eq!(a.reusable, b.reusable, "{split:?}");
            }
            Some(Err(a)) => {
                let b = got.err().unwrap_or_else(|| panic!("{split:?} read it"));
                assert_eq!(a.to_string(), b.to_string(), "{split:?}");
            }
        }
    }
    first.unwrap()
}

fn ok(data: &[u8], method: &str) -> Answer {
    answer(data, method).unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(data)))
}

fn err(data: &[u8], method: &str) -> WireError {
    match answer(data, method) {
        Ok(a) => panic!(
            "{:?} was read as {} with {:?}",
            String::from_utf8_lossy(data),
            a.head.status,
            String::from_utf8_lossy(&a.body)
        ),
        Err(e) => e,
    }
}

fn assert_protocol(e: WireError, words: &str) {
    match &e {
        WireError::Protocol(m) => assert!(m.contains(words), "{m:?} lacks {words:?}"),
        other => panic!("expected a protocol error with {words:?}, got {other:?}"),
    }
}

fn assert_too_large(e: WireError, what: &str) {
    match e {
        WireError::TooLarge(w) => assert_eq!(w, what),
        other => panic!("expected TooLarge({what}), got {other:?}"),
    }
}

const CL: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"abc\"\r\n\r\nhello";
const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
    5;name=value\r\nhello\r\n\
    6 ; quoted=\"a;b\" ; flag\r\n world\r\n\
    A\r\n0123456789\r\n\
    0;last\r\nX-Checksum: abc\r\nX-Other:  two words \r\n\r\n";
const CONTINUE_THEN_OK: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n\
    HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n\
    HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";

// ------------------------------------------------------------ framing

#[test]
fn content_length_body_is_read_exactly() {
    let a = ok(CL, "GET");
    assert_eq!(a.head.status, 200);
    assert_eq!(a.head.minor_version, 1);
    assert_eq!(a.head.header("etag"), Some("\"abc\""));
    assert_eq!(a.head.header("ETAG"), Some("\"abc\""));
    assert_eq!(a.body, b"hello");
    assert!(a.reusable);
    assert!(a.rest.is_empty());
    let a = ok(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "PUT");
    assert!(a.body.is_empty() && a.reusable);
}

#[test]
fn chunked_body_with_extensions_and_trailers_is_decoded() {
    let a = ok(CHUNKED, "GET");
    assert_eq!(a.body, b"hello world0123456789");
    assert!(a.reusable, "the trailers were read to their end");
    assert!(a.rest.is_empty());
    // Lower-case hex, the coding named in another case.
    let a = ok(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n",
        "GET",
    );
    assert_eq!(a.body, b"0123456789");
}

#[test]
fn interim_answers_come_before_the_real_one() {
    let a = ok(CONTINUE_THEN_OK, "PUT");
    assert_eq!(a.head.status, 201);
    assert_eq!(
        a.head.header("link"),
        None,
        "the 103's headers are not the answer's"
    );
    assert_eq!(a.body, b"ok");
    assert!(a.reusable);
    // read_head alone stops at the interim answer and consumes only it.
    let mut rbuf = CONTINUE_THEN_OK.to_vec();
    let head = read_head(&mut rbuf, &mut script(b"", Split::Whole), &Limits::xml()).unwrap();
    assert_eq!(head.status, 100);
    assert!(rbuf.starts_with(b"HTTP/1.1 103"));
}

#[test]
fn a_final_answer_instead_of_100_continue_is_the_answer() {
    // A server that refuses the body (expect: 100-continue sent) answers
    // at once; that answer, body and all, is what the request got.
    let refusal = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 8\r\n\
        X-Amz-Request-Id: R1\r\nX-Amz-Request-Id: R2\r\n\r\n<Error/>";
    let a = ok(refusal, "PUT");
    assert_eq!((a.head.status, a.body.as_slice()), (403, &b"<Error/>"[..]));
    assert_eq!(
        a.head.header("x-amz-request-id"),
        Some("R1"),
        "the first of two"
    );
    assert!(a.reusable);
}

#[test]
fn a_101_or_endless_interim_answers_are_errors() {
    assert_protocol(
        err(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
            "GET",
        ),
        "101",
    );
    let many = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM + 1);
    assert_protocol(err(&many, "PUT"), "too many interim");
}

#[test]
fn head_204_and_304_have_no_body_whatever_content_length_says() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
    let a = ok(head, "HEAD");
    assert_eq!(a.head.header("content-length"), Some("1000"));
    assert!(a.body.is_empty() && a.reusable);
    for status in ["204 No Content", "304 Not Modified"] {
        let text = format!("HTTP/1.1 {status}\r\nContent-Length: 1000\r\n\r\n");
        let a = ok(text.as_bytes(), "GET");
        assert!(a.body.is_empty() && a.reusable, "{status}");
    }
    // Even a chunked header: nothing follows.
    let a = ok(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HEAD",
    );
    assert!(a.body.is_empty() && a.reusable);
}

#[test]
fn connection_close_and_http_1_0_end_the_connection() {
    let a = ok(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        "GET",
    );
    assert_eq!(a.body, b"ok");
    assert!(!a.reusable);
    let a = ok(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n",
        "GET",
    );
    assert!(!a.reusable, "close among other tokens");
    let a = ok(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "GET");
    assert_eq!((a.head.minor_version, a.body.as_slice()), (0, &b"ok"[..]));
    assert!(!a.reusable, "HTTP/1.0 closes unless it says keep-alive");
    let a = ok(
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: Keep-Alive\r\n\r\nok",
        "GET",
    );
    assert_eq!(a.body, b"ok");
    assert!(a.reusable);
}

#[test]
fn a_body_without_length_is_read_to_the_close_and_capped() {
    let a = ok(b"HTTP/1.1 200 OK\r\n\r\nall of this", "GET");
    assert_eq!(a.body, b"all of this");
    assert!(!a.reusable);
    let a = ok(b"HTTP/1.0 500 Oops\r\n\r\n<Error/>", "PUT");
    assert_eq!((a.head.status, a.body.as_slice()), (500, &b"<Error/>"[..]));
    let mut long = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    long.extend(std::iter::repeat_n(b'x', 1001));
    for split in SPLITS {
        let limits = Limits::xml().with_max_body(1000);
        let e = answer_with(&long, "GET", split, &limits).err().unwrap();
        assert_too_large(e, "response body");
        let a = answer_with(&long, "GET", split, &limits.with_max_body(1001)).unwrap();
        assert_eq!(a.body.len(), 1001);
    }
}

#[test]
fn pipelined_answers_stay_in_the_buffer() {
    let mut two = CL.to_vec();
    two.extend_from_slice(CHUNKED);
    let mut rbuf = Vec::new();
    let mut fill = script(&two, Split::Whole);
    let (_, body, reusable) = read_answer(&mut rbuf, &mut fill, "GET", &Limits::xml()).unwrap();
    assert_eq!(body, b"hello");
    assert!(
        !reusable,
        "bytes past the answer make the connection suspect"
    );
    assert_eq!(rbuf, CHUNKED, "the second answer is left whole");
    let (head, body, reusable) = read_answer(&mut rbuf, &mut fill, "GET", &Limits::xml()).unwrap();
    assert_eq!(
        (head.status, body.as_slice()),
        (200, &b"hello world0123456789"[..])
    );
    assert!(reusable && rbuf.is_empty());
}

// ------------------------------------------------------------ refusals

#[test]
fn garbage_is_a_protocol_error() {
    for junk in [
        &b"SSH-2.0-OpenSSH_9.6\r\n\r\n"[..],
        b"<html><body>502 Bad Gateway</body></html>\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
        b"HTTP/1.2 200 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 099 Low\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n",
    ] {
        assert_protocol(err(junk, "GET"), "malformed answer");
    }
}

#[test]
fn folded_headers_are_refused() {
    let e = err(
        b"HTTP/1.1 200 OK\r\nX-Long: one\r\n two\r\nContent-Length: 0\r\n\r\n",
        "GET",
    );
    assert_protocol(e, "malformed answer");
}

#[test]
fn content_length_must_be_one_clear_number() {
    // The same value said twice, or as a list, is one length.
    for same in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
    ] {
        assert_eq!(ok(same, "GET").body, b"ok");
    }
    let e = err(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nokk",
        "GET",
    );
    assert_protocol(e, "conflicting content-length 2 and 3");
    assert_protocol(
        err(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nokk", "GET"),
        "conflicting",
    );
    for bad in [
        "+2",
        "-1",
        "2 2",
        "0x2",
        "",
        "2;",
        "99999999999999999999999",
    ] {
        let text = format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\nok");
        assert_protocol(err(text.as_bytes(), "GET"), "invalid content-length");
    }
    let e = err(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        "GET",
    );
    assert_protocol(e, "both content-length and transfer-encoding");
}

#[test]
fn only_chunked_transfer_encoding_is_understood() {
    for te in [
        "gzip",
        "gzip, chunked",
        "chunked, gzip",
        "identity",
        "chunked, chunked",
    ] {
        let text = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n");
        assert_protocol(err(text.as_bytes(), "GET"), "unsupported transfer-encoding");
    }
}

#[test]
fn bad_chunks_are_refused() {
    let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (chunks, words) in [
        ("5\r\nhelloXY0\r\n\r\n", "not followed by CRLF"),
        ("5\r\nhello\n0\r\n\r\n", "not followed by CRLF"),
        ("\r\n", "bad chunk-size line"),
        ("zz\r\n", "bad chunk-size line"),
        (" 5\r\nhello\r\n", "bad chunk-size line"),
        ("5\nhello\r\n", "bad chunk-size line"),
        ("-5\r\n", "bad chunk-size line"),
        ("1ffffffffffffffff\r\n", "bad chunk-size line"),
        ("0\r\nBad Trailer\r\n\r\n", "bad trailer"),
    ] {
        let text = format!("{head}{chunks}");
        assert_protocol(err(text.as_bytes(), "GET"), words);
    }
}

#[test]
fn oversized_parts_of_an_answer_are_refused() {
    let limits = Limits::xml();
    let big_header = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n",
        "v".repeat(limits.max_head)
    );
    assert_too_large(err(big_header.as_bytes(), "GET"), "response head");
    // Over the limit without a single line end: still refused.
    let endless = "H".repeat(limits.max_head + 10);
    assert_too_large(err(endless.as_bytes(), "GET"), "response head");
    let mut many = String::from("HTTP/1.1 200 OK\r\n");
    for i in 0..=limits.max_headers {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_too_large(err(many.as_bytes(), "GET"), "header count");

    let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    let long_ext = format!(
        "{chunked}1;{}\r\nx\r\n0\r\n\r\n",
        "e".repeat(MAX_CHUNK_LINE)
    );
    assert_too_large(err(long_ext.as_bytes(), "GET"), "chunk-size line");
    let long_trailers = format!("{chunked}0\r\nX-T: {}\r\n\r\n", "t".repeat(MAX_TRAILERS));
    assert_too_large(err(long_trailers.as_bytes(), "GET"), "trailer section");
    for size in ["ffffffffffffffff", "1000001"] {
        let text = format!("{chunked}{size}\r\nabc");
        assert_too_large(err(text.as_bytes(), "GET"), "response body");
    }
    // Chunks that each fit but add up to too much.
    let mut text = chunked.to_string();
    for _ in 0..3 {
        text.push_str(&format!("800\r\n{}\r\n", "c".repeat(0x800)));
    }
    text.push_str("0\r\n\r\n");
    let e = answer_with(
        text.as_bytes(),
        "GET",
        Split::Whole,
        &limits.with_max_body(0x1000),
    );
    assert_too_large(e.err().unwrap(), "response body");
    assert_eq!(
        answer_with(
            text.as_bytes(),
            "GET",
            Split::Whole,
            &limits.with_max_body(0x1800)
        )
        .unwrap()
        .body
        .len(),
        0x1800
    );

    let huge_length = b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n";
    assert_too_large(err(huge_length, "GET"), "response body");
    let e = answer_with(CL, "GET", Split::Whole, &limits.with_max_body(4));
    assert_too_large(e.err().unwrap(), "response body");
}

#[test]
fn a_failing_fill_is_passed_through() {
    let mut rbuf = b"HTTP/1.1 200 OK\r\nContent-".to_vec();
    let mut calls = 0;
    let mut fill = |_: &mut Vec<u8>| {
        calls += 1;
        if calls == 1 {
            // Retried, as std's readers do.
            Err(io::Error::from(io::ErrorKind::Interrupted))
        } else {
            Err(io::Error::new(io::ErrorKind::WouldBlock, "idle timeout"))
        }
    };
    match read_answer(&mut rbuf, &mut fill, "GET", &Limits::xml()) {
        Err(WireError::Io(e)) => {
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
            assert_eq!(e.to_string(), "idle timeout");
        }
        other => panic!("{:?}", other.map(|a| a.0)),
    }
    assert_eq!(calls, 2);
}

// ------------------------------------------------------------ truncation

#[test]
fn end_of_stream_before_the_answer_is_a_clean_close() {
    match answer(b"", "PUT") {
        Err(WireError::Closed {
            answer_started: false,
        }) => {}
        other => panic!("{:?}", other.map(|a| a.head)),
    }
    let e = answer(b"", "PUT").err().unwrap();
    assert_eq!(
        e.to_string(),
        "the server closed the connection without answering"
    );
}

#[test]
fn truncation_at_every_byte_is_a_close_never_an_answer() {
    let head_only = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
    for (full, method) in [
        (CL, "GET"),
        (CHUNKED, "GET"),
        (CONTINUE_THEN_OK, "PUT"),
        (&head_only[..], "HEAD"),
    ] {
        assert!(answer(full, method).is_ok());
        for cut in 0..full.len() {
            let e = match answer(&full[..cut], method) {
                Ok(a) => panic!(
                    "{:?} cut at {cut} was read as {:?}",
                    String::from_utf8_lossy(full),
                    String::from_utf8_lossy(&a.body)
                ),
                Err(e) => e,
            };
            match e {
                WireError::Closed { answer_started } => assert_eq!(answer_started, cut > 0),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }
}

// ------------------------------------------------------------ request heads

#[test]
fn request_head_is_written_in_order() {
    let head = request_head(
        "PUT",
        "bucket.localhost:9000",
        "/key%20x?partNumber=1&uploadId=a",
        "batchput/0.1",
        &[
            ("Host", "ignored"),
            ("x-amz-date", "20240101T000000Z"),
            ("x-amz-meta-t", "a\tb"),
        ],
        Some(0),
        false,
        false,
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(head).unwrap(),
        "PUT /key%20x?partNumber=1&uploadId=a HTTP/1.1\r\n\
         host: bucket.localhost:9000\r\n\
         user-agent: batchput/0.1\r\n\
         x-amz-date: 20240101T000000Z\r\n\
         x-amz-meta-t: a\tb\r\n\
         content-length: 0\r\n\r\n"
    );
    let head = request_head("GET", "h:1", "/b?uploads", "ua", &[], None, true, true).unwrap();
    assert_eq!(
        String::from_utf8(head).unwrap(),
        "GET http://h:1/b?uploads HTTP/1.1\r\nhost: h:1\r\nuser-agent: ua\r\n\
         expect: 100-continue\r\n\r\n"
    );
}

#[test]
fn request_head_refuses_what_would_break_the_framing() {
    let head = |method: &str, target: &str, headers: &[(&str, &str)]| {
        request_head(method, "h", target, "ua", headers, None, false, false)
    };
    for bad in ["a\r\nx-injected: 1", "a\nb", "a\0b", "a\x7fb", "a\x1bb"] {
        let e = head("PUT", "/k", &[("x-amz-meta-note", bad)]).unwrap_err();
        assert!(
            matches!(&e, WireError::Protocol(m) if m.contains("\"x-amz-meta-note\"")),
            "{e}"
        );
    }
    for bad in ["x-a b", "x:y", "", "x\r\ny", "ü"] {
        let e = head("PUT", "/k", &[(bad, "v")]).unwrap_err();
        assert!(e.to_string().contains("header name"), "{e}");
    }
    for bad in ["/a b", "/a\r\nb", "/a\0", "no-slash", "/\t"] {
        let e = head("GET", bad, &[]).unwrap_err();
        assert!(e.to_string().contains("request target"), "{e}");
    }
    assert!(head("GE T", "/", &[]).is_err());
    assert!(request_head("GET", "h\r\nx: y", "/", "ua", &[], None, false, false).is_err());
    assert!(request_head("GET", "h", "/", "ua\n", &[], None, false, false).is_err());
    // Non-ASCII in a value (UTF-8 metadata) is the caller's business.
    assert!(head("PUT", "/k", &[("x-amz-meta-n", "naïve")]).is_ok());
}

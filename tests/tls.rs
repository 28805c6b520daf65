//! https through a TLS front (certificates made for the run) before
//! s3s-fs: uploads that trust the CA, and downloads back, are byte-exact; an untrusted or
//! misnamed certificate is refused at once, with a hint, never retried,
//! with nothing written; virtual-hosted addressing sends the bucket host as
//! the TLS server name.

use std::time::{Duration, Instant};

use batchput::{Addressing, ErrorKind, JobState, Uploader};

use crate::support::tls::{Certs, TlsFront};
use crate::support::{self, finish, make_files, specs, MIB};

#[test]
fn https_with_the_ca_file_uploads_and_downloads_byte_exact() {
    let server = support::s3s();
    let certs = Certs::for_names(&["localhost"]);
    let front = TlsFront::start(TlsFront::bind(), &certs, &server.endpoint);
    let files = make_files(&specs(&[
        ("tls/big", 12 * MIB),
        ("tls/small", 100_000),
        ("tls/empty", 0),
    ]));
    let up = Uploader::new(
        server
            .config_via(&format!("https://localhost:{}", front.port()))
            .part_size(5 * MIB as u64)
            .multipart_threshold(5 * MIB as u64)
            .ca_file(&certs.ca_file),
    )
    .unwrap();
    let job = up.start(&files.batch()).unwrap();
    let p = finish(&job, 60);
    assert_eq!(p.state, JobState::Succeeded, "{:?}", p.error);
    files.verify_all(&server.store());
    server.assert_no_open_uploads();

    // And back over TLS: bodies of many records, read from rustls's
    // plaintext as it comes (ranges of the multipart object, and in one GET).
    let dir = tempfile::tempdir().unwrap();
    let job = up.download_prefix("tls/", dir.path(), None).unwrap();
    let p = finish(&job, 60);
    assert_eq!(p.state, JobState::Succeeded, "{:?}", p.error);
    for (path, key, ..) in &files.items {
        let got = std::fs::read(dir.path().join(key.trim_start_matches("tls/"))).unwrap();
        assert!(
            got == std::fs::read(path).unwrap(),
            "{key} came back changed"
        );
    }
    assert!(front
        .names()
        .iter()
        .all(|n| n.as_deref() == Some("localhost")));
}

/// Starts a job through `front` without trusting it properly and returns
/// how long the job took and its error.
fn refused(
    server: &support::Server,
    url: &str,
    ca_file: Option<&std::path::Path>,
) -> (Duration, batchput::Error) {
    let files = make_files(&specs(&[("refused/a", 1000), ("refused/b", 2000)]));
    let mut cfg = server.config_via(url);
    if let Some(ca) = ca_file {
        cfg = cfg.ca_file(ca);
    }
    let up = Uploader::new(cfg).unwrap();
    let started = Instant::now();
    let job = up.start(&files.batch()).unwrap();
    let p = finish(&job, 30);
    let took = started.elapsed();
    assert_eq!(p.state, JobState::Failed);
    for i in 0..files.items.len() {
        files.assert_absent(&server.store(), i);
    }
    (took, p.error.unwrap())
}

#[test]
fn an_untrusted_certificate_is_refused_at_once_with_a_hint() {
    let server = support::s3s();
    let certs = Certs::for_names(&["localhost"]);
    let front = TlsFront::start(TlsFront::bind(), &certs, &server.endpoint);
    // Trusts the bundled roots, the system store and $AWS_CA_BUNDLE, none
    // of which knows the test's CA.
    let (took, e) = refused(
        &server,
        &format!("https://localhost:{}", front.port()),
        None,
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("TLS certificate of localhost is not trusted"),
        "{text}"
    );
    assert!(text.contains("--ca-file"), "{text}");
    assert!(!text.contains("is the server running"), "{text}");
    assert_eq!(
        e.attempts().unwrap_or(1),
        1,
        "a certificate error is not retried"
    );
    assert_eq!(front.passed(), 0, "no request reached the server");
}

#[test]
fn a_certificate_for_another_name_is_refused() {
    let server = support::s3s();
    let certs = Certs::for_names(&["s3.example.com"]);
    let front = TlsFront::start(TlsFront::bind(), &certs, &server.endpoint);
    let (took, e) = refused(
        &server,
        &format!("https://localhost:{}", front.port()),
        Some(&certs.ca_file),
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    assert!(
        e.to_string()
            .contains("TLS certificate of localhost is not valid for localhost"),
        "{e}"
    );
    assert_eq!(front.passed(), 0);
}

#[test]
fn virtual_hosted_over_tls_sends_the_bucket_host_as_sni() {
    let listener = TlsFront::bind();
    let port = listener.local_addr().unwrap().port();
    let server = support::s3s_virtual_also_for(&[format!("localhost:{port}")]);
    let bucket_host = format!("{}.localhost", server.bucket);
    let certs = Certs::for_names(&["localhost", &bucket_host]);
    let front = TlsFront::start(
        listener,
        &certs,
        &server.endpoint.replace("localhost", "127.0.0.1"),
    );
    let files = make_files(&specs(&[("sni/a", 50_000)]));
    let up = Uploader::new(
        server
            .config_via(&format!("https://localhost:{port}"))
            .addressing(Addressing::Virtual)
            .ca_file(&certs.ca_file),
    )
    .unwrap();
    let job = up.start(&files.batch()).unwrap();
    let p = finish(&job, 30);
    assert_eq!(p.state, JobState::Succeeded, "{:?}", p.error);
    files.verify_all(&server.store());
    let names = front.names();
    assert!(!names.is_empty());
    assert!(
        names
            .iter()
            .all(|n| n.as_deref() == Some(bucket_host.as_str())),
        "{names:?}"
    );
}

//! The transport against real servers and the fault proxy: large bodies
//! ask first (`Expect: 100-continue`), so a refusal costs no body and no
//! wait; bodiless requests still say their length.

use std::time::{Duration, Instant};

use batchput::{ErrorKind, Integrity, JobState, Uploader};

use crate::support::proxy::{Action, Match, Proxy, Rule};
use crate::support::{self, finish, make_files, specs, MIB};

#[test]
fn a_large_body_refused_before_it_is_sent_costs_no_body_and_no_wait() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    // The front end refuses the PUT from its head alone, and never reads a
    // body: without the expectation, the client would push 8 MiB into a
    // connection nobody reads and wait out its request timeout.
    proxy.add_rule(Rule::new(
        Match::method("PUT"),
        Action::respond(403, "AccessDenied", "Access Denied"),
    ));
    let files = make_files(&specs(&[("refused/big", 8 * MIB)]));
    let up = Uploader::new(
        server
            .config_via(&proxy.endpoint())
            .request_timeout(Duration::from_secs(20))
            // No integrity probe: its requests would meet the refusal too.
            .integrity(Integrity::EtagMd5),
    )
    .unwrap();
    let started = Instant::now();
    let job = up.start(&files.batch()).unwrap();
    let p = finish(&job, 60);
    let took = started.elapsed();
    assert_eq!(p.state, JobState::Failed);
    let e = p.error.unwrap();
    assert_eq!(e.kind(), ErrorKind::Server, "{e}");
    assert_eq!(e.code(), Some("AccessDenied"), "{e}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let puts: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|e| e.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 1, "AccessDenied is not retried: {puts:?}");
    assert_eq!(puts[0].body_len, 0, "no byte of the body was sent");
    files.assert_absent(&server.store(), 0);
}

#[test]
fn large_bodies_go_through_servers_that_answer_the_expectation() {
    for server in support::servers() {
        let proxy = Proxy::start(&server.endpoint);
        let files = make_files(&specs(&[
            ("expect/one", 3 * MIB),
            ("expect/parts", 11 * MIB),
        ]));
        let up = Uploader::new(support::small_parts(server.config_via(&proxy.endpoint()))).unwrap();
        let job = up.start(&files.batch()).unwrap();
        let p = finish(&job, 120);
        server.assert_succeeded(&p);
        files.verify_all(&server.store());
        server.assert_no_open_uploads();
        // The large bodies asked first; the small ones (the last part) did not.
        let puts: Vec<_> = proxy
            .log()
            .into_iter()
            .filter(|e| e.method == "PUT")
            .collect();
        let asked = |e: &crate::support::proxy::Entry| e.has_header("expect");
        assert!(
            puts.iter().filter(|e| e.body_len > MIB as u64).all(asked),
            "{:?}: a large body went without asking: {puts:?}",
            server.kind
        );
        assert!(
            puts.iter()
                .filter(|e| e.body_len <= MIB as u64)
                .all(|e| !asked(e)),
            "{:?}: a small body asked: {puts:?}",
            server.kind
        );
    }
}

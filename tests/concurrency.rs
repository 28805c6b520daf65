//! `workers=auto`: requests in flight grow where the link rewards them
//! (every request delayed, as on a link with a long round trip), stay at
//! a fixed count when asked for one, and back off when the server says
//! SlowDown. Measured at the fault proxy (requests in flight at once), not
//! by timing.

use std::time::Duration;

use batchput::store::{Body, SentChecksum, Store};
use batchput::{Integrity, JobState, Uploader};

use crate::support::proxy::{peak_in_flight, timeline, Action, Match, Proxy, Rule};
use crate::support::{self, finish, make_files, Files};

/// 600 small files, each a PutObject.
fn small_files() -> Files {
    let specs: Vec<(String, usize)> = (0..600).map(|i| (format!("c/{i:04}"), 2048)).collect();
    make_files(&specs)
}

/// Every PutObject waits 60 ms at the proxy: a round trip of a far server.
fn far(proxy: &Proxy) {
    proxy.add_rule(Rule::new(
        Match::method("PUT"),
        Action::Delay(Duration::from_millis(60)),
    ));
}

/// Uploads [`small_files`] through `proxy` with `cfg`'s concurrency and
/// checks that every object arrived whole.
fn upload_small_files(
    server: &support::Server,
    cfg: impl FnOnce(batchput::Config) -> batchput::Config,
    proxy: &Proxy,
    timeout_secs: u64,
) {
    let files = small_files();
    let up = Uploader::new(cfg(server.config_via(&proxy.endpoint()))).unwrap();
    let job = up.start(&files.batch()).unwrap();
    let p = finish(&job, timeout_secs);
    assert_eq!(p.state, JobState::Succeeded, "{:?}", p.error);
    files.verify_all(&server.store());
}

#[test]
fn auto_grows_requests_in_flight_on_a_slow_link() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    far(&proxy);
    upload_small_files(&server, |c| c, &proxy, 120);
    let peak = peak_in_flight(&proxy.log(), |e| e.method == "PUT");
    assert!(peak > 24, "auto kept at most {peak} requests in flight");
    assert!(peak <= 256, "auto went past max_workers: {peak}");
}

#[test]
fn auto_starts_high_on_a_store_whose_every_answer_is_late() {
    // Every request waits 300 ms at the proxy, the integrity probe's too:
    // the client knows the round trip before the job sends a file, and
    // starts at what it needs (max_workers, 256) instead of at 16, where
    // the climb would keep it until an answer came. The first answer comes
    // 300 ms after the first PUT: time for a loaded 2-core CI to send far
    // more than 64 (with 60 ms, one CI run sent only 39).
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    proxy.add_rule(Rule::new(
        Match::any(),
        Action::Delay(Duration::from_millis(300)),
    ));
    upload_small_files(&server, |c| c, &proxy, 120);
    let puts: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|e| e.method == "PUT" && !e.is_probe())
        .collect();
    let first_answered = puts.iter().filter_map(|e| e.finished).min().unwrap();
    let before_any_answer = puts.iter().filter(|e| e.started < first_answered).count();
    assert!(
        before_any_answer > 64,
        "only {before_any_answer} PUTs went out before the first answer"
    );
    let peak = peak_in_flight(&puts, |_| true);
    assert!(peak <= 256, "auto went past max_workers: {peak}");
}

#[test]
fn a_fixed_count_is_kept() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    far(&proxy);
    upload_small_files(&server, |c| c.workers(8), &proxy, 120);
    let peak = peak_in_flight(&proxy.log(), |e| e.method == "PUT");
    assert!(peak <= 8, "{peak} requests in flight with workers=8");
}

#[test]
fn slow_down_answers_cut_requests_in_flight() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    // At most 16, where `auto` starts: neither the start from the round
    // trip nor the climb can lift the limit above where the refusals find
    // it. On a loaded machine even loopback's shortest answer can exceed
    // the 2.5 ms of a near store (a CI-like run: requests of 60 ms took
    // 430), and `auto` took the proxy for a far store and began higher
    // (34, 62 and 20 in flight after the refusals in runs that failed).
    // The server refuses the job's first three PUTs with 503 SlowDown:
    // one window sees them, and cuts the limit once.
    proxy.add_rule(
        Rule::new(
            Match::file_puts(),
            Action::respond(503, "SlowDown", "Please reduce your request rate."),
        )
        .times(3),
    );
    far(&proxy);
    upload_small_files(&server, |c| c.workers_auto(16), &proxy, 180);
    // The refusals came while 16 were out; they cut the limit to 10, held
    // for 6 s. A second after the last one, at most 10 are in flight: the
    // threads at work, not only the tasks handed out, fell to the limit
    // (with small tasks queued behind the requests in flight, a thread done
    // with one takes the next: it took `draining` for them to become
    // fewer; 10, 12 and 10 in three runs without it, 10 every time with).
    let log: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|e| e.method == "PUT" && !e.is_probe())
        .collect();
    let last_refusal = log
        .iter()
        .filter(|e| e.status == Some(503))
        .map(|e| e.started)
        .max()
        .expect("refusals were logged");
    let later: Vec<_> = log
        .iter()
        .filter(|e| {
            e.started > last_refusal + Duration::from_secs(1)
                && e.started < last_refusal + Duration::from_secs(2)
        })
        .cloned()
        .collect();
    let peak = peak_in_flight(&later, |_| true);
    assert!(
        (1..=10).contains(&peak),
        "{peak} in flight a second after SlowDown:\n{}",
        timeline(&log)
    );
}

#[test]
fn a_front_that_delays_new_connections_does_not_make_a_near_store_look_far() {
    // A TLS front (or load balancer) reaches the server only when a client
    // connects, so each new connection's first answer is late: through
    // stunnel on loopback, 6-23 ms against 0.5 ms and up for the next
    // ones. Here 40 ms. A job that does not probe (integrity set) sends
    // its first 16 PUTs on new connections; timed, their answers made
    // `auto` take loopback for a far store and start at 256 (then every
    // answer queued at the server, so the start stood). Only answers on
    // reused connections tell the round trip.
    let server = support::s3s_in_memory();
    let proxy = Proxy::start(&server.endpoint);
    proxy.add_rule(Rule::new(
        Match::first_on_connection(),
        Action::HoldAnswer(Duration::from_millis(40)),
    ));
    let specs: Vec<(String, usize)> = (0..1000).map(|i| (format!("f/{i:04}"), 1024)).collect();
    let files = make_files(&specs);
    let cfg = server
        .config_via(&proxy.endpoint())
        .integrity(Integrity::EtagMd5);
    let up = Uploader::new(cfg).unwrap();
    let p = finish(&up.start(&files.batch()).unwrap(), 180);
    assert_eq!(p.state, JobState::Succeeded, "{:?}", p.error);
    files.verify_all(&server.store());
    let mut log: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|e| e.method == "PUT")
        .collect();
    assert!(log.iter().any(|e| e.injected), "no answer was held");
    log.sort_by_key(|e| e.started);
    // Timing it on reused connections, `auto` may still start above 16
    // from a reused connection's answer slowed by the machine's load (43
    // from 6.7 ms in one run), then follows shorter answers down. Timing
    // it on new ones, 185-217 in flight, to the end.
    let peak = peak_in_flight(&log, |_| true);
    let second_half = peak_in_flight(&log[log.len() / 2..], |_| true);
    assert!(
        peak <= 64 && second_half <= 32,
        "{peak} in flight on a near store, {second_half} in the second half of the job:\n{}",
        timeline(&log)
    );
}

#[test]
fn a_slow_listing_does_not_make_a_near_store_look_far() {
    // A listing's answer waits for the server to walk its keys (s3s-fs
    // takes about 40 ms per 1,000 on loopback): work, not distance. A
    // download of a prefix begins with one; were it timed as a round
    // trip, `auto` would start that download at 256 requests in flight
    // on loopback, as it did.
    let server = support::s3s();
    server
        .store()
        .put_object("c/0", Body::Bytes(b"x"), SentChecksum::None, 0)
        .unwrap();
    let proxy = Proxy::start(&server.endpoint);
    proxy.add_rule(Rule::new(
        Match::method("GET").and_query("list-type=2"),
        Action::Delay(Duration::from_millis(60)),
    ));
    let store = Store::new(&server.config_via(&proxy.endpoint())).unwrap();
    assert_eq!(store.list_objects("c/").unwrap().len(), 1);
    assert_eq!(store.answer_floor(), None, "the listing was timed");
    assert!(store.head_object("c/0").unwrap().is_some());
    assert!(store.answer_floor().is_some(), "the HEAD was not timed");
}

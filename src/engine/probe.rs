//! `integrity=auto`: which integrity mode a job gets.
//!
//! CRC32C sent as `x-amz-checksum-crc32c` costs a cheap pre-pass over each
//! part, and the server checks it before it stores anything; MD5 against
//! the ETag costs a hash of every byte on our side. Which one is safe
//! depends on the store: one that ignores the header would check nothing.
//! So, once per uploader and endpoint, before the first job sends data, a
//! probe asks: CreateMultipartUpload with `x-amz-checksum-algorithm:
//! CRC32C` at a key in the batch's own key space (the first key plus
//! `.batchput-probe-<random>`, so it needs no permission the upload does
//! not), a tiny part with the right checksum, one with a wrong checksum,
//! then AbortMultipartUpload checked with ListParts. It never completes, so
//! it never creates an object. The abort and its check run beside the job,
//! which waits for them only before it ends: the verdict is known after the
//! parts, and a far store's two round trips more came before the first
//! file (2,000 x 64 KiB through 40 ms of round trip: `auto` 1.50 s against
//! 1.20 s for `etag-md5`, which does not probe; bench/NOTES.md).
//!
//! A store that accepts the right part and refuses the wrong one verifies
//! CRC32C: `crc32c`. One that accepts the wrong part, or refuses the
//! algorithm or the right part (OBS, OSS and older MinIO refuse what they
//! do not know), does not: `etag-md5`. Every byte stays verified end to
//! end either way. A probe that gets no such answer (network error, 403,
//! 5xx, a stop) leaves that job on `etag-md5` with a warning and is not
//! remembered, so the next job asks again.
//!
//! The probe is the job's first act, on the coordinator thread. A stop cuts
//! it like any request (a CreateMultipartUpload already sent gets a moment
//! to answer, so its upload can be aborted); its abort then runs within the
//! cleanup budget, as the job's own cleanup does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use super::abort::{abort_and_verify_until, abort_strays, cleanup_scope};
use super::retry::random_below;
use super::Engine;
use crate::config::{Config, Integrity, MAX_KEY_LEN};
use crate::error::{Error, Result};
use crate::store::interrupt::{in_scope, Interrupt, Scope};
use crate::store::{Body, SentChecksum, Store};

/// What the probe's parts carry: a few bytes (a part that is never
/// completed may be smaller than S3's 5 MiB minimum).
const PROBE_BODY: &[u8] = b"batchput integrity probe";

/// What the probe's key adds to the batch's first key.
pub(crate) const PROBE_SUFFIX: &str = ".batchput-probe-";

/// The probe's requests wait at most this long to connect and for each
/// read or write (less when the configured request, connect or stall
/// timeouts are shorter): a job should not wait long for an optimisation.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stop lets the probe's CreateMultipartUpload answer (see
/// [`follow_stop`]).
const CREATE_GRACE: Duration = Duration::from_secs(1);

/// What one endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// It refused the part with the wrong checksum and took the right one.
    Verifies,
    /// It does not verify CRC32C (why, for the log).
    DoesNotVerify(String),
}

/// The mode of a job whose first file to send has `key`: the configured
/// one, or for `auto` what the endpoints answered (probing those not asked
/// yet). Never `Auto`.
///
/// One mode for the whole job, the weakest any endpoint allows: a request
/// may fail over to any node of a cluster, and a part sent with a CRC32C
/// must go to an upload created with that algorithm and to a node that
/// checks it. The nodes of one cluster run the same software, so in
/// practice they agree and nothing is lost.
///
/// The probes' aborts run on threads of their own, whose handles go to
/// `cleanups`: the job joins them before it ends.
pub(crate) fn job_integrity(
    engine: &Engine,
    key: &str,
    interrupt: &Arc<Interrupt>,
    cleanups: &mut Vec<JoinHandle<()>>,
) -> Integrity {
    let configured = engine.cfg.integrity;
    if configured != Integrity::Auto {
        log::info!("integrity: {configured} (configured)");
        return configured;
    }
    let urls = engine.store.endpoint_urls();
    let mut mode = Integrity::Crc32c;
    for (i, url) in urls.iter().enumerate() {
        // Only the coordinator thread probes, so no two probes race; the
        // lock is not held while one runs.
        let known = engine.probed.lock()[i];
        let answer = match known {
            Some(answer) => answer,
            None => match probe(engine, i, key, interrupt, cleanups) {
                Ok(Verdict::Verifies) => {
                    log::info!("integrity auto: {url} verifies x-amz-checksum-crc32c");
                    engine.probed.lock()[i] = Some(Integrity::Crc32c);
                    Integrity::Crc32c
                }
                Ok(Verdict::DoesNotVerify(why)) => {
                    log::info!(
                        "integrity auto: {url} does not verify x-amz-checksum-crc32c: {why}"
                    );
                    engine.probed.lock()[i] = Some(Integrity::EtagMd5);
                    Integrity::EtagMd5
                }
                Err(e) if interrupt.is_cancelled() => {
                    log::debug!("integrity auto: the probe of {url} was cut off: {e}");
                    Integrity::EtagMd5
                }
                Err(e) => {
                    log::warn!(
                        "integrity auto: could not ask {url} whether it verifies CRC32C \
                         ({e}); this job checks MD5 against the ETag (etag-md5)"
                    );
                    Integrity::EtagMd5
                }
            },
        };
        if answer != Integrity::Crc32c {
            // The job's mode is decided; the other endpoints need not be asked.
            mode = Integrity::EtagMd5;
            break;
        }
    }
    log::info!("integrity: {mode} (auto)");
    mode
}

/// The probe's key: `first` plus the suffix, cut at a character boundary
/// if the whole would be longer than S3 allows.
pub(crate) fn probe_key(first: &str) -> String {
    let suffix = format!("{PROBE_SUFFIX}{:016x}", random_below(u64::MAX));
    let mut cut = first.len().min(MAX_KEY_LEN - suffix.len());
    while !first.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &first[..cut])
}

/// Asks endpoint `index`. `Err` when it gave no answer that tells. The
/// abort of the upload it made runs on a thread of its own (its handle put
/// in `cleanups`), or here if no thread can be had.
fn probe(
    engine: &Engine,
    index: usize,
    first: &str,
    job: &Arc<Interrupt>,
    cleanups: &mut Vec<JoinHandle<()>>,
) -> Result<Verdict> {
    let cfg = &engine.cfg;
    let store = engine.store.pinned(index);
    let key = probe_key(first);
    let own = Arc::new(Interrupt::new());
    let creating = AtomicBool::new(true);
    let done = AtomicBool::new(false);
    let started = std::time::SystemTime::now();
    // A server silent for the stall timeout would stall the job anyway:
    // the probe gives up no later.
    let probe_timeout = PROBE_TIMEOUT.min(cfg.stall_timeout);
    let (created, verdict) = std::thread::scope(|s| {
        let watcher = std::thread::Builder::new()
            .name("batchput-probe".into())
            .spawn_scoped(s, || follow_stop(job, &own, &creating, &done));
        let scope = Scope {
            // Without a watcher, a stop cuts the probe at once.
            interrupt: if watcher.is_ok() {
                own.clone()
            } else {
                job.clone()
            },
            io_timeout: Some(cfg.request_timeout.min(probe_timeout)),
            connect_timeout: Some(cfg.connect_timeout.min(probe_timeout)),
            fresh_connections: false,
            gentle: false,
        };
        let created = in_scope(&scope, || store.create_multipart_upload_with(&key, true, 0));
        creating.store(false, Ordering::Relaxed);
        let verdict = created
            .as_ref()
            .ok()
            .map(|id| in_scope(&scope, || parts(&store, &key, id)));
        done.store(true, Ordering::Relaxed);
        (created, verdict)
    });
    let upload_id = match created {
        Ok(id) => id,
        Err(e) if refused(&e) => {
            return Ok(Verdict::DoesNotVerify(format!(
                "it refused CreateMultipartUpload with x-amz-checksum-algorithm CRC32C: {e}"
            )))
        }
        Err(e) => {
            if e.outcome_unknown() {
                // The server may have made an upload whose id we never
                // learnt: find it where the store lists uploads (best effort,
                // it warns where it cannot).
                within_budget(cfg, |_| {
                    let _ = abort_strays(&engine.store, &key, None, started);
                });
            }
            return Err(e);
        }
    };
    // Whatever happened, the upload goes: beside the job, which needs
    // only the verdict.
    let abort = {
        let (cfg, store) = (cfg.clone(), engine.store.clone());
        move || {
            let aborted = within_budget(&cfg, |give_up| {
                abort_and_verify_until(&store, &key, &upload_id, give_up)
            });
            if let Err(e) = aborted {
                log::error!("integrity auto: {e}");
            }
        }
    };
    // Handed over once the thread exists: a spawn that fails drops its
    // closure, and the abort must still run.
    let (tx, rx) = crossbeam_channel::bounded::<Box<dyn FnOnce() + Send>>(1);
    let spawned = std::thread::Builder::new()
        .name("batchput-probe-abort".into())
        .spawn(move || {
            if let Ok(abort) = rx.recv() {
                abort();
            }
        });
    match spawned {
        Ok(handle) => {
            let _ = tx.send(Box::new(abort));
            cleanups.push(handle);
        }
        Err(e) => {
            log::debug!("integrity auto: no thread for the probe's abort ({e}): it runs now");
            abort();
        }
    }
    verdict.unwrap_or_else(|| {
        Err(Error::internal(
            "the probe created an upload and sent no part",
        ))
    })
}

/// Passes a stop of the job (`job` cancelled) on to the probe's own
/// requests (`own`) until `done`: at once, except while the
/// CreateMultipartUpload is out, which gets [`CREATE_GRACE`] to answer.
/// Cut while the server acts on it, it would leave an upload whose id we
/// never learn, found afterwards only where the store lists uploads.
fn follow_stop(job: &Interrupt, own: &Interrupt, creating: &AtomicBool, done: &AtomicBool) {
    const POLL: Duration = Duration::from_millis(10);
    while !done.load(Ordering::Relaxed) {
        if job.is_cancelled() {
            let until = Instant::now() + CREATE_GRACE;
            while creating.load(Ordering::Relaxed)
                && !done.load(Ordering::Relaxed)
                && Instant::now() < until
            {
                std::thread::sleep(POLL);
            }
            own.cancel();
            return;
        }
        std::thread::sleep(POLL);
    }
}

/// Runs the probe's cleanup as the job's own runs: in a scope of its own
/// (a stop that cut the probe must not keep it from removing what the probe
/// made), cut off when the cleanup budget (`cleanup_timeout_ms`) runs out.
/// `f` gets the flag that says it ran out. A scoped watchdog thread, joined
/// before this returns, keeps the time.
fn within_budget<R>(cfg: &Config, f: impl FnOnce(&AtomicBool) -> R) -> R {
    let budget = Arc::new(Interrupt::new());
    let scope = cleanup_scope(budget.clone(), cfg.request_timeout);
    let (done, watch) = crossbeam_channel::bounded::<()>(0);
    std::thread::scope(|s| {
        let b = &budget;
        let watchdog = std::thread::Builder::new()
            .name("batchput-probe-cleanup".into())
            .spawn_scoped(s, move || {
                if watch.recv_timeout(cfg.cleanup_timeout) == Err(RecvTimeoutError::Timeout) {
                    log::warn!("integrity auto: the cleanup budget (cleanup_timeout_ms) ran out");
                    b.cancel();
                }
            });
        if let Err(e) = watchdog {
            // Still bounded, by the short timeouts of the cleanup scope.
            log::debug!("integrity auto: no watchdog for the cleanup: {e}");
        }
        let result = in_scope(&scope, || f(budget.flag()));
        drop(done);
        result
    })
}

/// The two parts: the right checksum must be taken, the wrong one refused.
fn parts(store: &Store, key: &str, upload_id: &str) -> Result<Verdict> {
    let right = crc32c::crc32c(PROBE_BODY);
    let send = |number: u32, crc: u32| {
        store.upload_part(
            key,
            upload_id,
            number,
            Body::Bytes(PROBE_BODY),
            SentChecksum::Crc32c(crc),
            0,
        )
    };
    match send(1, right) {
        Ok(_) => {}
        Err(e) if refused(&e) => {
            return Ok(Verdict::DoesNotVerify(format!(
                "it refused a part with the right x-amz-checksum-crc32c: {e}"
            )))
        }
        Err(e) => return Err(e),
    }
    match send(2, !right) {
        Ok(_) => Ok(Verdict::DoesNotVerify(
            "it accepted a part with a wrong x-amz-checksum-crc32c".into(),
        )),
        Err(e) if refused(&e) => Ok(Verdict::Verifies),
        Err(e) => Err(e),
    }
}

/// An answer that is the server's verdict on the request itself (400 Bad
/// Request: BadDigest, InvalidRequest, InvalidArgument,
/// XAmzContentChecksumMismatch...; 501 Not Implemented), not on our
/// credentials, the bucket or its own health.
fn refused(e: &Error) -> bool {
    matches!(e.status(), Some(400) | Some(501))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_key_extends_the_first_key_within_the_limit() {
        let k = probe_key("photos/2024/a.jpg");
        assert!(k.starts_with("photos/2024/a.jpg.batchput-probe-"), "{k}");
        assert_eq!(k.len(), "photos/2024/a.jpg".len() + PROBE_SUFFIX.len() + 16);
        assert_ne!(probe_key("x"), probe_key("x"), "random");
        // At the limit, the first key is cut, on a character boundary.
        let long = "é".repeat(MAX_KEY_LEN / 2);
        let k = probe_key(&long);
        assert!(k.len() <= MAX_KEY_LEN, "{}", k.len());
        assert!(k.starts_with("éé"));
        assert!(k.contains(PROBE_SUFFIX));
    }
}

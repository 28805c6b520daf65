//! Ending multipart uploads for good: abort, then check with ListParts that
//! the upload is gone (an abort racing an in-flight part can leave that
//! part behind, billed), repeating both until the server confirms; finding
//! the uploads a CreateMultipartUpload whose answer was lost may have made;
//! and the scope cleanup requests run in.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::rate::sleep_unless_cancelled;
use super::retry::backoff;
use crate::error::{Error, ErrorKind, Result};
use crate::store::interrupt::{Interrupt, Scope};
use crate::store::Store;

/// How many times cleanup tries to abort an upload and see it gone.
const ABORT_ATTEMPTS: u32 = 6;

/// The scope cleanup requests run in: their own interrupt (the budget's),
/// new connections (pooled ones may lead to the server that just failed),
/// and short timeouts so one hung request cannot eat the budget.
pub(crate) fn cleanup_scope(interrupt: Arc<Interrupt>, request_timeout: Duration) -> Scope {
    let short = request_timeout.min(Duration::from_secs(5));
    Scope {
        interrupt,
        io_timeout: Some(short),
        connect_timeout: Some(short),
        fresh_connections: true,
        gentle: false,
    }
}

/// Aborts the uploads of exactly `key` initiated since `since` (a minute of
/// clock skew allowed), except `keep`: the ones a CreateMultipartUpload
/// whose answer was lost may have made. Best effort: a store that cannot
/// list uploads (OSS, s3s) leaves them to `batchput cleanup`. Returns how
/// many it aborted.
pub(crate) fn abort_strays(
    store: &Store,
    key: &str,
    keep: Option<&str>,
    since: std::time::SystemTime,
) -> Result<usize> {
    let since = since - Duration::from_secs(60);
    let listed = store.list_multipart_uploads(key).inspect_err(|e| {
        log::warn!(
            "CreateMultipartUpload of '{key}' got no answer and the uploads of that key cannot be \
             listed ({e}): if the server made one, `batchput cleanup --prefix '{key}'` will find it"
        )
    })?;
    let mut aborted = 0;
    for u in listed {
        let recent = u.initiated.is_none_or(|t| t >= since);
        if u.key == key && Some(u.upload_id.as_str()) != keep && recent {
            log::warn!(
                "aborting upload {} of '{key}', made by a CreateMultipartUpload whose answer was lost",
                u.upload_id
            );
            abort_and_verify(store, key, &u.upload_id)?;
            aborted += 1;
        }
    }
    Ok(aborted)
}

/// How an abort ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AbortOutcome {
    /// We aborted it, and ListParts confirms it is gone.
    Aborted,
    /// The server did not know the upload at our first abort: someone (a
    /// CompleteMultipartUpload whose answer was lost, say) ended it first.
    AlreadyGone,
}

/// Aborts an upload and checks it is gone with ListParts, repeating both
/// until the server confirms: an abort racing an in-flight part can leave
/// that part behind, billed. NoSuchUpload (or, on servers that list an
/// unknown upload as empty, no parts) is the confirmation.
pub(crate) fn abort_and_verify(store: &Store, key: &str, upload_id: &str) -> Result<()> {
    abort_and_verify_until(store, key, upload_id, &AtomicBool::new(false)).map(|_| ())
}

/// [`abort_and_verify`] that gives up when `give_up` is set (cleanup's
/// budget ran out), and says whether it was us who ended the upload.
pub(crate) fn abort_and_verify_until(
    store: &Store,
    key: &str,
    upload_id: &str,
    give_up: &AtomicBool,
) -> Result<AbortOutcome> {
    let mut last = None;
    let mut outcome = None;
    for attempt in 1..=ABORT_ATTEMPTS {
        if give_up.load(Ordering::Relaxed) {
            break;
        }
        match store.abort_multipart_upload(key, upload_id, attempt as usize) {
            Ok(()) => {
                outcome.get_or_insert(AbortOutcome::Aborted);
            }
            Err(e) if e.code() == Some("NoSuchUpload") => {
                outcome.get_or_insert(AbortOutcome::AlreadyGone);
            }
            Err(e) => {
                last = Some(e);
                sleep_unless_cancelled(backoff(attempt, false), give_up);
                continue;
            }
        }
        let done = outcome.unwrap_or(AbortOutcome::Aborted);
        match store.list_parts(key, upload_id, attempt as usize) {
            Err(e) if e.code() == Some("NoSuchUpload") => return Ok(done),
            Ok(parts) if parts.is_empty() => return Ok(done),
            Ok(parts) => {
                log::warn!(
                    "upload {upload_id} of '{key}' still lists {} part(s) after abort; aborting again",
                    parts.len()
                );
                last = Some(Error::new(
                    ErrorKind::Server,
                    format!("{} part(s) still listed after abort", parts.len()),
                ));
            }
            Err(e) => last = Some(e),
        }
        sleep_unless_cancelled(backoff(attempt, false), give_up);
    }
    let why = match (&last, give_up.load(Ordering::Relaxed)) {
        (Some(e), true) => format!("the cleanup budget ran out; last: {e}"),
        (None, true) => "the cleanup budget ran out".to_string(),
        (Some(e), false) => format!("after {ABORT_ATTEMPTS} attempts: {e}"),
        (None, false) => format!("after {ABORT_ATTEMPTS} attempts"),
    };
    Err(Error::new(
        ErrorKind::Server,
        format!(
            "could not abort upload {upload_id} of '{key}' ({why}); it is still open and billed: \
             `batchput cleanup` or a resume of the journal will find it"
        ),
    )
    .with_operation("AbortMultipartUpload")
    .with_key(key))
}

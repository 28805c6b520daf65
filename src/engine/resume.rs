//! Resume: from what a journal recorded to what is left to do, with the
//! server as the truth.
//!
//! For each file: done files stay done. A file that changed since (size or
//! mtime) restarts, its old upload aborted. An open upload is reconciled
//! with ListParts: a part the server has with the ETag the journal recorded,
//! or with the MD5 of our bytes, is kept; any other part is sent again. An
//! upload that vanished may have completed after the journal's last sync:
//! HeadObject tells. An upload whose creation was under way when the
//! process died is looked for (ListMultipartUploads on its exact key) and
//! aborted, so no orphan stays billed.

use std::os::unix::fs::FileExt;

use md5::{Digest, Md5};

use super::abort::abort_and_verify;
use super::coordinator::{DonePart, Prior};
use super::etag::{hex, is_md5_hex, multipart_etag};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::journal::{unchanged, Journal, Recorded, RecordedFile};
use crate::plan::FilePlan;
use crate::store::Store;

/// Decides, file by file, what a resumed job starts from.
pub(crate) fn reconcile(
    store: &Store,
    cfg: &Config,
    recorded: &Recorded,
    journal: &mut Journal,
) -> Result<(Vec<FilePlan>, Vec<Prior>)> {
    if recorded.download {
        return super::download::resume::reconcile(store, recorded, journal);
    }
    let mut plans = Vec::with_capacity(recorded.files.len());
    let mut priors = Vec::with_capacity(recorded.files.len());
    for (i, rec) in recorded.files.iter().enumerate() {
        let (plan, prior) = reconcile_file(store, cfg, recorded, journal, i, rec)?;
        plans.push(plan);
        priors.push(prior);
    }
    journal.flush(true)?;
    Ok((plans, priors))
}

fn reconcile_file(
    store: &Store,
    cfg: &Config,
    recorded: &Recorded,
    journal: &mut Journal,
    i: usize,
    rec: &RecordedFile,
) -> Result<(FilePlan, Prior)> {
    let plan = &rec.plan;
    if let Some(etag) = &rec.done {
        return Ok((plan.clone(), Prior::Done { etag: etag.clone() }));
    }
    if !unchanged(plan)? {
        // Another version of the file: none of its old parts may be used.
        log::info!(
            "{} changed since it was recorded: uploading it anew",
            plan.path.display()
        );
        if let Some(id) = &rec.upload_id {
            abort_and_verify(store, &plan.key, id)?;
            journal.aborted(i, id);
        } else if rec.intended && plan.multipart {
            abort_orphans(store, recorded, &plan.key);
        }
        let fresh = replan(plan, cfg)?;
        journal.replanned(i, &fresh);
        return Ok((fresh, Prior::Fresh));
    }
    let prior = reconcile_unchanged(store, recorded, rec)?;
    Ok((plan.clone(), prior))
}

/// The plan of a file as it is now: one file of `plan::plan`.
fn replan(old: &FilePlan, cfg: &Config) -> Result<FilePlan> {
    let mut plans = crate::plan::plan(&[(old.path.clone(), old.key.clone())], cfg)?;
    Ok(plans.remove(0))
}

/// An unchanged file: keep what the server has of it.
fn reconcile_unchanged(store: &Store, recorded: &Recorded, rec: &RecordedFile) -> Result<Prior> {
    let plan = &rec.plan;
    if !plan.multipart {
        if rec.intended {
            // Its PUT may have landed after the journal's last sync.
            if let Some(obj) = store.head_object(&plan.key)? {
                if obj.etag == hex(&md5_of(plan, 0, plan.size)?) {
                    return Ok(Prior::Done { etag: obj.etag });
                }
            }
        }
        return Ok(Prior::Fresh);
    }
    if let Some(id) = &rec.upload_id {
        return match store.list_parts(&plan.key, id, 0) {
            // Nothing listed: the upload may be gone (s3s-fs lists an
            // unknown upload as empty instead of NoSuchUpload), so it is
            // treated as gone: nothing of it would be lost.
            Ok(listed) if listed.is_empty() => {
                let prior = completed_unrecorded(store, rec, plan)?;
                if matches!(prior, Prior::Fresh) {
                    if let Err(e) = abort_and_verify(store, &plan.key, id) {
                        log::warn!("{e}");
                    }
                }
                Ok(prior)
            }
            Ok(listed) => {
                let mut parts = vec![None; plan.parts as usize];
                for lp in listed {
                    let n = lp.number;
                    if n == 0 || n > plan.parts || lp.size != plan.part_range(n).1 {
                        continue;
                    }
                    // Some servers (s3s-fs) list parts without ETags: then
                    // the ETag the server gave when it acknowledged the
                    // part, kept in the journal, is the best evidence.
                    let journal_part = rec
                        .parts
                        .get(&n)
                        .filter(|p| p.etag == lp.etag || lp.etag.is_empty());
                    let kept = match journal_part {
                        Some(p) => Some(DonePart {
                            etag: p.etag.clone(),
                            md5: p.md5,
                            crc32c: p.crc32c,
                        }),
                        // The journal lost it (not yet synced): keep it if
                        // the server's MD5 ETag is the MD5 of our bytes.
                        None if is_md5_hex(&lp.etag) => {
                            let (off, len) = plan.part_range(n);
                            let md5 = md5_of(plan, off, len)?;
                            (hex(&md5) == lp.etag).then(|| DonePart {
                                etag: lp.etag.clone(),
                                md5: Some(md5),
                                crc32c: None,
                            })
                        }
                        None => None,
                    };
                    parts[n as usize - 1] = kept;
                }
                Ok(Prior::Upload {
                    upload_id: id.clone(),
                    parts,
                })
            }
            Err(e) if e.code() == Some("NoSuchUpload") => completed_unrecorded(store, rec, plan),
            Err(e) => Err(e),
        };
    }
    if rec.intended {
        abort_orphans(store, recorded, &plan.key);
    }
    Ok(Prior::Fresh)
}

/// An upload that is gone: completed after the journal's last sync (the
/// object's ETag is the one its recorded parts make, or, for parts sent
/// with CRC32Cs and no MD5, its stored checksum is the one their CRC32Cs
/// make), or aborted.
fn completed_unrecorded(store: &Store, rec: &RecordedFile, plan: &FilePlan) -> Result<Prior> {
    let md5s: Option<Vec<[u8; 16]>> = (1..=plan.parts)
        .map(|n| rec.parts.get(&n).and_then(|p| p.md5))
        .collect();
    if let Some(md5s) = md5s {
        if let Some(obj) = store.head_object(&plan.key)? {
            if obj.etag == multipart_etag(&md5s) {
                return Ok(Prior::Done { etag: obj.etag });
            }
        }
        return Ok(Prior::Fresh);
    }
    let crcs: Option<Vec<u32>> = (1..=plan.parts)
        .map(|n| rec.parts.get(&n).and_then(|p| p.crc32c))
        .collect();
    if let Some(crcs) = crcs {
        if let Some(obj) = store.head_object_checksum(&plan.key)? {
            if obj.size == plan.size && obj.crc32c.as_deref() == Some(&multipart_crc32c(&crcs)) {
                return Ok(Prior::Done { etag: obj.etag });
            }
        }
    }
    Ok(Prior::Fresh)
}

/// The checksum S3 stores for a multipart object uploaded with CRC32Cs:
/// the CRC32C of the parts' CRC32Cs (big-endian), base64, then `-N`.
fn multipart_crc32c(part_crcs: &[u32]) -> String {
    let mut all = Vec::with_capacity(part_crcs.len() * 4);
    for c in part_crcs {
        all.extend_from_slice(&c.to_be_bytes());
    }
    format!(
        "{}-{}",
        crate::store::crc32c_base64(crc32c::crc32c(&all)),
        part_crcs.len()
    )
}

/// Aborts uploads on exactly `key` that the journal does not know: a
/// CreateMultipartUpload whose answer the dead process never recorded.
///
/// Initiation dates are not used to tell ours from others': some servers
/// (moto) report a fixed date. Another writer's upload to exactly this key
/// would race ours to the same object, which our complete overwrites anyway.
fn abort_orphans(store: &Store, recorded: &Recorded, key: &str) {
    let known: Vec<&str> = recorded
        .files
        .iter()
        .filter_map(|f| f.upload_id.as_deref())
        .collect();
    match store.list_multipart_uploads(key) {
        Ok(uploads) => {
            for u in uploads {
                if u.key == key && !known.contains(&u.upload_id.as_str()) {
                    log::info!(
                        "aborting upload {} of '{key}', orphaned by a crash",
                        u.upload_id
                    );
                    if let Err(e) = abort_and_verify(store, key, &u.upload_id) {
                        log::error!("{e}");
                    }
                }
            }
        }
        // Some stores (OSS) cannot list uploads; the janitor is the fallback.
        Err(e) => log::warn!("cannot look for an orphaned upload of '{key}': {e}"),
    }
}

/// MD5 of a byte range of the file.
fn md5_of(plan: &FilePlan, mut offset: u64, len: u64) -> Result<[u8; 16]> {
    let (file, _) = crate::plan::open_regular(&plan.path)?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    let end = offset + len;
    while offset < end {
        let n = ((end - offset) as usize).min(buf.len());
        let got = file
            .read_at(&mut buf[..n], offset)
            .map_err(|e| Error::local_io("read", &plan.path, &e))?;
        if got == 0 {
            break;
        }
        h.update(&buf[..got]);
        offset += got as u64;
    }
    Ok(h.finalize().into())
}

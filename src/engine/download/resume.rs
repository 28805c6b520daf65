//! Resume of a download: from what its journal recorded to what is left,
//! with the disk and the server as the truth.
//!
//! A finished file whose destination still holds its size stays done. An
//! unfinished one keeps the parts its journal recorded when its temporary
//! file is still there, whole, and the object still has the ETag it was
//! planned with; a replaced object is an error naming it (its parts on
//! disk belong to another version), a lost temporary file starts over.

use crate::engine::coordinator::{DonePart, Prior};
use crate::error::{Error, ErrorKind, Result};
use crate::journal::{Journal, Recorded};
use crate::plan::FilePlan;
use crate::store::Store;

pub(crate) fn reconcile(
    store: &Store,
    recorded: &Recorded,
    journal: &mut Journal,
) -> Result<(Vec<FilePlan>, Vec<Prior>)> {
    let mut plans = Vec::with_capacity(recorded.files.len());
    let mut priors = Vec::with_capacity(recorded.files.len());
    for rec in &recorded.files {
        let plan = &rec.plan;
        let object = plan
            .object
            .as_ref()
            .expect("a download journal's files are objects");
        let on_disk = |path: &std::path::Path| {
            std::fs::symlink_metadata(path)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len())
        };
        if let Some(etag) = &rec.done {
            if on_disk(&plan.path) == Some(plan.size) {
                plans.push(plan.clone());
                priors.push(Prior::Done { etag: etag.clone() });
                continue;
            }
            log::info!(
                "{} is gone or changed since it was downloaded: downloading it again",
                plan.path.display()
            );
        }
        match store.head_object(&plan.key)? {
            // Planned without an ETag (a one-GET object): its size only.
            Some(info)
                if (object.etag.is_empty() || info.etag == object.etag)
                    && info.size == plan.size => {}
            Some(info) => {
                return Err(Error::new(
                    ErrorKind::FileChanged,
                    format!(
                        "'{}' was replaced on the server since the download began (ETag {} then, {} now): \
                         start a new download",
                        plan.key, object.etag, info.etag
                    ),
                )
                .with_key(plan.key.clone()))
            }
            None => {
                return Err(Error::new(
                    ErrorKind::FileChanged,
                    format!(
                        "'{}' was deleted from bucket '{}' since the download began",
                        plan.key,
                        store.bucket()
                    ),
                )
                .with_key(plan.key.clone()))
            }
        }
        let temp = super::temp_path(&plan.path);
        let kept = rec.done.is_none() && !rec.parts.is_empty() && on_disk(&temp) == Some(plan.size);
        plans.push(plan.clone());
        if !kept {
            priors.push(Prior::Fresh);
            continue;
        }
        let parts = (1..=plan.parts)
            .map(|n| {
                rec.parts.get(&n).map(|p| DonePart {
                    etag: String::new(),
                    md5: p.md5,
                    crc32c: p.crc32c,
                })
            })
            .collect();
        // A download has no upload: the id stays empty.
        priors.push(Prior::Upload {
            upload_id: String::new(),
            parts,
        });
    }
    journal.flush(true)?;
    Ok((plans, priors))
}

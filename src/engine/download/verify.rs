//! The check a downloaded file passes before it takes its name: its bytes
//! against the object's ETag, or against its stored full-object CRC32C
//! where the ETag cannot be recomputed along the ranges fetched.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use super::{read_back_failed, Finish, RemoteObject};
use crate::engine::etag::{
    hex, is_md5_hex, is_multipart_etag, multipart_etag, multipart_etag_parts,
};
use crate::engine::worker::JobContext;
use crate::error::{Error, ErrorKind, Result};

/// How a downloaded file was checked. More checks may come: match with a
/// wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verification {
    /// The MD5 of its bytes is the object's ETag (a single-part object).
    Md5,
    /// The MD5s of its parts, along the object's own part boundaries, give
    /// the object's multipart ETag.
    MultipartEtag,
    /// Only its size and ETag at every GET: the store's ETag cannot be
    /// recomputed (encrypted objects, unknown part boundaries).
    Size,
    /// The CRC32C of its bytes is the one the store keeps for the whole
    /// object (`x-amz-checksum-type: FULL_OBJECT`).
    Crc32c,
}

impl Verification {
    /// Its name in reports: `md5`, `multipart-etag`, `size`, `crc32c`.
    pub fn name(self) -> &'static str {
        match self {
            Verification::Md5 => "md5",
            Verification::MultipartEtag => "multipart-etag",
            Verification::Size => "size",
            Verification::Crc32c => "crc32c",
        }
    }
}

/// Part sizes other uploaders commonly use (aws cli and the CRT: 8 MiB;
/// the S3 minimum 5 MiB; s5cmd 50 MiB; rclone 5 MiB...; ours 16 MiB),
/// tried when the store cannot say where an object's parts lie.
const USUAL_PART_SIZES: [u64; 6] = [8 << 20, 5 << 20, 16 << 20, 50 << 20, 64 << 20, 100 << 20];

/// At most this many part sizes are tried (each one more read of the file
/// from the page cache, eight parts at a time).
const MAX_GUESSES: usize = 3;

/// Whether the fetch of each part computes its MD5: when the parts are the
/// object's own (fetched by part number), or the object is one GET.
pub(super) fn hash_while_fetching(object: &RemoteObject, parts: u32) -> bool {
    if object.crc32c.is_some() {
        // Checked by its CRC32C, taken while it streams.
        false
    } else if object.by_part_number {
        is_multipart_etag(&object.etag) || is_md5_hex(&object.etag)
    } else if object.aligned {
        true
    } else {
        // One GET: its MD5 is the ETag (or, planned without one, what its
        // answer says the ETag is).
        parts == 1 && (is_md5_hex(&object.etag) || object.etag.is_empty())
    }
}

pub(super) fn check(
    ctx: &JobContext,
    file: &File,
    temp: &Path,
    key: &str,
    how: &Finish,
) -> Result<Verification> {
    let (Some(stored), Some(got)) = (how.object.crc32c, whole_crc32c(how)) else {
        return check_etag(ctx, file, temp, key, how);
    };
    if got == stored {
        return Ok(Verification::Crc32c);
    }
    // A store may keep a wrong full-object CRC32C (moto does for multipart
    // objects): the ETag decides where it can be recomputed. Where it
    // cannot, the mismatch stands.
    let mismatch = || {
        Error::new(
            ErrorKind::Integrity,
            format!(
                "the bytes downloaded from '{key}' do not match its stored CRC32C ({} computed, \
                 {} stored)",
                crate::store::crc32c_base64(got),
                crate::store::crc32c_base64(stored)
            ),
        )
        .with_key(key)
    };
    match check_etag(ctx, file, temp, key, how) {
        Ok(Verification::Size) => Err(mismatch()),
        Ok(by_etag) => {
            log::warn!(
                "'{key}': the store's CRC32C for it ({}) is not that of its bytes ({}), which \
                 match its ETag: checked by the ETag ({})",
                crate::store::crc32c_base64(stored),
                crate::store::crc32c_base64(got),
                by_etag.name()
            );
            Ok(by_etag)
        }
        Err(e) if e.kind() == ErrorKind::Integrity => Err(mismatch()),
        Err(e) => Err(e),
    }
}

/// The CRC32C of the whole file: the ranges' CRC32Cs taken while fetching
/// (a range fetched before a pause has its from the journal), combined in
/// order. Every range of an object checked by CRC32C records one; `None`
/// if one did not, and the ETag decides.
fn whole_crc32c(how: &Finish) -> Option<u32> {
    let part = how.part_size.max(1);
    let mut whole = 0u32;
    for (i, crc) in how.crcs.iter().enumerate() {
        let len = part.min(how.size.saturating_sub(i as u64 * part));
        whole = crc32c::crc32c_combine(whole, (*crc)?, len as usize);
    }
    Some(whole)
}

/// The check by the ETag.
fn check_etag(
    ctx: &JobContext,
    file: &File,
    temp: &Path,
    key: &str,
    how: &Finish,
) -> Result<Verification> {
    let etag = how.object.etag.as_str();
    let parts = how.md5s.len() as u32;
    let md5s: Option<Vec<[u8; 16]>> = how.md5s.iter().copied().collect();
    if let (true, Some(md5s)) = (hash_while_fetching(&how.object, parts), md5s) {
        if is_multipart_etag(etag) {
            let got = multipart_etag(&md5s);
            if how.object.by_part_number || got == etag {
                return matched(key, &got, etag, Verification::MultipartEtag);
            }
            // The guessed part size was not the uploader's: try others below.
        }
        if md5s.len() == 1 {
            return matched(key, &hex(&md5s[0]), etag, Verification::Md5);
        }
    }
    if is_md5_hex(etag) {
        let got = read_back(ctx, file, temp, how.size, &[how.size.max(1)])?;
        return matched(key, &hex(&got[0][0]), etag, Verification::Md5);
    }
    if let Some(n) = multipart_etag_parts(etag).map(u64::from) {
        let mut guesses: Vec<u64> = std::iter::once(how.part_size_hint)
            .chain(USUAL_PART_SIZES)
            .filter(|&p| p > 0 && how.size.div_ceil(p) == n)
            .collect();
        guesses.dedup();
        guesses.truncate(MAX_GUESSES);
        if !guesses.is_empty() {
            let got = read_back(ctx, file, temp, how.size, &guesses)?;
            if got.iter().any(|md5s| multipart_etag(md5s) == etag) {
                return Ok(Verification::MultipartEtag);
            }
        }
        log::warn!(
            "'{key}': its multipart ETag could not be recomputed (this store does not serve \
             parts by number, and the object's part size is not a usual one): checked by size only"
        );
        return Ok(Verification::Size);
    }
    Ok(Verification::Size)
}

fn matched(key: &str, got: &str, etag: &str, how: Verification) -> Result<Verification> {
    if got == etag {
        Ok(how)
    } else {
        Err(Error::new(
            ErrorKind::Integrity,
            format!(
                "the bytes downloaded from '{key}' do not match its ETag ({got} computed, {etag} expected)"
            ),
        )
        .with_key(key))
    }
}

/// For each part size, the MD5s of the file's parts split that way: every
/// part of every guess is a range for the MD5 thread, which hashes them
/// eight at a time (see `hasher`).
fn read_back(
    ctx: &JobContext,
    file: &File,
    temp: &Path,
    size: u64,
    part_sizes: &[u64],
) -> Result<Vec<Vec<[u8; 16]>>> {
    let file = Arc::new(file.try_clone().map_err(|e| read_back_failed(temp, &e))?);
    let pending: Vec<Vec<_>> = part_sizes
        .iter()
        .map(|&part| {
            // An empty object is one empty part.
            let parts = size.div_ceil(part).max(1);
            (0..parts)
                .map(|i| {
                    let at = i * part;
                    let len = part.min(size - at.min(size));
                    ctx.hasher.submit(file.clone(), at, len)
                })
                .collect()
        })
        .collect();
    pending
        .into_iter()
        .map(|guess| {
            guess
                .into_iter()
                // A check, not a record: a stop ends it (and dropping the
                // rest withdraws them).
                .map(|p| {
                    p.wait_unless(&ctx.cancel)
                        .map_err(|e| read_back_failed(temp, &e))
                })
                .collect()
        })
        .collect()
}

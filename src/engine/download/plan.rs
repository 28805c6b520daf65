//! From (destination, key) pairs — or a prefix and a directory — to the
//! plan of a download: every key checked, every destination checked
//! before a byte moves, every object's size and ETag known, and how each
//! object is split.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::RemoteObject;
use crate::engine::etag::{is_md5_hex, is_multipart_etag, multipart_etag_parts};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::plan::{check_key, part_size_for, FilePlan};
use crate::store::ObjectInfo;

/// What is known of an object before its download: from a listing, or a
/// HeadObject.
#[derive(Debug, Clone)]
pub(crate) struct Known {
    pub size: u64,
    pub etag: String,
    /// The object's stored CRC32C of all its bytes, where the store keeps
    /// one (see [`full_object_crc32c`]); a listing does not say.
    pub crc32c: Option<u32>,
}

impl Known {
    /// What a listing says: size and ETag.
    pub fn listed(size: u64, etag: String) -> Known {
        Known {
            size,
            etag,
            crc32c: None,
        }
    }

    /// Whether a HeadObject should ask what the listing did not say: the
    /// ETag of an object fetched in several GETs (each must name the same
    /// version), and the stored checksum of one whose ETag cannot be
    /// recomputed along the ranges fetched (multipart, or not an MD5).
    fn worth_a_head(&self, threshold: u64) -> bool {
        if self.etag.is_empty() {
            self.size >= threshold
        } else {
            !is_md5_hex(&self.etag)
        }
    }
}

/// The CRC32C of all an object's bytes, from a HeadObject asked with
/// `x-amz-checksum-mode: ENABLED`. A multipart object's counts only when
/// the store says it is `FULL_OBJECT`: a `COMPOSITE` one (`...-N`) is a
/// checksum of part checksums, which needs the part boundaries the ETag
/// needs too, and some stores (moto) give a multipart object a CRC32C that
/// is neither. Such a value then only adds a check that may be wrong; a
/// wrong full-object value falls back to the ETag (see `verify`).
pub(crate) fn full_object_crc32c(info: &ObjectInfo) -> Option<u32> {
    use base64::Engine as _;
    let value = info.crc32c.as_deref()?;
    let full = info.checksum_type.as_deref() == Some("FULL_OBJECT");
    if value.contains('-') || (is_multipart_etag(&info.etag) && !full) {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// Plans the download of `entries` (destination, key), in order. `known`
/// gives what a listing already said of each key; the others are asked
/// with HeadObject (in parallel, on the pool).
pub(crate) fn plan(
    engine: &Engine,
    entries: &[(PathBuf, String)],
    known: Option<Vec<Known>>,
) -> Result<Vec<FilePlan>> {
    if entries.is_empty() {
        return Err(Error::input("the batch is empty: add at least one object"));
    }
    let mut dests = Vec::with_capacity(entries.len());
    let mut seen: HashMap<PathBuf, &str> = HashMap::with_capacity(entries.len());
    let mut parents_checked = HashSet::new();
    for (dest, key) in entries {
        check_key(key).map_err(|e| e.with_path(dest.clone()))?;
        let dest = check_destination(dest, &mut parents_checked)?;
        if let Some(first) = seen.insert(dest.clone(), key) {
            return Err(Error::input(format!(
                "keys '{first}' and '{key}' would both be downloaded to {}",
                dest.display()
            ))
            .with_key(key.clone())
            .with_path(dest));
        }
        dests.push(dest);
    }
    // A destination under another one: that one would have to be a file
    // and a directory at once.
    let all: HashSet<&Path> = dests.iter().map(PathBuf::as_path).collect();
    for (dest, (_, key)) in dests.iter().zip(entries) {
        if let Some(parent) = dest.ancestors().skip(1).find(|a| all.contains(a)) {
            return Err(Error::input(format!(
                "'{key}' would be downloaded to {}, under {}, which another key downloads to as a file",
                dest.display(),
                parent.display()
            ))
            .with_key(key.clone())
            .with_path(dest.clone()));
        }
    }
    let known = match known {
        // What a listing leaves out is asked where it matters (see
        // `worth_a_head`). A one-GET object without an ETag (s3s-fs lists
        // none) learns it from that GET.
        Some(mut k) => {
            let threshold = engine.cfg.multipart_threshold;
            let unknown: Vec<usize> = (0..k.len())
                .filter(|&i| k[i].worth_a_head(threshold))
                .collect();
            if !unknown.is_empty() {
                let asked: Vec<(PathBuf, String)> =
                    unknown.iter().map(|&i| entries[i].clone()).collect();
                for (i, got) in unknown.into_iter().zip(head_all(engine, &asked)?) {
                    k[i] = got;
                }
            }
            k
        }
        None => head_all(engine, entries)?,
    };
    let by_part_number = serves_parts(engine, entries, &known)?;
    let cfg = &engine.cfg;
    let mut plans = Vec::with_capacity(entries.len());
    for ((dest, (_, key)), k) in dests.into_iter().zip(entries).zip(known) {
        let etag_parts: Option<u64> = multipart_etag_parts(&k.etag).map(u64::from);
        let multipart_etag = etag_parts.is_some();
        let guess = part_size_for(k.size, cfg.part_size).filter(|_| k.size > 0);
        // Checked by its stored CRC32C: any split will do.
        let crc32c = k.crc32c.filter(|_| checked_by_crc32c(&k));
        let (part_size, parts, by_part) = match &by_part_number {
            Some(first_parts) if multipart_etag && k.size > 0 && crc32c.is_none() => {
                let (len, count) = match first_parts.get(key.as_str()) {
                    Some(p) => *p,
                    None => part_layout(&engine.store, key)?,
                };
                (len, count, true)
            }
            // The configured part size gives the ETag's part count: fetch
            // along those boundaries, likely the uploader's own.
            _ if guess.is_some_and(|p| etag_parts == Some(k.size.div_ceil(p))) => {
                let part = guess.expect("checked");
                (part, k.size.div_ceil(part) as u32, false)
            }
            _ if k.size >= cfg.multipart_threshold && k.size > 0 => {
                let part = part_size_for(k.size, cfg.part_size).ok_or_else(|| {
                    Error::input(format!("'{key}' is {} bytes: more than S3 stores", k.size))
                })?;
                (part, k.size.div_ceil(part) as u32, false)
            }
            _ => (k.size, 1, false),
        };
        plans.push(FilePlan {
            path: dest,
            key: key.clone(),
            size: k.size,
            mtime: None,
            multipart: true,
            part_size,
            parts,
            object: Some(Arc::new(RemoteObject {
                aligned: !by_part
                    && crc32c.is_none()
                    && etag_parts.is_some_and(|n| n == u64::from(parts)),
                etag: k.etag,
                by_part_number: by_part,
                crc32c,
            })),
        });
    }
    Ok(plans)
}

/// Whether an object is checked by its stored CRC32C rather than its ETag:
/// when it has one and the ETag cannot be recomputed along any ranges (a
/// single-part object's MD5 can, and is the stronger check).
fn checked_by_crc32c(k: &Known) -> bool {
    k.crc32c.is_some() && !is_md5_hex(&k.etag)
}

/// An absolute destination that is not a directory, below no file.
/// `parents_checked`: directories already found fine (a batch's files share
/// a few, and each check asks the file system once per ancestor).
fn check_destination(dest: &Path, parents_checked: &mut HashSet<PathBuf>) -> Result<PathBuf> {
    let refuse = |why: String| Error::input(why).with_path(dest);
    if dest.as_os_str().is_empty() {
        return Err(refuse("a destination path is empty".into()));
    }
    if dest.as_os_str().as_encoded_bytes().ends_with(b"/") {
        return Err(refuse(format!(
            "{} names a directory: a download needs a file name",
            dest.display()
        )));
    }
    let abs = std::path::absolute(dest).map_err(|e| Error::local_io("resolve", dest, &e))?;
    if abs.is_dir() {
        return Err(refuse(format!(
            "{} is a directory: an object cannot be downloaded over it",
            dest.display()
        )));
    }
    if let Some(parent) = abs.parent().filter(|p| !parents_checked.contains(*p)) {
        for a in parent.ancestors() {
            match std::fs::metadata(a) {
                // Every ancestor of a directory that exists is one too.
                Ok(meta) if meta.is_dir() => break,
                Ok(_) => {
                    return Err(refuse(format!(
                        "{} cannot be created: {} is a file, not a directory",
                        dest.display(),
                        a.display()
                    )))
                }
                // Not there yet (or below a file: its ancestors say).
                Err(_) => {}
            }
        }
        parents_checked.insert(parent.to_path_buf());
    }
    Ok(abs)
}

/// HeadObject for every key, in parallel on the pool.
fn head_all(engine: &Engine, entries: &[(PathBuf, String)]) -> Result<Vec<Known>> {
    let store = engine.store.clone();
    let keys: Vec<String> = entries.iter().map(|(_, k)| k.clone()).collect();
    engine
        .pool
        .map(keys, move |key| match store.head_object_checksum(&key)? {
            Some(info) => Ok(Known {
                crc32c: full_object_crc32c(&info),
                size: info.size,
                etag: info.etag,
            }),
            None => Err(no_such_object(&store, &key)),
        })
        .into_iter()
        .collect()
}

/// Whether the store serves parts by number (`?partNumber=N`), asked of
/// the first multipart object; then the layout of every multipart object
/// (its first part's size and its part count), by key. `None` when no
/// object is multipart or the store does not serve parts.
#[allow(clippy::type_complexity)]
fn serves_parts(
    engine: &Engine,
    entries: &[(PathBuf, String)],
    known: &[Known],
) -> Result<Option<HashMap<String, (u64, u32)>>> {
    // Served: part 1 comes back as a 206 from byte 0.
    let multipart: Vec<&str> = entries
        .iter()
        .zip(known)
        .filter(|(_, k)| is_multipart_etag(&k.etag) && k.size > 0 && !checked_by_crc32c(k))
        .map(|((_, key), _)| key.as_str())
        .collect();
    let Some(first) = multipart.first() else {
        return Ok(None);
    };
    // Asked with the GET itself (some stores answer a HEAD by part but
    // ignore the part number of a GET), cut off after its head.
    let head = engine.store.get_head_only(first, 1);
    let served = head.is_some_and(|h| h.status == 206 && h.range.is_some_and(|r| r.start == 0));
    if !served {
        log::debug!("the store does not serve parts by number: multipart ETags are recomputed from the file");
        return Ok(None);
    }
    let store = engine.store.clone();
    let keys: Vec<String> = multipart.iter().map(|k| k.to_string()).collect();
    let layouts = engine
        .pool
        .map(keys, move |key| {
            let layout = part_layout(&store, &key)?;
            Ok((key, layout))
        })
        .into_iter()
        .collect::<Result<HashMap<_, _>>>()?;
    Ok(Some(layouts))
}

/// An object asked for by name that is not there.
fn no_such_object(store: &crate::store::Store, key: &str) -> Error {
    Error::input(format!("no object '{key}' in bucket '{}'", store.bucket())).with_key(key)
}

/// The first part's size and the part count of a multipart object.
fn part_layout(store: &crate::store::Store, key: &str) -> Result<(u64, u32)> {
    let head = store
        .head_part(key, 1)?
        .ok_or_else(|| no_such_object(store, key))?;
    let count = head.parts_count.unwrap_or(1).max(1);
    let len = head.range.map(|r| r.len()).or(head.length).unwrap_or(0);
    Ok((len.max(1), count))
}

/// (destination, key) pairs, and what the listing said of each.
type Mapped = (Vec<(PathBuf, String)>, Vec<Known>);

/// Maps the objects under `prefix` to paths below `dir`: a key's path is
/// what follows the prefix's last `/`. Folder markers (keys ending in `/`)
/// are skipped. A key that would land outside `dir` — an empty, `.` or `..`
/// segment, a leading `/`, a backslash, a NUL — is refused, naming it.
pub(crate) fn map_below(prefix: &str, dir: &Path, objects: Vec<(String, Known)>) -> Result<Mapped> {
    let base = match prefix.rfind('/') {
        Some(i) => &prefix[..=i],
        None => "",
    };
    let mut entries = Vec::with_capacity(objects.len());
    let mut known = Vec::with_capacity(objects.len());
    for (key, k) in objects {
        if key.ends_with('/') {
            log::info!("skipping '{key}': a folder marker, not a file");
            continue;
        }
        let rel = key.strip_prefix(base).unwrap_or(&key);
        check_relative(&key, rel)?;
        entries.push((dir.join(rel), key.clone()));
        known.push(k);
    }
    if entries.is_empty() {
        return Err(Error::input(format!(
            "no object under '{prefix}' to download"
        )));
    }
    Ok((entries, known))
}

fn check_relative(key: &str, rel: &str) -> Result<()> {
    let refuse = |why: &str| {
        Error::input(format!(
            "key '{}' cannot be downloaded: {why}",
            key.escape_debug()
        ))
        .with_key(key)
    };
    if rel.starts_with('/') {
        return Err(refuse("it would name an absolute path"));
    }
    if rel.contains('\0') || rel.contains('\\') {
        return Err(refuse("it holds a NUL or a backslash"));
    }
    if rel
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(refuse(
            "an empty, '.' or '..' path segment would lead outside the destination directory",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    fn obj(key: &str) -> (String, Known) {
        (key.into(), Known::listed(1, String::new()))
    }

    #[test]
    fn keys_map_below_the_directory_after_the_prefix() {
        let (e, _) = map_below(
            "photos/2024-",
            Path::new("/d"),
            vec![
                obj("photos/2024-01/a b.jpg"),
                obj("photos/2024-02/"),
                obj("photos/2024-x"),
            ],
        )
        .unwrap();
        let paths: Vec<_> = e.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(
            paths,
            [
                PathBuf::from("/d/2024-01/a b.jpg"),
                PathBuf::from("/d/2024-x")
            ]
        );
    }

    #[test]
    fn only_a_full_object_crc32c_counts() {
        let info = |etag: &str, crc: Option<&str>, kind: Option<&str>| ObjectInfo {
            size: 1,
            etag: etag.into(),
            content_type: None,
            crc32c: crc.map(str::to_string),
            checksum_type: kind.map(str::to_string),
        };
        let md5 = "0123456789abcdef0123456789abcdef";
        let mp = &format!("{md5}-3");
        // 0xdeadbeef, base64 of its big-endian bytes.
        assert_eq!(
            full_object_crc32c(&info(md5, Some("3q2+7w=="), None)),
            Some(0xdeadbeef)
        );
        assert_eq!(
            full_object_crc32c(&info(mp, Some("3q2+7w=="), Some("FULL_OBJECT"))),
            Some(0xdeadbeef)
        );
        // A multipart object's value that does not say it is the whole
        // object's; a composite one; garbage; none.
        assert_eq!(full_object_crc32c(&info(mp, Some("3q2+7w=="), None)), None);
        assert_eq!(
            full_object_crc32c(&info(mp, Some("3q2+7w==-3"), Some("COMPOSITE"))),
            None
        );
        assert_eq!(full_object_crc32c(&info(md5, Some("3q2+"), None)), None);
        assert_eq!(full_object_crc32c(&info(md5, None, None)), None);
    }

    #[test]
    fn keys_that_would_escape_are_refused() {
        for key in [
            "p//etc/passwd",
            "p/a/../../x",
            "p/./x",
            "p/a\\..\\x",
            "p/a//b",
        ] {
            let err = map_below("p/", Path::new("/d"), vec![obj(key)]).unwrap_err();
            assert!(
                err.to_string().contains("cannot be downloaded"),
                "{key}: {err}"
            );
        }
    }
}

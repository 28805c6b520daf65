//! A journal read back: its records parsed, and every one of them checked
//! before it is believed (see "A system file" in the parent module).

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{MAGIC, VERSION};
use crate::config::{MAX_PARTS, MAX_PART_SIZE, MIN_PART_SIZE};
use crate::plan::{FilePlan, MAX_OBJECT_SIZE};

/// One file as the journal recorded it.
#[derive(Debug, Clone)]
pub(crate) struct RecordedFile {
    pub plan: FilePlan,
    /// The last upload created and not aborted.
    pub upload_id: Option<String>,
    /// An upload creation was started (its answer may have been lost).
    pub intended: bool,
    pub parts: BTreeMap<u32, RecordedPart>,
    pub done: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct RecordedPart {
    pub etag: String,
    pub md5: Option<[u8; 16]>,
    pub crc32c: Option<u32>,
}

/// What a journal says.
#[derive(Debug)]
pub(crate) struct Recorded {
    pub created: SystemTime,
    pub bucket: String,
    /// The endpoint(s) the batch started with, when recorded.
    pub endpoint: Option<String>,
    pub files: Vec<RecordedFile>,
    pub ended: Option<String>,
    /// A download's journal (its files are `G` records).
    pub download: bool,
}

/// Parses a journal. A torn last line is ignored; anything else that is
/// not a well-formed record is an error saying where.
pub(super) fn parse(text: &[u8]) -> std::result::Result<Recorded, String> {
    if text.is_empty() {
        return Err("is empty: it records no batch".into());
    }
    let mut lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    // The piece after the last newline is a torn write (or empty).
    lines.pop();
    let mut out = Recorded {
        created: UNIX_EPOCH,
        bucket: String::new(),
        endpoint: None,
        files: Vec::new(),
        ended: None,
        download: false,
    };
    let mut complete_batch = false;
    let n = lines.len();
    for (i, raw) in lines.iter().enumerate() {
        let line_no = i + 1;
        let fields = match check_line(raw) {
            Some(f) => f,
            // A bad checksum on the last line is a torn write.
            None if i + 1 == n && i > 0 => break,
            None if i == 0 => return Err("is not a batchput journal".into()),
            None => return Err(format!("is corrupt at line {line_no}")),
        };
        let bad = || format!("is corrupt at line {line_no}");
        let invalid = |why: String| format!("is corrupt at line {line_no}: {why}");
        let num = |s: &str| s.parse::<u64>().map_err(|_| bad());
        let file_at = |out: &mut Recorded, s: &str| -> std::result::Result<usize, String> {
            let idx = s.parse::<usize>().map_err(|_| bad())?;
            if idx < out.files.len() {
                Ok(idx)
            } else {
                Err(bad())
            }
        };
        match fields.as_slice() {
            ["H", MAGIC, v, created, bucket, endpoint @ ..] if i == 0 && endpoint.len() <= 1 => {
                if *v != VERSION {
                    return Err(format!(
                        "has version {v}; this batchput reads version {VERSION}"
                    ));
                }
                out.created = UNIX_EPOCH + Duration::from_millis(num(created)?);
                out.bucket = decode_str(bucket).ok_or_else(bad)?;
                if let [endpoint] = endpoint {
                    out.endpoint = Some(decode_str(endpoint).ok_or_else(bad)?);
                }
            }
            _ if i == 0 => return Err("is not a batchput journal".into()),
            ["F", idx, size, mtime, mp, part_size, parts, path, key] if !complete_batch => {
                if num(idx)? as usize != out.files.len() {
                    return Err(bad());
                }
                let mtime = match *mtime {
                    "-" => None,
                    ns => Some(UNIX_EPOCH + Duration::from_nanos(num(ns)?)),
                };
                let path = decode(path).ok_or_else(bad)?;
                if path.is_empty() || path.contains(&0) {
                    return Err(invalid("a file path is empty or holds a NUL byte".into()));
                }
                let key = decode_str(key).ok_or_else(|| invalid("a key is not UTF-8".into()))?;
                crate::plan::check_key(&key).map_err(|e| invalid(e.message().to_string()))?;
                let (multipart, part_size, parts) =
                    check_shape(num(size)?, mp, num(part_size)?, num(parts)?).map_err(invalid)?;
                out.files.push(RecordedFile {
                    plan: FilePlan {
                        path: PathBuf::from(std::ffi::OsString::from_vec(path)),
                        key,
                        size: num(size)?,
                        mtime,
                        multipart,
                        part_size,
                        parts,
                        object: None,
                    },
                    upload_id: None,
                    intended: false,
                    parts: BTreeMap::new(),
                    done: None,
                });
            }
            ["G", idx, size, part_size, parts, by_part, etag, path, key] if !complete_batch => {
                if num(idx)? as usize != out.files.len() {
                    return Err(bad());
                }
                let path = decode(path).ok_or_else(bad)?;
                if path.is_empty() || path.contains(&0) || path[0] != b'/' {
                    return Err(invalid(
                        "a destination path is empty, relative or holds a NUL byte".into(),
                    ));
                }
                let key = decode_str(key).ok_or_else(|| invalid("a key is not UTF-8".into()))?;
                crate::plan::check_key(&key).map_err(|e| invalid(e.message().to_string()))?;
                let (size, part_size, parts) = (num(size)?, num(part_size)?, num(parts)?);
                // How it is fetched and checked: by ranges (0), by part
                // number (1), by ranges that are its parts (2), by ranges
                // and its stored CRC32C (c + 8 hex digits).
                let (by_part_number, aligned, crc32c) = match *by_part {
                    "0" => (false, false, None),
                    "1" => (true, false, None),
                    "2" => (false, true, None),
                    c => match c.strip_prefix('c') {
                        Some(hex) if hex.len() == 8 => (
                            false,
                            false,
                            Some(u32::from_str_radix(hex, 16).map_err(|_| bad())?),
                        ),
                        _ => return Err(bad()),
                    },
                };
                if size > MAX_OBJECT_SIZE
                    || parts == 0
                    || parts > u64::from(MAX_PARTS)
                    || part_size > MAX_PART_SIZE
                    || (!by_part_number && size > 0 && size.div_ceil(part_size.max(1)) != parts)
                {
                    return Err(invalid(format!(
                        "{parts} part(s) of {part_size} bytes for an object of {size} bytes"
                    )));
                }
                out.download = true;
                out.files.push(RecordedFile {
                    plan: FilePlan {
                        path: PathBuf::from(std::ffi::OsString::from_vec(path)),
                        key,
                        size,
                        mtime: None,
                        multipart: true,
                        part_size,
                        parts: parts as u32,
                        object: Some(std::sync::Arc::new(crate::engine::RemoteObject {
                            etag: decode_str(etag).ok_or_else(bad)?,
                            by_part_number,
                            aligned,
                            crc32c,
                        })),
                    },
                    upload_id: None,
                    intended: false,
                    parts: BTreeMap::new(),
                    done: None,
                });
            }
            ["B", count] => {
                if num(count)? as usize != out.files.len() {
                    return Err(bad());
                }
                complete_batch = true;
            }
            _ if !complete_batch => return Err(bad()),
            ["N", idx, size, mtime, mp, part_size, parts] => {
                let f = file_at(&mut out, idx)?;
                let (multipart, part_size, parts) =
                    check_shape(num(size)?, mp, num(part_size)?, num(parts)?).map_err(invalid)?;
                let rec = &mut out.files[f];
                rec.plan.size = num(size)?;
                rec.plan.mtime = match *mtime {
                    "-" => None,
                    ns => Some(UNIX_EPOCH + Duration::from_nanos(num(ns)?)),
                };
                rec.plan.multipart = multipart;
                rec.plan.part_size = part_size;
                rec.plan.parts = parts;
                rec.upload_id = None;
                rec.parts.clear();
                rec.intended = false;
                rec.done = None;
            }
            ["I", idx] => {
                let f = file_at(&mut out, idx)?;
                out.files[f].intended = true;
            }
            ["U", idx, id] => {
                let f = file_at(&mut out, idx)?;
                let rec = &mut out.files[f];
                rec.upload_id = Some(decode_str(id).ok_or_else(bad)?);
                rec.parts.clear();
            }
            ["P", idx, part, etag, md5, crc] => {
                let f = file_at(&mut out, idx)?;
                let md5 = match *md5 {
                    "-" => None,
                    h => Some(parse_md5(h).ok_or_else(bad)?),
                };
                let crc32c = match *crc {
                    "-" => None,
                    h => Some(u32::from_str_radix(h, 16).map_err(|_| bad())?),
                };
                let part = num(part)?;
                let rec = &out.files[f];
                if !rec.plan.multipart || part == 0 || part > u64::from(rec.plan.parts) {
                    return Err(invalid(format!(
                        "part {part} of file {f}, which has {} part(s){}",
                        rec.plan.parts,
                        if rec.plan.multipart {
                            ""
                        } else {
                            " and is a single PUT"
                        }
                    )));
                }
                out.files[f].parts.insert(
                    part as u32,
                    RecordedPart {
                        etag: decode_str(etag).ok_or_else(bad)?,
                        md5,
                        crc32c,
                    },
                );
            }
            ["D", idx, etag] => {
                let f = file_at(&mut out, idx)?;
                let rec = &mut out.files[f];
                rec.done = Some(decode_str(etag).ok_or_else(bad)?);
                rec.upload_id = None;
            }
            ["X", idx, id] => {
                let f = file_at(&mut out, idx)?;
                let id = decode_str(id).ok_or_else(bad)?;
                let rec = &mut out.files[f];
                if rec.upload_id.as_deref() == Some(id.as_str()) {
                    rec.upload_id = None;
                    rec.parts.clear();
                }
                rec.intended = false;
            }
            ["R", _] => {}
            ["E", state] => out.ended = Some(state.to_string()),
            _ => return Err(bad()),
        }
    }
    if !complete_batch {
        return Err(
            "was cut before its batch was fully recorded; nothing was uploaded from it: \
             start the batch again"
                .into(),
        );
    }
    Ok(out)
}

/// Checks a file's recorded shape — size, single PUT or multipart, part
/// size, part count — against S3's limits and against itself, before
/// anything is sized by it. Returns (multipart, part size, parts).
fn check_shape(
    size: u64,
    multipart: &str,
    part_size: u64,
    parts: u64,
) -> std::result::Result<(bool, u64, u32), String> {
    if size > MAX_OBJECT_SIZE {
        return Err(format!("a size of {size} bytes is more than S3's 5 TiB"));
    }
    if parts == 0 || parts > u64::from(MAX_PARTS) {
        return Err(format!("a part count of {parts} is outside 1..{MAX_PARTS}"));
    }
    match multipart {
        "1" => {
            if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
                return Err(format!(
                    "a part size of {part_size} bytes is outside 5MiB..5GiB"
                ));
            }
            if size == 0 || size.div_ceil(part_size) != parts {
                return Err(format!(
                    "{parts} parts of {part_size} bytes do not make {size} bytes"
                ));
            }
        }
        "0" => {
            if parts != 1 || part_size != size || size > MAX_PART_SIZE {
                return Err(format!(
                    "a single PUT of {size} bytes recorded as {parts} part(s) of {part_size}"
                ));
            }
        }
        other => {
            return Err(format!(
                "'{other}' is neither 0 (single PUT) nor 1 (multipart)"
            ))
        }
    }
    Ok((multipart == "1", part_size, parts as u32))
}

/// Splits a line into fields if its checksum holds.
fn check_line(raw: &[u8]) -> Option<Vec<&str>> {
    let text = std::str::from_utf8(raw).ok()?;
    let (body, crc) = text.rsplit_once('\t')?;
    let crc = u32::from_str_radix(crc, 16).ok()?;
    (crc32c::crc32c(body.as_bytes()) == crc).then(|| body.split('\t').collect())
}

fn parse_md5(h: &str) -> Option<[u8; 16]> {
    if h.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Percent-encodes every byte that is not plainly printable, and `%`.
pub(super) fn encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'%' {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    if s.is_empty() {
        s.push('%');
    }
    s
}

fn decode(s: &str) -> Option<Vec<u8>> {
    if s == "%" {
        return Some(Vec::new());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(s.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

fn decode_str(s: &str) -> Option<String> {
    String::from_utf8(decode(s)?).ok()
}

//! Percent-encoding of keys and query values the way S3 signs them, and the
//! one timestamp format S3 answers with.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// RFC 3986 unreserved characters: the only bytes S3's canonical form
/// leaves alone.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn encode(s: &str, keep_slash: bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len() + s.len() / 2);
    for &b in s.as_bytes() {
        if is_unreserved(b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
    out
}

/// Encodes an object key for the URL path: every byte but the unreserved
/// ones and `/` becomes `%XX`. Because the signer runs in single-encoding
/// mode, this string is also exactly the canonical URI S3 signs, so `+`,
/// spaces, `%`, unicode and `//` all round-trip.
pub(crate) fn key_path(key: &str) -> String {
    encode(key, true)
}

/// Encodes a query parameter value; `/` and `+` are encoded too (the signer
/// decodes the query as form data, where a bare `+` would mean a space).
pub(crate) fn query_value(value: &str) -> String {
    encode(value, false)
}

/// Decodes a value S3 listed with `encoding-type=url`: `%XX` escapes, and
/// `+` for a space (AWS encodes form-style; a literal `+` comes as `%2B`).
/// `None` for a broken escape or bytes that are not UTF-8.
pub(crate) fn form_decode(s: &str) -> Option<String> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'+' => b' ',
            b'%' => {
                let hi = hex(bytes.next()?)?;
                let lo = hex(bytes.next()?)?;
                (hi * 16 + lo) as u8
            }
            other => other,
        });
    }
    String::from_utf8(out).ok()
}

/// Parses the ISO 8601 timestamps S3 uses (`2026-11-22T02:27:33.000Z`).
pub(crate) fn parse_timestamp(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = if y2 >= 0 { y2 } else { y2 - 399 } / 400;
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3_600 + mi * 60 + se;
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn awkward_keys_encode_for_the_path() {
        assert_eq!(
            key_path("a b+c=d&e?f#g~h%i"),
            "a%20b%2Bc%3Dd%26e%3Ff%23g~h%25i"
        );
        assert_eq!(key_path("dir//x"), "dir//x");
        assert_eq!(key_path("/lead"), "/lead");
        assert_eq!(key_path("é"), "%C3%A9");
        assert_eq!(query_value("a/b+c="), "a%2Fb%2Bc%3D");
    }

    #[test]
    fn listed_keys_decode() {
        assert_eq!(
            form_decode("++orphan++.bin+").as_deref(),
            Some("  orphan  .bin ")
        );
        assert_eq!(form_decode("a%2Bb+c.bin").as_deref(), Some("a+b c.bin"));
        assert_eq!(
            form_decode("%C3%BCn%C3%AF%20c%C3%B8d%C3%A9/%2541.bin").as_deref(),
            Some("ünï cødé/%41.bin")
        );
        assert_eq!(form_decode("%0a%01").as_deref(), Some("\n\u{1}"));
        for bad in ["%", "%4", "%zz", "%C3"] {
            assert_eq!(form_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn timestamps_parse() {
        let t = parse_timestamp("2013-05-24T00:00:00.000Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_369_353_600
        );
        let t = parse_timestamp("1970-01-01T00:00:01Z").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 1);
        assert!(parse_timestamp("yesterday").is_none());
    }
}

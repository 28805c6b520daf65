//! ETags: the hex of an MD5, and the multipart ETag S3 computes from the
//! MD5s of the parts (`md5(md5s)-N`).

use md5::{Digest, Md5};

pub(crate) fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

pub(crate) fn is_md5_hex(etag: &str) -> bool {
    etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

pub(crate) fn is_multipart_etag(etag: &str) -> bool {
    multipart_etag_parts(etag).is_some()
}

/// The part count `N` of a multipart ETag (`<md5 hex>-N`); `None` for any
/// other shape.
pub(crate) fn multipart_etag_parts(etag: &str) -> Option<u32> {
    let (h, n) = etag.split_once('-')?;
    is_md5_hex(h).then(|| n.parse().ok()).flatten()
}

/// The multipart ETag S3 computes: md5 of the concatenated part MD5s, "-N".
pub(crate) fn multipart_etag(part_md5s: &[[u8; 16]]) -> String {
    let mut h = Md5::new();
    for m in part_md5s {
        h.update(m);
    }
    format!("{}-{}", hex(&h.finalize()), part_md5s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_shapes() {
        assert!(is_md5_hex("9e107d9d372bb6826bd81d3542a419d6"));
        assert!(!is_md5_hex("9e107d9d372bb6826bd81d3542a419d6-2"));
        assert!(is_multipart_etag("9e107d9d372bb6826bd81d3542a419d6-2"));
        assert!(!is_multipart_etag("abc-2"));
        assert_eq!(
            multipart_etag_parts("9e107d9d372bb6826bd81d3542a419d6-16"),
            Some(16)
        );
        assert_eq!(
            multipart_etag_parts("9e107d9d372bb6826bd81d3542a419d6"),
            None
        );
        let one = [0u8; 16];
        assert!(multipart_etag(&[one, one]).ends_with("-2"));
    }
}

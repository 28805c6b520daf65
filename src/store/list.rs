//! The listings: ListParts and ListMultipartUploads, every page, with keys
//! exactly as stored (`encoding-type=url`, decoded when the answer says so).

use super::{
    encode, parse_timestamp, unquote_str, xml, Body, ListedPart, ListedUpload, Request, Store,
};
use crate::error::Result;

impl Store {
    /// Lists every part of an upload (all pages).
    pub fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
        endpoint_hint: usize,
    ) -> Result<Vec<ListedPart>> {
        let mut parts = Vec::new();
        let mut marker = String::new();
        loop {
            let mut query = vec![("uploadId", upload_id), ("max-parts", "1000")];
            if !marker.is_empty() {
                query.push(("part-number-marker", &marker));
            }
            let reply = self.call(Request {
                operation: "ListParts",
                method: "GET",
                key: Some(key),
                query: &query,
                headers: Vec::new(),
                body: Body::Empty,
                endpoint_hint,
            })?;
            let root = self.parse_body("ListParts", key, &reply.body)?;
            for p in root.children("Part") {
                let number = p.token_of("PartNumber").and_then(|n| n.parse().ok());
                let Some(number) = number else { continue };
                parts.push(ListedPart {
                    number,
                    etag: p.text_of("ETag").map(unquote_str).unwrap_or_default(),
                    size: p.token_of("Size").and_then(|s| s.parse().ok()).unwrap_or(0),
                });
            }
            let next = root.token_of("NextPartNumberMarker").unwrap_or("");
            if root.token_of("IsTruncated") != Some("true") || next.is_empty() || next == marker {
                break;
            }
            marker = next.to_string();
        }
        parts.sort_by_key(|p| p.number);
        Ok(parts)
    }

    /// Lists every multipart upload under `prefix` (all pages), with keys
    /// exactly as they were created: asked URL-encoded (so control
    /// characters survive XML), decoded when the answer says it is.
    pub fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<ListedUpload>> {
        let mut uploads = Vec::new();
        let (mut key_marker, mut id_marker) = (String::new(), String::new());
        loop {
            let mut query = vec![
                ("uploads", ""),
                ("encoding-type", "url"),
                ("max-uploads", "1000"),
            ];
            if !prefix.is_empty() {
                query.push(("prefix", prefix));
            }
            if !key_marker.is_empty() {
                query.push(("key-marker", &key_marker));
            }
            if !id_marker.is_empty() {
                query.push(("upload-id-marker", &id_marker));
            }
            let reply = self.call(Request {
                operation: "ListMultipartUploads",
                method: "GET",
                key: None,
                query: &query,
                headers: Vec::new(),
                body: Body::Empty,
                endpoint_hint: 0,
            })?;
            let root = self.parse_body("ListMultipartUploads", prefix, &reply.body)?;
            let page = upload_page(&root)
                .map_err(|why| self.malformed("ListMultipartUploads", prefix, &why))?;
            uploads.extend(page.uploads);
            if !page.truncated || (page.next_key == key_marker && page.next_id == id_marker) {
                break;
            }
            (key_marker, id_marker) = (page.next_key, page.next_id);
        }
        Ok(uploads)
    }
}

/// One page of ListMultipartUploads.
struct UploadPage {
    uploads: Vec<ListedUpload>,
    truncated: bool,
    next_key: String,
    next_id: String,
}

/// Reads a ListMultipartUploads page, keys exact. Not every server honours
/// `encoding-type=url` (moto ignores it): keys are decoded only when the
/// answer says they are encoded. Upload ids are never encoded.
fn upload_page(root: &xml::Element) -> std::result::Result<UploadPage, String> {
    let encoded = really_encoded(
        root.token_of("EncodingType") == Some("url"),
        root.children("Upload").filter_map(|u| u.text_of("Key")),
    );
    let key = |text: &str| listed_key(encoded, text);
    let mut uploads = Vec::new();
    for u in root.children("Upload") {
        let (Some(k), Some(id)) = (u.text_of("Key"), u.text_of("UploadId")) else {
            continue;
        };
        uploads.push(ListedUpload {
            key: key(k)?,
            upload_id: id.to_string(),
            initiated: u.token_of("Initiated").and_then(parse_timestamp),
        });
    }
    Ok(UploadPage {
        uploads,
        truncated: root.token_of("IsTruncated") == Some("true"),
        next_key: key(root.text_of("NextKeyMarker").unwrap_or(""))?,
        next_id: root.text_of("NextUploadIdMarker").unwrap_or("").to_string(),
    })
}

/// Whether a listing that says `EncodingType: url` really encoded its
/// keys: url encoding leaves no space, control character, non-ASCII
/// character or XML-special character raw, so one of those in any key
/// means the server only echoed the parameter (s3s-fs 0.14 does) and the
/// keys are as stored. (Keys whose only special character is `+` stay
/// ambiguous on such a server.)
pub(super) fn really_encoded<'a>(claimed: bool, mut keys: impl Iterator<Item = &'a str>) -> bool {
    claimed
        && !keys.any(|k| {
            k.chars()
                .any(|c| c == ' ' || !c.is_ascii() || c.is_ascii_control() || "&<>\"'".contains(c))
        })
}

/// A key (or key marker) as a listing asked with `encoding-type=url` gives
/// it: decoded when the answer says it is encoded (`encoded`: its
/// `EncodingType` is `url`), taken as it is otherwise. An undecodable key
/// is an error, never a guess: it would name another object.
pub(super) fn listed_key(encoded: bool, text: &str) -> std::result::Result<String, String> {
    if !encoded {
        return Ok(text.to_string());
    }
    encode::form_decode(text).ok_or_else(|| format!("undecodable url-encoded key {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_upload_keys_are_decoded_only_when_the_answer_says_so() {
        let page = |encoding: &str| {
            let body = format!(
                "<ListMultipartUploadsResult>{encoding}<IsTruncated> true </IsTruncated>\
                 <NextKeyMarker>a+b%2Bc</NextKeyMarker><NextUploadIdMarker> i2</NextUploadIdMarker>\
                 <Upload><Key>++orphan++.bin+</Key><UploadId> i1 </UploadId>\
                 <Initiated>\n2024-01-01T00:00:00.000Z\n</Initiated></Upload>\
                 <Upload><Key>%C3%BC%2541</Key><UploadId>i2</UploadId></Upload>\
                 </ListMultipartUploadsResult>"
            );
            upload_page(&xml::parse(body.as_bytes()).unwrap())
        };
        let p = page("<EncodingType>url</EncodingType>").unwrap();
        let keys: Vec<_> = p.uploads.iter().map(|u| u.key.as_str()).collect();
        assert_eq!(keys, ["  orphan  .bin ", "ü%41"]);
        assert_eq!(
            p.uploads[0].upload_id, " i1 ",
            "upload ids are kept exactly"
        );
        assert!(p.uploads[0].initiated.is_some());
        assert!(p.truncated);
        assert_eq!((p.next_key.as_str(), p.next_id.as_str()), ("a b+c", " i2"));
        // A server that ignored encoding-type sent the keys as they are.
        let p = page("").unwrap();
        assert_eq!(p.uploads[0].key, "++orphan++.bin+");
        assert_eq!(p.next_key, "a+b%2Bc");
        let body = b"<ListMultipartUploadsResult><EncodingType>url</EncodingType>\
            <Upload><Key>%zz</Key><UploadId>i</UploadId></Upload></ListMultipartUploadsResult>";
        let e = upload_page(&xml::parse(body).unwrap()).err().unwrap();
        assert!(e.contains("\"%zz\""), "{e}");
    }
}

//! What a user does with what is stored: ListObjectsV2 (every page, keys
//! exact), DeleteObjects (1,000 keys a request, every key accounted for)
//! and SigV4 presigned URLs.
//!
//! Listings ask for `encoding-type=url` so that any key survives XML, and
//! decode only when the answer says it is encoded (the rule `list.rs`
//! follows for uploads). A deletion asks for the verbose answer (Quiet off)
//! and matches it key by key against what it sent: a key the server names
//! neither as deleted nor as failed is a failure, never a success.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use md5::{Digest, Md5};

use super::list::listed_key;
use super::{encode, parse_timestamp, unquote_str, xml, Body, Request, Store};
use crate::error::{Error, ErrorKind, Result};

/// S3's limit on the keys of one DeleteObjects request.
const DELETE_BATCH: usize = 1000;

/// The longest a SigV4 presigned URL may stay valid: 7 days.
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Attempts of one listing page or one DeleteObjects request (both are
/// idempotent) before a retryable failure is given up.
const ATTEMPTS: u32 = 4;

/// An object as ListObjectsV2 lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// The key, exactly as stored.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// The ETag, quotes removed (`md5-N` for a multipart object; empty when
    /// the server does not say).
    pub etag: String,
    /// When it was last written, if the server says.
    pub last_modified: Option<SystemTime>,
}

/// A key a deletion did not delete, and the server's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteFailure {
    /// The key.
    pub key: String,
    /// The S3 error code (`AccessDenied`, ...); for a key the server did not
    /// answer for, or a request that failed as a whole, what is known.
    pub code: String,
    /// The server's words, or why the key's fate is not known.
    pub message: String,
}

/// What a deletion did: every key asked for is in exactly one of the lists.
#[derive(Debug, Clone, Default)]
pub struct DeleteReport {
    /// Keys the server confirmed deleted (S3 confirms a key that did not
    /// exist too: it is gone either way).
    pub deleted: Vec<String>,
    /// Keys not deleted, in the order they were asked for.
    pub failed: Vec<DeleteFailure>,
    /// A request that failed as a whole (after retries), which ended the
    /// deletion: its keys, and every later one (not attempted), are in
    /// `failed`; the keys of that request may or may not have been deleted.
    pub error: Option<Error>,
}

impl DeleteReport {
    /// Whether every key was deleted.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// One page of ListObjectsV2.
struct ObjectPage {
    objects: Vec<ListedObject>,
    next_token: Option<String>,
}

impl Store {
    /// Deletes an object.
    pub fn delete_object(&self, key: &str) -> Result<()> {
        self.call(Request {
            operation: "DeleteObject",
            method: "DELETE",
            key: Some(key),
            query: &[],
            headers: Vec::new(),
            body: Body::Empty,
            endpoint_hint: 0,
        })?;
        Ok(())
    }

    /// One page of ListObjectsV2 under `prefix` ("" for the whole bucket),
    /// from `token` (the previous page's; `None` for the first), of at most
    /// `max_keys` objects (`None`: the server's default, 1,000 on S3).
    /// Returns the objects, keys exact, and the next page's token (`None`
    /// at the end). A page that says it is truncated but gives no token is
    /// a malformed answer, not the end.
    pub fn list_objects_page(
        &self,
        prefix: &str,
        token: Option<&str>,
        max_keys: Option<u32>,
    ) -> Result<(Vec<ListedObject>, Option<String>)> {
        let max = match max_keys {
            Some(0) => {
                return Err(Error::config(
                    "max_keys: must be at least 1 (or unset for the server's default)",
                ))
            }
            Some(n) => n.to_string(),
            None => String::new(),
        };
        let mut query = vec![("list-type", "2"), ("encoding-type", "url")];
        if !prefix.is_empty() {
            query.push(("prefix", prefix));
        }
        if let Some(t) = token {
            query.push(("continuation-token", t));
        }
        if !max.is_empty() {
            query.push(("max-keys", &max));
        }
        let root = self.list_v2(prefix, &query)?;
        let mut encoded = root.token_of("EncodingType") == Some("url");
        if encoded {
            encoded = match self.inner.encodes_listings.get() {
                Some(known) => *known,
                None => self.encodes_listings(prefix, &query, &root)?,
            };
        }
        let page = object_page(&root, encoded)
            .map_err(|why| self.malformed("ListObjectsV2", prefix, &why))?;
        Ok((page.objects, page.next_token))
    }

    fn list_v2(&self, prefix: &str, query: &[(&'static str, &str)]) -> Result<xml::Element> {
        let reply = retrying(|| {
            self.call(Request {
                operation: "ListObjectsV2",
                method: "GET",
                key: None,
                query,
                headers: Vec::new(),
                body: Body::Empty,
                endpoint_hint: 0,
            })
        })?;
        let root = self.parse_body("ListObjectsV2", prefix, &reply.body)?;
        if root.name == "Error" {
            return Err(self.error_from_xml("ListObjectsV2", prefix, 200, &root, None));
        }
        Ok(root)
    }

    /// Whether the server really url-encoded `root`, a page that says it
    /// did. A raw space, non-ASCII character or markup character in a key
    /// says it did not (an encoder escapes those); a key with `+` or `%`
    /// and no such tell is ambiguous, so the page is asked again without
    /// `encoding-type`: the same keys mean the server never encodes. The
    /// verdict is kept for this client; a page of plain keys decides
    /// nothing (both readings agree).
    fn encodes_listings(
        &self,
        prefix: &str,
        query: &[(&'static str, &str)],
        root: &xml::Element,
    ) -> Result<bool> {
        let keys = |root: &xml::Element| -> Vec<String> {
            root.children("Contents")
                .filter_map(|c| c.text_of("Key").map(str::to_string))
                .collect()
        };
        let listed = keys(root);
        let tell =
            |c: char| !c.is_ascii() || c.is_ascii_control() || " <>&\"#?\\^{}|[]`".contains(c);
        let verdict = if listed.iter().any(|k| k.chars().any(tell)) {
            false
        } else if listed.iter().any(|k| k.contains(['+', '%'])) {
            let raw: Vec<_> = query
                .iter()
                .filter(|(k, _)| *k != "encoding-type")
                .copied()
                .collect();
            keys(&self.list_v2(prefix, &raw)?) != listed
        } else {
            return Ok(true);
        };
        if !verdict {
            log::debug!("the server says it url-encodes listings and does not: keys taken as sent");
        }
        Ok(*self.inner.encodes_listings.get_or_init(|| verdict))
    }

    /// Every object under `prefix` ("" for the whole bucket), all pages, in
    /// the server's order (UTF-8 binary order on S3).
    pub fn list_objects(&self, prefix: &str) -> Result<Vec<ListedObject>> {
        self.list_objects_with(prefix, None)
    }

    /// [`list_objects`](Store::list_objects) asking `max_keys` per page.
    pub fn list_objects_with(
        &self,
        prefix: &str,
        max_keys: Option<u32>,
    ) -> Result<Vec<ListedObject>> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (page, next) = self.list_objects_page(prefix, token.as_deref(), max_keys)?;
            objects.extend(page);
            match next {
                None => return Ok(objects),
                // The same page again, forever: a server bug, not the end.
                Some(t) if token.as_deref() == Some(t.as_str()) => {
                    return Err(self.malformed(
                        "ListObjectsV2",
                        prefix,
                        &format!("the server repeated continuation token {t:?}"),
                    ))
                }
                Some(t) => token = Some(t),
            }
        }
    }

    /// Deletes `keys` with DeleteObjects, at most 1,000 a request, each
    /// request carrying its Content-MD5 (S3 requires one) and asking for
    /// the verbose answer so every key is confirmed. Keys that XML 1.0
    /// cannot carry (control characters other than tab, newline and carriage
    /// return) go one by one through DeleteObject. Duplicates are deleted
    /// once.
    ///
    /// Per-key failures are in the report, never an `Err`; a request that
    /// fails as a whole (after retries) ends the deletion and is the
    /// report's `error`. `Err` only for a bad argument.
    pub fn delete_objects(&self, keys: &[String]) -> Result<DeleteReport> {
        let mut report = DeleteReport::default();
        let mut seen = HashSet::new();
        let (mut in_xml, mut alone) = (Vec::new(), Vec::new());
        for key in keys {
            if key.is_empty() {
                return Err(Error::input("delete_objects: a key must not be empty"));
            }
            if seen.insert(key.as_str()) {
                if xml_can_carry(key) {
                    in_xml.push(key.as_str());
                } else {
                    alone.push(key.as_str());
                }
            }
        }
        let mut pending: Vec<&str> = Vec::new();
        for (i, chunk) in in_xml.chunks(DELETE_BATCH).enumerate() {
            if report.error.is_some() {
                pending.extend_from_slice(chunk);
                continue;
            }
            if let Err(e) = self.delete_chunk(chunk, i, &mut report) {
                fail_all(&mut report.failed, chunk, &e, "");
                report.error = Some(e);
            }
        }
        for key in alone {
            if report.error.is_some() {
                pending.push(key);
                continue;
            }
            match retrying(|| self.delete_object(key)) {
                Ok(()) => report.deleted.push(key.to_string()),
                Err(e) if e.kind() == ErrorKind::Server => {
                    fail_all(&mut report.failed, &[key], &e, "")
                }
                Err(e) => {
                    fail_all(&mut report.failed, &[key], &e, "");
                    report.error = Some(e);
                }
            }
        }
        if let Some(e) = &report.error {
            let why = "not attempted: an earlier request failed: ";
            fail_all(&mut report.failed, &pending, e, why);
        }
        Ok(report)
    }

    /// One DeleteObjects request; its keys land in `report`.
    fn delete_chunk(&self, keys: &[&str], index: usize, report: &mut DeleteReport) -> Result<()> {
        let mut body = String::with_capacity(96 + keys.len() * 64);
        body.push_str(
            "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>false</Quiet>",
        );
        for key in keys {
            body.push_str("<Object><Key>");
            body.push_str(&xml_text(key));
            body.push_str("</Key></Object>");
        }
        body.push_str("</Delete>");
        let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(body.as_bytes()));
        let reply = retrying(|| {
            self.call(Request {
                operation: "DeleteObjects",
                method: "POST",
                key: None,
                query: &[("delete", "")],
                headers: vec![
                    ("content-type", "application/xml".into()),
                    ("content-md5", md5.clone()),
                ],
                body: Body::Bytes(body.as_bytes()),
                endpoint_hint: index,
            })
        })?;
        let what = keys[0];
        let root = self.parse_body("DeleteObjects", what, &reply.body)?;
        if root.name == "Error" {
            return Err(self.error_from_xml("DeleteObjects", "", 200, &root, None));
        }
        let outcome = delete_result(&root);
        for key in keys {
            match outcome.get(*key) {
                Some(None) => report.deleted.push(key.to_string()),
                Some(Some((code, message))) => report.failed.push(DeleteFailure {
                    key: key.to_string(),
                    code: code.clone(),
                    message: message.clone(),
                }),
                None => report.failed.push(DeleteFailure {
                    key: key.to_string(),
                    code: String::new(),
                    message: "not confirmed: the server's answer names this key neither as \
                              deleted nor as failed"
                        .into(),
                }),
            }
        }
        Ok(())
    }

    /// A SigV4 presigned URL (query-string signing) for `method` (GET or
    /// PUT, any case) on `key`, valid for `expires`: whole seconds, from
    /// 1 s to 7 days. Anyone holding it may do that one thing until then,
    /// with a plain HTTP client and no credentials. The URL goes to the
    /// first endpoint. With a session token it carries
    /// `X-Amz-Security-Token`, and it dies with the token.
    pub fn presign(&self, method: &str, key: &str, expires: Duration) -> Result<String> {
        let method = match method.to_ascii_uppercase().as_str() {
            "GET" => "GET",
            "PUT" => "PUT",
            _ => {
                return Err(Error::config(format!(
                    "presign: method '{}' is not supported: use GET or PUT",
                    method.escape_debug()
                )))
            }
        };
        if expires < Duration::from_secs(1) || expires > MAX_PRESIGN_EXPIRY {
            return Err(Error::config(format!(
                "presign: expiry {}s is out of range: SigV4 presigned URLs last from 1 second \
                 to 7 days (604800 seconds)",
                expires.as_secs_f64()
            )));
        }
        if method == "PUT" {
            crate::plan::check_key(key)?;
        } else if key.is_empty() {
            return Err(Error::input("invalid key '': a key must not be empty"));
        }
        let ep = &self.inner.endpoints[0];
        let (authority, path) = self.locate(ep, Some(key));
        let url = format!("{}://{}{}", ep.scheme(), authority, path);
        let expires = Duration::from_secs(expires.as_secs());
        let params =
            self.inner
                .signer
                .presign(method, &url, &authority, expires, SystemTime::now())?;
        let mut out = url;
        for (i, (k, v)) in params.iter().enumerate() {
            out.push(if i == 0 { '?' } else { '&' });
            out.push_str(k);
            out.push('=');
            out.push_str(&encode::query_value(v));
        }
        Ok(out)
    }
}

/// Runs an idempotent request until it succeeds or fails for good:
/// retryable failures up to [`ATTEMPTS`] times with a growing pause, and a
/// dead keep-alive connection once more at once.
fn retrying<T>(mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    let mut n = 1;
    let mut free_retry = true;
    loop {
        match attempt() {
            Ok(v) => return Ok(v),
            Err(e) if e.is_stale_connection() && free_retry => free_retry = false,
            Err(e) if e.is_retryable() && n < ATTEMPTS => {
                let pause = if e.is_throttle() { 1000 } else { 200 };
                std::thread::sleep(Duration::from_millis(pause << (2 * (n - 1))));
                n += 1;
            }
            Err(e) => return Err(e.with_attempts(n)),
        }
    }
}

/// Records `keys` as failed for `err`, the message prefixed with `why`.
fn fail_all(failed: &mut Vec<DeleteFailure>, keys: &[&str], err: &Error, why: &str) {
    let code = err
        .code()
        .map(str::to_string)
        .unwrap_or_else(|| format!("{:?}", err.kind()));
    failed.extend(keys.iter().map(|k| DeleteFailure {
        key: k.to_string(),
        code: code.clone(),
        message: format!("{why}{err}"),
    }));
}

/// Whether XML 1.0 can carry `key` as element text: it has no control
/// characters but tab, newline and carriage return (sent as character
/// references, so no parser normalises them) and no U+FFFE / U+FFFF.
fn xml_can_carry(key: &str) -> bool {
    key.chars().all(|c| {
        (!c.is_control() || matches!(c, '\t' | '\n' | '\r'))
            && !matches!(c, '\u{FFFE}' | '\u{FFFF}')
    })
}

/// A key as element text: markup escaped, and tab, newline and carriage
/// return as character references (a parser turns a literal `\r\n` into
/// `\n`, which names another key).
fn xml_text(key: &str) -> String {
    xml::escape(key)
        .replace('\t', "&#9;")
        .replace('\n', "&#10;")
        .replace('\r', "&#13;")
}

/// A DeleteResult: each key named, with `None` for deleted or the error
/// code and message. A key named both ways counts as failed.
fn delete_result(root: &xml::Element) -> HashMap<String, Option<(String, String)>> {
    let mut outcome = HashMap::new();
    for d in root.children("Deleted") {
        if let Some(k) = d.text_of("Key") {
            outcome.entry(k.to_string()).or_insert(None);
        }
    }
    for e in root.children("Error") {
        if let Some(k) = e.text_of("Key") {
            let code = e.token_of("Code").unwrap_or("").to_string();
            let message = e.token_of("Message").unwrap_or("").to_string();
            outcome.insert(k.to_string(), Some((code, message)));
        }
    }
    outcome
}

/// Reads a ListObjectsV2 page, keys decoded when `encoded` (see
/// `list::listed_key`).
fn object_page(root: &xml::Element, encoded: bool) -> std::result::Result<ObjectPage, String> {
    let mut objects = Vec::new();
    for c in root.children("Contents") {
        let key = c.text_of("Key").ok_or("an object without a Key")?;
        let key = listed_key(encoded, key)?;
        let size = c
            .token_of("Size")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("object {key:?} has no valid Size"))?;
        objects.push(ListedObject {
            size,
            etag: c.text_of("ETag").map(unquote_str).unwrap_or_default(),
            last_modified: c.token_of("LastModified").and_then(parse_timestamp),
            key,
        });
    }
    let truncated = root.token_of("IsTruncated") == Some("true");
    // Continuation tokens are opaque: never trimmed, never decoded.
    let token = root
        .text_of("NextContinuationToken")
        .filter(|t| !t.is_empty());
    let next_token = match (truncated, token) {
        (false, _) => None,
        (true, Some(t)) => Some(t.to_string()),
        (true, None) => {
            return Err(
                "IsTruncated is true but there is no NextContinuationToken: \
                        the rest of the listing cannot be asked for"
                    .into(),
            )
        }
    };
    Ok(ObjectPage {
        objects,
        next_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(body: &str) -> std::result::Result<ObjectPage, String> {
        let root = xml::parse(body.as_bytes()).unwrap();
        object_page(&root, root.token_of("EncodingType") == Some("url"))
    }

    #[test]
    fn listed_objects_are_decoded_only_when_the_answer_says_so() {
        let body = |encoding: &str| {
            format!(
                "<ListBucketResult>{encoding}<IsTruncated>true</IsTruncated>\
                 <NextContinuationToken> a+b/c%2F= </NextContinuationToken>\
                 <Contents><Key>a+b%2Bc%2F%26%3C.bin</Key><Size> 12 </Size>\
                 <ETag>&quot;0123-2&quot;</ETag>\
                 <LastModified>2024-01-01T00:00:00.000Z</LastModified></Contents>\
                 <Contents><Key>%C3%BC</Key><Size>0</Size></Contents>\
                 </ListBucketResult>"
            )
        };
        let p = page(&body("<EncodingType>url</EncodingType>")).unwrap();
        let keys: Vec<_> = p.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["a b+c/&<.bin", "ü"]);
        assert_eq!(p.objects[0].size, 12);
        assert_eq!(p.objects[0].etag, "0123-2");
        assert!(p.objects[0].last_modified.is_some());
        assert_eq!(
            (p.objects[1].etag.as_str(), p.objects[1].last_modified),
            ("", None)
        );
        assert_eq!(
            p.next_token.as_deref(),
            Some(" a+b/c%2F= "),
            "tokens are opaque"
        );
        let p = page(&body("")).unwrap();
        assert_eq!(p.objects[0].key, "a+b%2Bc%2F%26%3C.bin");
    }

    #[test]
    fn a_truncated_page_without_a_token_is_an_error_not_the_end() {
        let e = page("<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>")
            .err()
            .unwrap();
        assert!(e.contains("no NextContinuationToken"), "{e}");
        let p = page(
            "<ListBucketResult><IsTruncated>false</IsTruncated>\
             <NextContinuationToken>x</NextContinuationToken></ListBucketResult>",
        )
        .unwrap();
        assert!(p.next_token.is_none() && p.objects.is_empty());
        let e = page("<ListBucketResult><Contents><Key>k</Key></Contents></ListBucketResult>")
            .err()
            .unwrap();
        assert!(e.contains("\"k\" has no valid Size"), "{e}");
    }

    /// The DeleteObjects answer of the S3 API reference (one key deleted,
    /// one refused), with the keys spelt with entities as S3 sends them.
    #[test]
    fn a_delete_result_names_each_key_deleted_or_failed() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Deleted><Key>sample1.txt</Key></Deleted>
  <Error><Key>sample2 &amp; &lt;x&gt;.txt</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>
  <Deleted><Key>line&#10;break</Key></Deleted>
</DeleteResult>"#;
        let r = delete_result(&xml::parse(body).unwrap());
        assert_eq!(r.get("sample1.txt"), Some(&None));
        assert_eq!(r.get("line\nbreak"), Some(&None));
        assert_eq!(
            r.get("sample2 & <x>.txt"),
            Some(&Some(("AccessDenied".into(), "Access Denied".into())))
        );
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn keys_are_sent_so_that_xml_keeps_them_exactly() {
        assert_eq!(xml_text("a&b<c>\r\n\t"), "a&amp;b&lt;c&gt;&#13;&#10;&#9;");
        let back = xml::parse(format!("<K>{}</K>", xml_text(" a\r\nb ")).as_bytes()).unwrap();
        assert_eq!(back.text, " a\r\nb ");
        assert!(xml_can_carry("tab\tnewline\ncr\r ü"));
        assert!(!xml_can_carry("bell\u{7}"));
        assert!(!xml_can_carry("nul\0"));
        assert!(!xml_can_carry("\u{FFFF}"));
    }
}

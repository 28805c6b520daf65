//! GetObject streamed: a byte range or a part of an object, its bytes
//! handed to a sink as they arrive (the download engine writes them with
//! pwrite), and the headers that say what those bytes are.

use std::io;

use super::http::{self, Sink};
use super::wire::Head;
use super::{unquote, Body, ObjectInfo, Request, Store};
use crate::error::Result;

/// What to fetch.
#[derive(Debug, Clone, Copy, Default)]
pub struct GetSpec<'a> {
    /// `Range: bytes=offset-(offset+len-1)`; `None`: the whole object (or
    /// the whole part).
    pub range: Option<(u64, u64)>,
    /// `?partNumber=N`: the bytes of part N as the object was uploaded.
    pub part_number: Option<u32>,
    /// `If-Match`: the ETag the object must still have (quotes added).
    pub if_match: Option<&'a str>,
}

/// `Content-Range: bytes start-end/total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// The first byte's offset.
    pub start: u64,
    /// Inclusive.
    pub end: u64,
    /// `None` for `*`.
    pub total: Option<u64>,
}

impl ContentRange {
    /// Parses `bytes 0-99/1234` (or `/*`).
    pub fn parse(v: &str) -> Option<ContentRange> {
        let rest = v.trim().strip_prefix("bytes")?.trim_start();
        let (span, total) = rest.split_once('/')?;
        let (start, end) = span.split_once('-')?;
        let start: u64 = start.trim().parse().ok()?;
        let end: u64 = end.trim().parse().ok()?;
        let total = match total.trim() {
            "*" => None,
            t => Some(t.parse().ok()?),
        };
        (start <= end && total.is_none_or(|t| end < t)).then_some(ContentRange {
            start,
            end,
            total,
        })
    }

    /// Bytes in the range.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Never: a range holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What a successful GET (or HEAD) answer says about its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetHead {
    /// The HTTP status (200, 206).
    pub status: u16,
    /// Quotes removed.
    pub etag: Option<String>,
    /// `Content-Length`: the bytes of this answer.
    pub length: Option<u64>,
    /// `Content-Range`: where the bytes lie in the object.
    pub range: Option<ContentRange>,
    /// `x-amz-mp-parts-count`: the object's parts, when asked by part.
    pub parts_count: Option<u32>,
}

impl GetHead {
    fn of(head: &Head) -> GetHead {
        GetHead {
            status: head.status,
            etag: head.header("etag").map(|e| unquote(e.to_string())),
            length: head.header("content-length").and_then(|v| v.parse().ok()),
            range: head.header("content-range").and_then(ContentRange::parse),
            parts_count: head
                .header("x-amz-mp-parts-count")
                .and_then(|v| v.trim().parse().ok()),
        }
    }
}

/// Where a GET's bytes go: told the answer's head first, then given the
/// body in order. An error from either ends the request as a local
/// failure (a full disk, a cancel), not a network one.
pub trait ObjectSink {
    /// The answer's head, before any byte of the body.
    fn begin(&mut self, head: &GetHead) -> io::Result<()>;
    /// The next piece of the body.
    fn data(&mut self, bytes: &[u8]) -> io::Result<()>;
}

/// The transport's sink, translating heads for an [`ObjectSink`].
struct Adapter<'a> {
    sink: &'a mut dyn ObjectSink,
    head: Option<GetHead>,
}

impl Sink for Adapter<'_> {
    fn head(&mut self, head: &Head) -> io::Result<()> {
        let head = GetHead::of(head);
        self.sink.begin(&head)?;
        self.head = Some(head);
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sink.data(bytes)
    }
}

impl Store {
    /// Size and ETag of an object, or `None` when it does not exist.
    pub fn head_object(&self, key: &str) -> Result<Option<ObjectInfo>> {
        self.head(key, false)
    }

    /// [`head_object`](Store::head_object) with `x-amz-checksum-mode:
    /// ENABLED`: the object's stored CRC32C too, where the store keeps one
    /// (a stored checksum identifies an object uploaded without MD5s).
    pub fn head_object_checksum(&self, key: &str) -> Result<Option<ObjectInfo>> {
        self.head(key, true)
    }

    fn head(&self, key: &str, checksum: bool) -> Result<Option<ObjectInfo>> {
        let headers = if checksum {
            vec![("x-amz-checksum-mode", "ENABLED".to_string())]
        } else {
            Vec::new()
        };
        match self.call(Request {
            operation: "HeadObject",
            method: "HEAD",
            key: Some(key),
            query: &[],
            headers,
            body: Body::Empty,
            endpoint_hint: 0,
        }) {
            Ok(reply) => Ok(Some(ObjectInfo {
                size: reply.content_length.unwrap_or(0),
                etag: reply.etag.map(unquote).unwrap_or_default(),
                content_type: reply.content_type,
                crc32c: reply.checksum_crc32c.map(|c| c.trim().to_string()),
                checksum_type: reply.checksum_type.map(|t| t.trim().to_ascii_uppercase()),
            })),
            Err(e) if e.status() == Some(404) && e.code() != Some("NoSuchBucket") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads a whole object into memory (tests, verification).
    pub fn get_object(&self, key: &str) -> Result<Vec<u8>> {
        Ok(self
            .call(Request {
                operation: "GetObject",
                method: "GET",
                key: Some(key),
                query: &[],
                headers: Vec::new(),
                body: Body::Empty,
                endpoint_hint: 0,
            })?
            .body)
    }

    /// GetObject with `spec`, its body streamed to `sink`. Returns the
    /// answer's head. A 412 (the object no longer matches `if_match`) is an
    /// error with code `PreconditionFailed`.
    pub fn get_into(
        &self,
        key: &str,
        spec: &GetSpec<'_>,
        sink: &mut dyn ObjectSink,
    ) -> Result<GetHead> {
        self.get_or_head("GET", key, spec, sink)
    }

    /// HeadObject of part `part` (`?partNumber=N`): its length, the
    /// object's part count and where the part lies, on stores that keep
    /// parts apart; `None` when the object does not exist.
    pub fn head_part(&self, key: &str, part: u32) -> Result<Option<GetHead>> {
        struct Nothing;
        impl ObjectSink for Nothing {
            fn begin(&mut self, _: &GetHead) -> io::Result<()> {
                Ok(())
            }
            fn data(&mut self, _: &[u8]) -> io::Result<()> {
                Ok(())
            }
        }
        let spec = GetSpec {
            part_number: Some(part),
            ..GetSpec::default()
        };
        match self.get_or_head("HEAD", key, &spec, &mut Nothing) {
            Ok(head) => Ok(Some(head)),
            Err(e) if e.status() == Some(404) && e.code() != Some("NoSuchBucket") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The head of a GET of part `part` (`?partNumber=N`), its body left
    /// unread (the connection is closed): what a store does with a part
    /// number. `None` when the request failed.
    pub fn get_head_only(&self, key: &str, part: u32) -> Option<GetHead> {
        struct HeadOnly(Option<GetHead>);
        impl ObjectSink for HeadOnly {
            fn begin(&mut self, head: &GetHead) -> io::Result<()> {
                self.0 = Some(head.clone());
                Err(io::Error::other("only the head was wanted"))
            }
            fn data(&mut self, _: &[u8]) -> io::Result<()> {
                Ok(())
            }
        }
        let spec = GetSpec {
            part_number: Some(part),
            ..GetSpec::default()
        };
        let mut sink = HeadOnly(None);
        let _ = self.get_or_head("GET", key, &spec, &mut sink);
        sink.0
    }

    fn get_or_head(
        &self,
        method: &'static str,
        key: &str,
        spec: &GetSpec<'_>,
        sink: &mut dyn ObjectSink,
    ) -> Result<GetHead> {
        let mut headers = Vec::new();
        if let Some((offset, len)) = spec.range {
            // An empty range cannot be written as a byte range.
            debug_assert!(len > 0);
            headers.push((
                "range",
                format!("bytes={}-{}", offset, offset + len.max(1) - 1),
            ));
        }
        if let Some(etag) = spec.if_match {
            headers.push(("if-match", format!("\"{etag}\"")));
        }
        let part = spec.part_number.map(|n| n.to_string());
        let query: Vec<(&'static str, &str)> = match &part {
            Some(n) => vec![("partNumber", n.as_str())],
            None => Vec::new(),
        };
        let mut adapter = Adapter { sink, head: None };
        self.call_to(
            Request {
                operation: if method == "HEAD" {
                    "HeadObject"
                } else {
                    "GetObject"
                },
                method,
                key: Some(key),
                query: &query,
                headers,
                body: Body::Empty,
                endpoint_hint: 0,
            },
            &mut adapter as &mut dyn http::Sink,
        )?;
        Ok(adapter.head.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::ContentRange;

    #[test]
    fn content_ranges_parse_strictly() {
        let r = ContentRange::parse("bytes 0-99/1234").unwrap();
        assert_eq!((r.start, r.end, r.total, r.len()), (0, 99, Some(1234), 100));
        assert_eq!(ContentRange::parse("bytes 5-5/*").unwrap().total, None);
        for bad in [
            "bytes 9-1/10",
            "bytes 0-10/10",
            "items 0-1/2",
            "bytes -1/2",
            "bytes 0-1",
            "bytes a-b/c",
        ] {
            assert_eq!(ContentRange::parse(bad), None, "{bad}");
        }
    }
}

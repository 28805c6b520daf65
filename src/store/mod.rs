//! The S3 protocol: endpoints, signing, requests, XML, error mapping.
//!
//! [`Store`] is a synchronous S3 client for one bucket. It speaks the eight
//! operations an uploader needs (in `uploads`: PutObject,
//! CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
//! AbortMultipartUpload; in `list`: ListParts, ListMultipartUploads; in
//! `get`: HeadObject) plus CreateBucket (`uploads`), GetObject (`get`) and
//! DeleteObject (`objects`) for tests and the janitor, and (in `objects`)
//! what a user does with what is stored: ListObjectsV2, DeleteObjects and
//! presigned URLs. This module holds what they share: the endpoints and
//! their health, and one request's signing, sending and error mapping.
//! Bodies stream from a reader with `Content-Length` always set: never
//! chunked, never aws-chunked, which OBS, OSS and older MinIO reject.
//!
//! One HTTP client (see `http`) is shared by the workers; its pool of idle
//! connections is sized to the worker count, so each worker in practice
//! keeps its own connection.
//! Several endpoints (the nodes of one cluster) are spread over by a hint
//! the caller passes (its worker index); a connection-level failure marks an
//! endpoint down for a while, and the next request goes elsewhere.

mod ack;
mod body;
mod connect;
mod encode;
mod endpoint;
mod errors;
mod failure;
mod get;
mod http;
pub(crate) mod interrupt;
mod list;
mod objects;
mod sign;
mod tls;
mod uploads;
mod wire;
mod xml;

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;

use crate::config::{Addressing, Config};
use crate::error::{Error, ErrorKind, Result};

pub(crate) use body::page_aligned;
pub(crate) use encode::parse_timestamp;
pub use endpoint::Endpoint;
use errors::{error_from_root, server_error, transport_error};
pub use get::{ContentRange, GetHead, GetSpec, ObjectSink};
pub use objects::{DeleteFailure, DeleteReport, ListedObject, MAX_PRESIGN_EXPIRY};
use sign::{Payload, Signer};
use tls::tls_config;

/// Body bytes per socket write: the transport's 256 KiB, or a quarter of a
/// second's worth under a low rate limit (at least 1 KiB), so a limited
/// upload moves (and shows progress) several times a second.
fn piece_size(rate_limit: u64) -> usize {
    if rate_limit == 0 {
        return http::WRITE_CHUNK;
    }
    ((rate_limit / 4) as usize).clamp(1024, http::WRITE_CHUNK)
}

/// How long an endpoint that failed at the connection level is skipped.
const ENDPOINT_DOWN_FOR: Duration = Duration::from_secs(10);

thread_local! {
    /// The endpoint that answered this thread's last successful request.
    static LAST_ENDPOINT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the io error a body reader returns when the job is cancelled, so
/// that the failed request is recognised as a stop and not a network fault.
pub(crate) const CANCELLED: &str = "batchput: request cancelled";

/// A checksum sent with a body so the server verifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentChecksum {
    /// Nothing sent.
    None,
    /// `Content-MD5` (the MD5 of the body).
    ContentMd5([u8; 16]),
    /// `x-amz-checksum-crc32c`.
    Crc32c(u32),
}

/// A part as the server lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPart {
    /// 1-based part number.
    pub number: u32,
    /// The ETag, quotes removed (empty when the server does not say).
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
}

/// A multipart upload as the server lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedUpload {
    /// Object key.
    pub key: String,
    /// Upload id.
    pub upload_id: String,
    /// When it was initiated, if the server says.
    pub initiated: Option<SystemTime>,
}

/// What HeadObject learns of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Size in bytes.
    pub size: u64,
    /// ETag, quotes removed.
    pub etag: String,
    /// Content-Type, when the server says.
    pub content_type: Option<String>,
    /// The object's CRC32C as the server reports it (`x-amz-checksum-crc32c`:
    /// base64, and `-N` for a multipart object's checksum of part
    /// checksums), when asked for with [`Store::head_object_checksum`] and
    /// the store keeps one.
    pub crc32c: Option<String>,
    /// What that CRC32C covers (`x-amz-checksum-type`): `FULL_OBJECT` (the
    /// whole object's bytes) or `COMPOSITE` (its parts' checksums), when
    /// the server says.
    pub checksum_type: Option<String>,
}

/// A part to name in CompleteMultipartUpload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    /// 1-based part number.
    pub number: u32,
    /// The ETag the server returned for it, quotes removed.
    pub etag: String,
    /// The base64 CRC32C sent with it, when integrity is crc32c.
    pub crc32c: Option<String>,
}

/// A request body.
pub enum Body<'a> {
    /// No body (GET, HEAD, DELETE).
    Empty,
    /// A small body in memory.
    Bytes(&'a [u8]),
    /// `len` bytes streamed from `reader`; `Content-Length` is `len`.
    Reader(&'a mut dyn Read, u64),
    /// `len` bytes of `file` from `offset`, sent by the kernel (sendfile)
    /// over plain http, read and written over https. `pace(n)` runs before
    /// each piece of `n` bytes: it may wait (a rate limit) or refuse (an
    /// error, such as a cancel).
    File {
        /// The open file.
        file: &'a std::fs::File,
        /// Where the range starts.
        offset: u64,
        /// How many bytes; `Content-Length`.
        len: u64,
        /// Called before each piece.
        pace: &'a mut dyn FnMut(u64) -> std::io::Result<()>,
    },
}

/// One answer: status, the headers we use, and the whole body.
struct Reply {
    etag: Option<String>,
    content_type: Option<String>,
    content_length: Option<u64>,
    checksum_crc32c: Option<String>,
    checksum_type: Option<String>,
    body: Vec<u8>,
}

struct Request<'a, 'b> {
    operation: &'static str,
    method: &'static str,
    key: Option<&'a str>,
    query: &'a [(&'static str, &'a str)],
    headers: Vec<(&'static str, String)>,
    body: Body<'b>,
    endpoint_hint: usize,
}

/// Whether a server answers `operation` as soon as it has the request (or
/// its body): not a listing, whose answer waits for the server to walk its
/// keys or parts, nor a CompleteMultipartUpload or DeleteObjects, which
/// join parts or delete up to 1,000 keys first. Only such answers tell the
/// round trip (see `http::Target::times_round_trip`): a download of a
/// prefix began with its listing, whose 43 ms on loopback made `auto` take
/// s3s-fs for a far store and start at 256 requests in flight.
fn answers_at_once(operation: &str) -> bool {
    !matches!(
        operation,
        "ListObjectsV2"
            | "ListParts"
            | "ListMultipartUploads"
            | "CompleteMultipartUpload"
            | "DeleteObjects"
    )
}

/// Down-until marks, one per endpoint, as milliseconds since `epoch`.
struct Health {
    epoch: Instant,
    down_until_ms: Vec<AtomicU64>,
}

/// A synchronous S3 client for one bucket. Cheap to clone; share it.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    /// Every request goes to this endpoint, up or down (see [`Store::pinned`]).
    pin: Option<usize>,
}

struct Inner {
    endpoints: Vec<Endpoint>,
    health: Health,
    bucket: String,
    addressing: Addressing,
    signer: Signer,
    client: http::Client,
    /// Headers every new object gets: ACL, content type, storage class, metadata.
    object_headers: Vec<(&'static str, String)>,
    meta_headers: Vec<(String, String)>,
    /// `integrity=crc32c`: [`Store::create_multipart_upload`] declares the
    /// CRC32C algorithm.
    crc32c_uploads: bool,
    /// Whether the server really url-encodes the keys of a listing that
    /// says `EncodingType: url` (s3s-fs says so and does not), once a
    /// listing has shown it (see `objects`).
    encodes_listings: std::sync::OnceLock<bool>,
}

impl Store {
    /// Builds a client from the configuration: endpoints, credentials (from
    /// the config or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
    /// AWS_SESSION_TOKEN), TLS roots (plus `ca_file` or AWS_CA_BUNDLE, read
    /// only when an endpoint is https), proxy and timeouts.
    pub fn new(cfg: &Config) -> Result<Store> {
        cfg.validate()?;
        let endpoints = cfg
            .endpoints
            .iter()
            .map(|e| Endpoint::parse(e))
            .collect::<Result<Vec<_>>>()?;
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let access_key = cfg
            .access_key
            .clone()
            .or_else(|| env("AWS_ACCESS_KEY_ID"))
            .ok_or_else(|| {
                Error::config("option 'access_key': not set and AWS_ACCESS_KEY_ID is empty")
            })?;
        let secret_key = cfg
            .secret_key
            .clone()
            .or_else(|| env("AWS_SECRET_ACCESS_KEY"))
            .ok_or_else(|| {
                Error::config("option 'secret_key': not set and AWS_SECRET_ACCESS_KEY is empty")
            })?;
        let session_token = if cfg.access_key.is_some() {
            cfg.session_token.clone()
        } else {
            cfg.session_token
                .clone()
                .or_else(|| env("AWS_SESSION_TOKEN"))
        };

        let tls = if endpoints.iter().any(|e| e.https) {
            let ca_file = cfg
                .ca_file
                .clone()
                .or_else(|| env("AWS_CA_BUNDLE").map(Into::into));
            Some(Arc::new(tls_config(ca_file.as_deref())?))
        } else {
            None
        };
        let proxy = match &cfg.proxy {
            Some(url) => {
                let p = Endpoint::parse(url)
                    .map_err(|e| Error::config(format!("option 'proxy': {}", e.message())))?;
                Some(http::Proxy {
                    port: p.port(),
                    host: p.host,
                })
            }
            None => None,
        };
        let client = http::Client::new(http::Settings {
            connect_timeout: cfg.connect_timeout,
            io_timeout: cfg.request_timeout,
            tls,
            proxy,
            max_idle: cfg.pool_size() * 2 + 4,
            user_agent: concat!("batchput/", env!("CARGO_PKG_VERSION")),
            piece: piece_size(cfg.rate_limit),
        });

        let mut object_headers = Vec::new();
        if let Some(acl) = &cfg.acl {
            object_headers.push(("x-amz-acl", acl.clone()));
        }
        if let Some(ct) = &cfg.content_type {
            object_headers.push(("content-type", ct.clone()));
        }
        if let Some(sc) = &cfg.storage_class {
            object_headers.push(("x-amz-storage-class", sc.clone()));
        }
        let meta_headers = cfg
            .metadata
            .iter()
            .map(|(k, v)| (format!("x-amz-meta-{k}"), v.clone()))
            .collect();

        let n = endpoints.len();
        Ok(Store {
            inner: Arc::new(Inner {
                endpoints,
                health: Health {
                    epoch: Instant::now(),
                    down_until_ms: (0..n).map(|_| AtomicU64::new(0)).collect(),
                },
                bucket: cfg.bucket.clone(),
                addressing: cfg.addressing,
                signer: Signer::new(
                    &access_key,
                    &secret_key,
                    session_token.as_deref(),
                    &cfg.region,
                ),
                client,
                object_headers,
                meta_headers,
                crc32c_uploads: cfg.integrity == crate::Integrity::Crc32c,
                encodes_listings: std::sync::OnceLock::new(),
            }),
            pin: None,
        })
    }

    /// The bucket this client writes to.
    pub fn bucket(&self) -> &str {
        &self.inner.bucket
    }

    /// The endpoints, as URLs.
    pub fn endpoint_urls(&self) -> Vec<String> {
        self.inner.endpoints.iter().map(Endpoint::url).collect()
    }

    /// The shortest wait seen for an answer to begin: about the round trip
    /// to the store (see [`http::Client::answer_floor`]).
    pub fn answer_floor(&self) -> Option<std::time::Duration> {
        self.inner.client.answer_floor()
    }

    /// The URL of the endpoint that answered the calling thread's last
    /// successful request: which node of a cluster served a file.
    pub fn last_endpoint_url(&self) -> String {
        let i = LAST_ENDPOINT.with(|c| c.get());
        self.inner.endpoints[i.min(self.inner.endpoints.len() - 1)].url()
    }

    /// The same client, sending every request to endpoint `index` whatever
    /// its health: a question about one node (the integrity probe) must be
    /// answered by that node, not by the next one up.
    pub(crate) fn pinned(&self, index: usize) -> Store {
        Store {
            inner: self.inner.clone(),
            pin: Some(index % self.inner.endpoints.len()),
        }
    }

    /// The endpoint index a request with this hint goes to: the hinted one
    /// if it is up, else the next one up, else the hinted one anyway (all
    /// down: better to try than to fail without asking).
    fn pick_endpoint(&self, hint: usize) -> usize {
        if let Some(pinned) = self.pin {
            return pinned;
        }
        let n = self.inner.endpoints.len();
        let now = self.inner.health.epoch.elapsed().as_millis() as u64;
        (0..n)
            .map(|i| (hint + i) % n)
            .find(|&i| self.inner.health.down_until_ms[i].load(Ordering::Relaxed) <= now)
            .unwrap_or(hint % n)
    }

    fn mark_down(&self, index: usize) {
        let until = self.inner.health.epoch.elapsed() + ENDPOINT_DOWN_FOR;
        self.inner.health.down_until_ms[index].store(until.as_millis() as u64, Ordering::Relaxed);
    }

    fn call_with_meta(&self, mut req: Request<'_, '_>) -> Result<Reply> {
        // `&'static str` header names cannot carry the metadata names, so
        // metadata is appended after the static ones in `call_inner`.
        let meta = &self.inner.meta_headers;
        let extra: Vec<(&str, &str)> = meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let headers = std::mem::take(&mut req.headers);
        self.call_inner(req, headers, &extra, None)
    }

    fn call(&self, mut req: Request<'_, '_>) -> Result<Reply> {
        let headers = std::mem::take(&mut req.headers);
        self.call_inner(req, headers, &[], None)
    }

    /// [`call`](Store::call) with a successful answer's body streamed to
    /// `sink` (see `get`).
    fn call_to(&self, mut req: Request<'_, '_>, sink: &mut dyn http::Sink) -> Result<Reply> {
        let headers = std::mem::take(&mut req.headers);
        self.call_inner(req, headers, &[], Some(sink))
    }

    fn call_inner(
        &self,
        req: Request<'_, '_>,
        headers: Vec<(&'static str, String)>,
        extra: &[(&str, &str)],
        sink: Option<&mut dyn http::Sink>,
    ) -> Result<Reply> {
        let inner = &self.inner;
        let index = self.pick_endpoint(req.endpoint_hint);
        let ep = &inner.endpoints[index];
        let key_for_errors = req.key.unwrap_or("");
        let (authority, mut path_and_query) = self.locate(ep, req.key);
        for (i, (k, v)) in req.query.iter().enumerate() {
            path_and_query.push(if i == 0 { '?' } else { '&' });
            path_and_query.push_str(k);
            if !v.is_empty() {
                path_and_query.push('=');
                path_and_query.push_str(&encode::query_value(v));
            }
        }
        let url = format!("{}://{}{}", ep.scheme(), authority, path_and_query);

        let mut to_sign: Vec<(&str, &str)> = vec![("host", &authority)];
        to_sign.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
        to_sign.extend_from_slice(extra);
        let signed = inner.signer.sign(
            req.method,
            &url,
            &to_sign,
            Payload::Unsigned,
            SystemTime::now(),
        )?;
        let mut all: Vec<(&str, &str)> = to_sign;
        all.extend(signed.iter().map(|(k, v)| (k.as_str(), v.as_str())));

        let bucket_host;
        let host = match inner.addressing {
            Addressing::Path => ep.host.as_str(),
            Addressing::Virtual => {
                bucket_host = format!("{}.{}", inner.bucket, ep.host);
                bucket_host.as_str()
            }
        };
        let target = http::Target {
            https: ep.https,
            host,
            port: ep.port(),
            authority: &authority,
            path_and_query: &path_and_query,
            times_round_trip: answers_at_once(req.operation),
        };
        let body = match req.body {
            Body::Empty => http::ReqBody::Empty,
            Body::Bytes(b) => http::ReqBody::Bytes(b),
            Body::Reader(r, n) => http::ReqBody::Reader(r, n),
            Body::File {
                file,
                offset,
                len,
                pace,
            } => http::ReqBody::File {
                file,
                offset,
                len,
                pace,
            },
        };
        let context = |e: Error| {
            let e = e
                .with_operation(req.operation)
                .with_bucket(inner.bucket.clone())
                .with_endpoint(ep.url());
            if key_for_errors.is_empty() {
                e
            } else {
                e.with_key(key_for_errors)
            }
        };
        match inner.client.send_to(req.method, &target, &all, body, sink) {
            Ok(resp) if (200..300).contains(&resp.status) => {
                LAST_ENDPOINT.with(|c| c.set(index));
                Ok(Reply {
                    etag: resp.header("etag").map(str::to_string),
                    content_type: resp.header("content-type").map(str::to_string),
                    content_length: resp.header("content-length").and_then(|v| v.parse().ok()),
                    checksum_crc32c: resp.header("x-amz-checksum-crc32c").map(str::to_string),
                    checksum_type: resp.header("x-amz-checksum-type").map(str::to_string),
                    body: resp.body,
                })
            }
            Ok(resp) => {
                // An error answer, or a redirect (wrong region, wrong addressing).
                let request_id = resp.header("x-amz-request-id").map(str::to_string);
                Err(context(server_error(resp.status, &resp.body, request_id)))
            }
            Err(e) => {
                let e = transport_error(e);
                // A stale keep-alive connection or our own cancel says
                // nothing about the endpoint's health.
                let connection_level = matches!(e.kind(), ErrorKind::Network | ErrorKind::Timeout)
                    && !e.is_stale_connection();
                if connection_level && inner.endpoints.len() > 1 {
                    self.mark_down(index);
                }
                Err(context(e))
            }
        }
    }

    /// The authority (`host:port`, with the bucket for virtual-hosted
    /// addressing) and the encoded path of a request to `ep` about `key`
    /// (the bucket itself when `None`).
    fn locate(&self, ep: &Endpoint, key: Option<&str>) -> (String, String) {
        let inner = &self.inner;
        let (authority, mut path) = match inner.addressing {
            Addressing::Path => (ep.authority(None), format!("/{}", inner.bucket)),
            Addressing::Virtual => (ep.authority(Some(&inner.bucket)), String::new()),
        };
        match key {
            Some(key) => {
                path.push('/');
                path.push_str(&encode::key_path(key));
            }
            None if path.is_empty() => path.push('/'),
            None => {}
        }
        (authority, path)
    }

    fn parse_body(&self, operation: &'static str, key: &str, body: &[u8]) -> Result<xml::Element> {
        xml::parse(body).ok_or_else(|| self.malformed(operation, key, "the answer is not XML"))
    }

    fn malformed(&self, operation: &'static str, key: &str, why: &str) -> Error {
        Error::new(ErrorKind::Server, format!("malformed answer: {why}"))
            .with_operation(operation)
            .with_bucket(self.inner.bucket.clone())
            .with_key(key)
    }

    fn error_from_xml(
        &self,
        operation: &'static str,
        key: &str,
        status: u16,
        root: &xml::Element,
        request_id: Option<String>,
    ) -> Error {
        let mut e = error_from_root(status, root, request_id)
            .with_operation(operation)
            .with_bucket(self.inner.bucket.clone());
        if !key.is_empty() {
            e = e.with_key(key);
        }
        e
    }
}

fn add_checksum(headers: &mut Vec<(&'static str, String)>, checksum: SentChecksum) {
    let b64 = base64::engine::general_purpose::STANDARD;
    match checksum {
        SentChecksum::None => {}
        SentChecksum::ContentMd5(md5) => headers.push(("content-md5", b64.encode(md5))),
        SentChecksum::Crc32c(crc) => {
            headers.push(("x-amz-checksum-crc32c", b64.encode(crc.to_be_bytes())))
        }
    }
}

/// The base64 form of a CRC32C, as S3 lists and expects it.
pub fn crc32c_base64(crc: u32) -> String {
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

fn unquote(etag: String) -> String {
    unquote_str(&etag)
}

fn unquote_str(etag: &str) -> String {
    etag.trim().trim_matches('"').to_string()
}

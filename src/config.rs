//! Every option of an uploader: its name, its default, its validation.
//!
//! Options are set either with typed builder methods (Rust) or with string
//! keys and values through [`Config::set`] (the C ABI, the CLI, Python, Go):
//! the string form is how new options never break the ABI. Both paths end in
//! the same validation, so a bad value is rejected the same way everywhere,
//! with a message that names the key.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// The smallest part S3 accepts (every part but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// The largest part, and the largest single PUT, S3 accepts.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// The most parts one multipart upload may have.
pub const MAX_PARTS: u32 = 10_000;
/// The longest object key S3 accepts, in bytes of UTF-8.
pub const MAX_KEY_LEN: usize = 1024;

/// How the bucket appears in request URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// `http://endpoint/bucket/key` — MinIO, Ceph, Garage, s3s.
    Path,
    /// `http://bucket.endpoint/key` — AWS, Huawei OBS and Aliyun OSS (which
    /// accept nothing else).
    Virtual,
}

/// How each part's bytes are checked against what the server stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    /// The default: `Crc32c` where the store verifies `x-amz-checksum-crc32c`,
    /// else `EtagMd5`. Once per uploader and endpoint, before its first job
    /// sends data, a probe that creates no object finds out
    /// (CreateMultipartUpload with the CRC32C algorithm, two tiny parts, one
    /// with a wrong checksum, then abort); [`Progress::integrity_used`]
    /// says what a job got. A probe that cannot run (network error) leaves
    /// the job on `EtagMd5` with a warning, and is tried again by the next job.
    ///
    /// [`Progress::integrity_used`]: crate::Progress::integrity_used
    Auto,
    /// MD5 of each part, compared with the ETag the server returns when
    /// that ETag is an MD5; the multipart ETag (md5 of the part md5s, "-N")
    /// checked on complete. The uploader's MD5 thread hashes a part while
    /// it is sent, reading it from the page cache at the same time as the
    /// send (so the disk is read once), eight parts at a time.
    EtagMd5,
    /// Send `Content-MD5` so the server itself rejects a corrupted part.
    /// Costs one extra read of each part before it is sent.
    ContentMd5,
    /// Send `x-amz-checksum-crc32c`: the server verifies it. One extra
    /// (cheap) read of each part before it is sent.
    Crc32c,
    /// No check.
    None,
}

impl Integrity {
    /// The option value that names it (`auto`, `etag-md5`, `content-md5`,
    /// `crc32c`, `none`).
    pub fn as_str(self) -> &'static str {
        match self {
            Integrity::Auto => "auto",
            Integrity::EtagMd5 => "etag-md5",
            Integrity::ContentMd5 => "content-md5",
            Integrity::Crc32c => "crc32c",
            Integrity::None => "none",
        }
    }
}

impl std::fmt::Display for Integrity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A canned ACL S3 understands.
const CANNED_ACLS: &[&str] = &[
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
];

/// The configuration of an [`Uploader`](crate::Uploader).
///
/// ```
/// let cfg = batchput::Config::new()
///     .endpoint("http://127.0.0.1:9000")
///     .bucket("photos")
///     .credentials("AKID", "SECRET")
///     .part_size(64 << 20);
/// # let _ = cfg;
/// ```
#[derive(Clone)]
pub struct Config {
    pub(crate) endpoints: Vec<String>,
    pub(crate) region: String,
    pub(crate) bucket: String,
    pub(crate) access_key: Option<String>,
    pub(crate) secret_key: Option<String>,
    pub(crate) session_token: Option<String>,
    pub(crate) addressing: Addressing,
    /// The fixed number of requests in flight; ignored with `adaptive_workers`.
    pub(crate) workers: usize,
    /// `workers=auto`: requests in flight adapt to the link and the server
    /// (see `engine::coordinator::concurrency`), up to `max_workers`.
    pub(crate) adaptive_workers: bool,
    pub(crate) max_workers: usize,
    pub(crate) part_size: u64,
    pub(crate) multipart_threshold: u64,
    pub(crate) retries: u32,
    pub(crate) stall_timeout: Duration,
    pub(crate) deadline: Option<Duration>,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) cleanup_timeout: Duration,
    pub(crate) max_open_files: Option<usize>,
    pub(crate) max_pending_uploads: usize,
    pub(crate) rate_limit: u64,
    pub(crate) acl: Option<String>,
    pub(crate) content_type: Option<String>,
    pub(crate) storage_class: Option<String>,
    pub(crate) metadata: Vec<(String, String)>,
    pub(crate) integrity: Integrity,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) proxy: Option<String>,
    pub(crate) strict_inputs: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Config")
            .field("endpoints", &self.endpoints)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key", &self.access_key)
            .field("addressing", &self.addressing)
            .field("workers", &self.workers)
            .field("adaptive_workers", &self.adaptive_workers)
            .field("max_workers", &self.max_workers)
            .field("part_size", &self.part_size)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("integrity", &self.integrity)
            .field("strict_inputs", &self.strict_inputs)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoints: Vec::new(),
            region: "us-east-1".to_string(),
            bucket: String::new(),
            access_key: None,
            secret_key: None,
            session_token: None,
            addressing: Addressing::Path,
            workers: 16,
            adaptive_workers: true,
            max_workers: 256,
            part_size: 16 * 1024 * 1024,
            // Measured (bench/RESULTS.md): a file of a few dozen MiB costs
            // the server half as much as one PUT as in parts, and a batch
            // keeps every worker busy across files anyway.
            multipart_threshold: 64 * 1024 * 1024,
            retries: 5,
            stall_timeout: Duration::from_secs(60),
            deadline: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            cleanup_timeout: Duration::from_secs(30),
            max_open_files: None,
            max_pending_uploads: 64,
            rate_limit: 0,
            acl: None,
            content_type: None,
            storage_class: None,
            metadata: Vec::new(),
            integrity: Integrity::Auto,
            ca_file: None,
            proxy: None,
            strict_inputs: false,
        }
    }
}

/// The option keys [`Config::set`] accepts, with what each means; the CLI
/// and the README are generated from the same list.
pub const OPTIONS: &[(&str, &str, &str)] = &[
    ("endpoint", "", "URL of the S3 endpoint (http or https); several, comma-separated, are nodes of one cluster for failover"),
    ("region", "us-east-1", "signing region"),
    ("bucket", "", "destination bucket"),
    ("access_key", "$AWS_ACCESS_KEY_ID", "access key id"),
    ("secret_key", "$AWS_SECRET_ACCESS_KEY", "secret access key"),
    ("session_token", "$AWS_SESSION_TOKEN", "session token for temporary credentials"),
    ("addressing", "path", "path | virtual (OBS and OSS need virtual)"),
    ("workers", "auto", "requests in flight: auto (from 16, grown while throughput grows, cut on throttling, errors and stalls, up to max_workers) or a fixed number"),
    ("max_workers", "256", "the most requests in flight workers=auto reaches (the pool's threads, idle until needed)"),
    ("part_size", "16MiB", "multipart part size, 5MiB..5GiB; grown to stay within 10,000 parts"),
    ("multipart_threshold", "64MiB", "files of this size or more upload in parts"),
    ("retries", "5", "attempts per request before its error is fatal"),
    ("stall_timeout_ms", "60000", "fail the job when no bytes or parts are acknowledged for this long"),
    ("deadline_ms", "0", "fail the job when it runs longer than this (0: no deadline)"),
    ("connect_timeout_ms", "10000", "TCP/TLS connect timeout per request"),
    ("request_timeout_ms", "30000", "idle timeout of one request: longest wait for a read or write"),
    ("cleanup_timeout_ms", "30000", "budget for aborting a failed or stopped job's open uploads; what it cannot abort in time is reported by upload id"),
    ("max_open_files", "from RLIMIT_NOFILE", "most source files open at once"),
    ("max_pending_uploads", "64", "most multipart uploads initiated and not yet completed (OBS stops answering past ~100)"),
    ("rate_limit", "0", "bytes per second for the whole uploader, e.g. 100MiB (0: unlimited)"),
    ("acl", "", "canned ACL sent as x-amz-acl (private, public-read, ...)"),
    ("content_type", "", "Content-Type of every object"),
    ("storage_class", "", "x-amz-storage-class of every object (STANDARD, STANDARD_IA, ...)"),
    ("meta.NAME", "", "user metadata x-amz-meta-NAME on every object"),
    ("integrity", "auto", "auto (crc32c where the store verifies it, else etag-md5) | etag-md5 | content-md5 | crc32c | none"),
    ("ca_file", "$AWS_CA_BUNDLE", "PEM file of extra trusted CA certificates for https"),
    ("proxy", "", "HTTP proxy URL for every request"),
    ("strict_inputs", "false", "a special file met in a directory (FIFO, socket, device, dangling or directory link) is an error instead of being skipped with a warning"),
];

impl Config {
    /// The defaults; set at least `endpoint` and `bucket`.
    pub fn new() -> Config {
        Config::default()
    }

    /// One endpoint URL, or several comma-separated (nodes of one cluster).
    pub fn endpoint(mut self, url: &str) -> Config {
        self.endpoints = split_endpoints(url);
        self
    }

    /// The signing region.
    pub fn region(mut self, region: &str) -> Config {
        self.region = region.to_string();
        self
    }

    /// The destination bucket.
    pub fn bucket(mut self, bucket: &str) -> Config {
        self.bucket = bucket.to_string();
        self
    }

    /// Access key id and secret.
    pub fn credentials(mut self, access_key: &str, secret_key: &str) -> Config {
        self.access_key = Some(access_key.to_string());
        self.secret_key = Some(secret_key.to_string());
        self
    }

    /// Session token for temporary credentials.
    pub fn session_token(mut self, token: &str) -> Config {
        self.session_token = Some(token.to_string());
        self
    }

    /// Path-style or virtual-hosted addressing.
    pub fn addressing(mut self, addressing: Addressing) -> Config {
        self.addressing = addressing;
        self
    }

    /// A fixed number of requests in flight (worker threads), instead of
    /// the default `auto`.
    pub fn workers(mut self, workers: usize) -> Config {
        self.workers = workers;
        self.adaptive_workers = false;
        self
    }

    /// `workers=auto` (the default): requests in flight start at 16 and
    /// adapt, up to `max`.
    pub fn workers_auto(mut self, max: usize) -> Config {
        self.adaptive_workers = true;
        self.max_workers = max;
        self
    }

    /// The pool's threads: the most requests that can be in flight.
    pub(crate) fn pool_size(&self) -> usize {
        if self.adaptive_workers {
            self.max_workers
        } else {
            self.workers
        }
    }

    /// Part size in bytes for multipart uploads.
    pub fn part_size(mut self, bytes: u64) -> Config {
        self.part_size = bytes;
        self
    }

    /// Files of at least this many bytes upload in parts.
    pub fn multipart_threshold(mut self, bytes: u64) -> Config {
        self.multipart_threshold = bytes;
        self
    }

    /// Attempts per request before its error is fatal.
    pub fn retries(mut self, retries: u32) -> Config {
        self.retries = retries;
        self
    }

    /// Fail the job when nothing is acknowledged for this long.
    pub fn stall_timeout(mut self, timeout: Duration) -> Config {
        self.stall_timeout = timeout;
        self
    }

    /// Fail the job when it runs longer than this.
    pub fn deadline(mut self, deadline: Option<Duration>) -> Config {
        self.deadline = deadline;
        self
    }

    /// Connect timeout of each request.
    pub fn connect_timeout(mut self, timeout: Duration) -> Config {
        self.connect_timeout = timeout;
        self
    }

    /// Idle timeout of each request (longest wait for one read or write).
    pub fn request_timeout(mut self, timeout: Duration) -> Config {
        self.request_timeout = timeout;
        self
    }

    /// How long cleanup after a failure or stop may take in all (aborts and
    /// their checks, retries included). Uploads it cannot abort in time are
    /// reported by id ([`FileState::AbortFailed`](crate::FileState::AbortFailed)).
    pub fn cleanup_timeout(mut self, timeout: Duration) -> Config {
        self.cleanup_timeout = timeout;
        self
    }

    /// Most source files open at once.
    pub fn max_open_files(mut self, max: usize) -> Config {
        self.max_open_files = Some(max);
        self
    }

    /// Most multipart uploads initiated and not yet completed.
    pub fn max_pending_uploads(mut self, max: usize) -> Config {
        self.max_pending_uploads = max;
        self
    }

    /// Bytes per second for the whole uploader; 0 is unlimited.
    pub fn rate_limit(mut self, bytes_per_sec: u64) -> Config {
        self.rate_limit = bytes_per_sec;
        self
    }

    /// How parts are checked.
    pub fn integrity(mut self, integrity: Integrity) -> Config {
        self.integrity = integrity;
        self
    }

    /// Canned ACL for every object.
    pub fn acl(mut self, acl: &str) -> Config {
        self.acl = Some(acl.to_string());
        self
    }

    /// Content-Type for every object.
    pub fn content_type(mut self, content_type: &str) -> Config {
        self.content_type = Some(content_type.to_string());
        self
    }

    /// Storage class for every object.
    pub fn storage_class(mut self, class: &str) -> Config {
        self.storage_class = Some(class.to_string());
        self
    }

    /// Adds user metadata `x-amz-meta-<name>: value` to every object.
    pub fn metadata(mut self, name: &str, value: &str) -> Config {
        self.metadata
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// Extra trusted CA certificates (PEM) for https endpoints.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Config {
        self.ca_file = Some(path.into());
        self
    }

    /// HTTP proxy for every request.
    pub fn proxy(mut self, url: &str) -> Config {
        self.proxy = Some(url.to_string());
        self
    }

    /// Whether a directory walk ([`Uploader::start_dir`](crate::Uploader::start_dir))
    /// fails on an entry it cannot upload (a dangling symbolic link, a
    /// FIFO, a socket, a device, a link to a directory) instead of skipping
    /// it with a warning. Off by default.
    pub fn strict_inputs(mut self, strict: bool) -> Config {
        self.strict_inputs = strict;
        self
    }

    /// Sets one option from its string form (see [`OPTIONS`]). Sizes accept
    /// `8388608`, `8MiB`, `1GiB`, `500KB`; durations in `_ms` keys are
    /// milliseconds; `strict_inputs` takes `true` or `false`. No value may
    /// hold a control character (CR, LF, NUL, tab, ...). An unknown key or
    /// a bad value is an [`InvalidConfig`](crate::ErrorKind::InvalidConfig)
    /// error naming the key.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        // Before anything quotes the value: a CR or LF would forge lines in
        // a message or a header, and the value may be a secret.
        if let Some(c) = value.chars().find(|c| c.is_control()) {
            return Err(control_character(key, c));
        }
        let bad = |why: &str| Error::config(format!("option '{key}': {why} (got '{value}')"));
        match key {
            "endpoint" => self.endpoints = split_endpoints(value),
            "region" => self.region = value.to_string(),
            "bucket" => self.bucket = value.to_string(),
            "access_key" => self.access_key = Some(value.to_string()),
            "secret_key" => self.secret_key = Some(value.to_string()),
            "session_token" => self.session_token = non_empty(value),
            "addressing" => {
                self.addressing = match value {
                    "path" => Addressing::Path,
                    "virtual" | "virtual-hosted" => Addressing::Virtual,
                    _ => return Err(bad("expected 'path' or 'virtual'")),
                }
            }
            "workers" if value.eq_ignore_ascii_case("auto") => self.adaptive_workers = true,
            "workers" => {
                self.workers =
                    parse_count(value).map_err(|w| bad(&format!("{w}, or auto")))? as usize;
                self.adaptive_workers = false;
            }
            "max_workers" => self.max_workers = parse_count(value).map_err(|w| bad(&w))? as usize,
            "part_size" => self.part_size = parse_size(value).map_err(|w| bad(&w))?,
            "multipart_threshold" => {
                self.multipart_threshold = parse_size(value).map_err(|w| bad(&w))?
            }
            "retries" => {
                self.retries = u32::try_from(parse_count(value).map_err(|w| bad(&w))?)
                    .map_err(|_| bad("too large"))?
            }
            "stall_timeout_ms" => self.stall_timeout = parse_millis(value).map_err(|w| bad(&w))?,
            "deadline_ms" => {
                let d = parse_millis(value).map_err(|w| bad(&w))?;
                self.deadline = (!d.is_zero()).then_some(d);
            }
            "connect_timeout_ms" => {
                self.connect_timeout = parse_millis(value).map_err(|w| bad(&w))?
            }
            "request_timeout_ms" => {
                self.request_timeout = parse_millis(value).map_err(|w| bad(&w))?
            }
            "cleanup_timeout_ms" => {
                self.cleanup_timeout = parse_millis(value).map_err(|w| bad(&w))?
            }
            "max_open_files" => {
                self.max_open_files = Some(parse_count(value).map_err(|w| bad(&w))? as usize)
            }
            "max_pending_uploads" => {
                self.max_pending_uploads = parse_count(value).map_err(|w| bad(&w))? as usize
            }
            "rate_limit" => {
                let rate = parse_size(value).map_err(|w| bad(&w))?;
                // "0.5" would truncate to 0, which means unlimited: the
                // opposite of what was asked.
                if rate == 0 && value.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
                    return Err(bad(
                        "below 1 byte per second: the smallest limit is 1 (0 means unlimited)",
                    ));
                }
                self.rate_limit = rate;
            }
            "acl" => self.acl = non_empty(value),
            "content_type" => self.content_type = non_empty(value),
            "storage_class" => self.storage_class = non_empty(value),
            "integrity" => {
                self.integrity = match value {
                    "auto" => Integrity::Auto,
                    "etag-md5" => Integrity::EtagMd5,
                    "content-md5" => Integrity::ContentMd5,
                    "crc32c" => Integrity::Crc32c,
                    "none" => Integrity::None,
                    _ => return Err(bad("expected auto, etag-md5, content-md5, crc32c or none")),
                }
            }
            "ca_file" => self.ca_file = non_empty(value).map(PathBuf::from),
            "proxy" => self.proxy = non_empty(value),
            "strict_inputs" => {
                self.strict_inputs = match value {
                    "true" | "1" | "yes" | "on" => true,
                    "false" | "0" | "no" | "off" => false,
                    _ => return Err(bad("expected 'true' or 'false'")),
                }
            }
            _ => match key.strip_prefix("meta.") {
                Some(name) if !name.is_empty() => self
                    .metadata
                    .push((name.to_ascii_lowercase(), value.to_string())),
                _ => {
                    return Err(Error::config(format!(
                        "unknown option '{key}' (known: {})",
                        OPTIONS.iter().map(|o| o.0).collect::<Vec<_>>().join(", ")
                    )))
                }
            },
        }
        // Check the one value just set at once, so the caller learns which
        // key was wrong; cross-option checks wait for `validate`.
        self.validate_field(key).map_err(|e| match e.kind() {
            crate::ErrorKind::InvalidConfig => bad(e.message()),
            _ => e,
        })
    }

    /// The open-file budget: the option when set, otherwise derived from
    /// RLIMIT_NOFILE, leaving room for the workers' sockets, the process's
    /// own descriptors and a margin.
    pub(crate) fn effective_max_open_files(&self) -> usize {
        if let Some(max) = self.max_open_files {
            return max;
        }
        let soft = nofile_soft_limit().unwrap_or(1024);
        let reserved = 2 * self.pool_size() as u64 + 24;
        soft.saturating_sub(reserved).clamp(4, 1024) as usize
    }
}

fn nofile_soft_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and reads nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

fn split_endpoints(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

mod parse;
mod validate;

use parse::{parse_count, parse_millis};
pub use parse::{parse_duration, parse_size};
use validate::control_character;

#[cfg(test)]
mod tests;

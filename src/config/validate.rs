//! Checking a configuration before an uploader uses it: every option on
//! its own (the error names the key at fault) and the ones that depend on
//! each other, and no control character in any of them.

use super::{Addressing, Config, CANNED_ACLS, MAX_PART_SIZE, MIN_PART_SIZE};
use crate::error::{Error, Result};

impl Config {
    /// Checks every option and the ones that depend on each other. Called by
    /// `Uploader::new`; the error names the key at fault.
    pub fn validate(&self) -> Result<()> {
        // The typed builders take any string: check them as `set` does.
        if let Some((key, c)) = self.first_control_character() {
            return Err(control_character(&key, c));
        }
        for key in [
            "endpoint",
            "bucket",
            "region",
            "workers",
            "max_workers",
            "part_size",
            "multipart_threshold",
            "retries",
            "stall_timeout_ms",
            "connect_timeout_ms",
            "request_timeout_ms",
            "cleanup_timeout_ms",
            "max_open_files",
            "max_pending_uploads",
            "acl",
            "content_type",
            "storage_class",
            "meta.",
        ] {
            self.validate_field(key).map_err(|e| {
                Error::config(format!(
                    "option '{}': {}",
                    key.trim_end_matches('.'),
                    e.message()
                ))
            })?;
        }
        if self.endpoints.is_empty() {
            return Err(Error::config("option 'endpoint': not set"));
        }
        if self.bucket.is_empty() {
            return Err(Error::config("option 'bucket': not set"));
        }
        if self.addressing == Addressing::Virtual {
            for url in &self.endpoints {
                if crate::store::Endpoint::parse(url)?.host_is_ip() {
                    return Err(Error::config(format!(
                        "option 'addressing': virtual-hosted addressing puts the bucket in the \
                         host name ({}.HOST), which the IP address of endpoint '{url}' cannot \
                         carry: use path addressing, or a DNS name (such as localhost)",
                        self.bucket
                    )));
                }
            }
        }
        Ok(())
    }

    pub(super) fn validate_field(&self, key: &str) -> Result<()> {
        let fail = |why: String| Err(Error::config(why));
        match key {
            "endpoint" => {
                for ep in &self.endpoints {
                    crate::store::Endpoint::parse(ep)?;
                }
            }
            "bucket" => {
                let b = &self.bucket;
                if !b.is_empty()
                    && (b.len() < 3
                        || b.len() > 63
                        || !b.bytes().all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || b"-._".contains(&c)
                        }))
                {
                    return fail(format!(
                        "'{b}' is not a valid bucket name (3-63 of a-z 0-9 . - _)"
                    ));
                }
            }
            "region" if self.region.is_empty() || !is_token(&self.region) => {
                return fail("must be a non-empty token such as us-east-1".into());
            }
            "workers" if self.workers == 0 || self.workers > 1024 => {
                return fail("must be between 1 and 1024, or auto".into());
            }
            "max_workers" if self.max_workers == 0 || self.max_workers > 1024 => {
                return fail("must be between 1 and 1024".into());
            }
            "part_size" if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) => {
                return fail("must be between 5MiB and 5GiB".into());
            }
            "multipart_threshold"
                if self.multipart_threshold == 0 || self.multipart_threshold > MAX_PART_SIZE =>
            {
                return fail("must be between 1 byte and 5GiB (the largest single PUT)".into());
            }
            "retries" if self.retries > 100 => return fail("must be at most 100".into()),
            "stall_timeout_ms" if self.stall_timeout.is_zero() => {
                return fail("must be more than 0".into());
            }
            "connect_timeout_ms" if self.connect_timeout.is_zero() => {
                return fail("must be more than 0".into());
            }
            "request_timeout_ms" if self.request_timeout.is_zero() => {
                return fail("must be more than 0".into());
            }
            "cleanup_timeout_ms" if self.cleanup_timeout.is_zero() => {
                return fail("must be more than 0".into());
            }
            "max_open_files" if self.max_open_files == Some(0) => {
                return fail("must be at least 1".into());
            }
            "max_pending_uploads" if self.max_pending_uploads == 0 => {
                return fail("must be at least 1".into());
            }
            "acl" => {
                if let Some(acl) = &self.acl {
                    if !CANNED_ACLS.contains(&acl.as_str()) {
                        return fail(format!(
                            "'{acl}' is not a canned ACL ({})",
                            CANNED_ACLS.join(", ")
                        ));
                    }
                }
            }
            "content_type" | "storage_class" => {
                let v = if key == "content_type" {
                    &self.content_type
                } else {
                    &self.storage_class
                };
                if let Some(v) = v {
                    if !is_header_value(v) {
                        return fail("contains characters not allowed in an HTTP header".into());
                    }
                }
            }
            k if k.starts_with("meta.") => {
                for (name, value) in &self.metadata {
                    if !is_token(name) || !is_header_value(value) {
                        return fail(format!(
                            "metadata '{name}' must be a token name and a printable ASCII value"
                        ));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The first string option holding a control character, by its key.
    fn first_control_character(&self) -> Option<(String, char)> {
        let mut fields: Vec<(String, &str)> = vec![
            ("region".into(), &self.region),
            ("bucket".into(), &self.bucket),
        ];
        fields.extend(
            self.endpoints
                .iter()
                .map(|e| ("endpoint".into(), e.as_str())),
        );
        for (key, value) in [
            ("access_key", &self.access_key),
            ("secret_key", &self.secret_key),
            ("session_token", &self.session_token),
            ("acl", &self.acl),
            ("content_type", &self.content_type),
            ("storage_class", &self.storage_class),
            ("proxy", &self.proxy),
        ] {
            fields.extend(value.as_deref().map(|v| (key.into(), v)));
        }
        for (name, value) in &self.metadata {
            fields.push((format!("meta.{name}"), name));
            fields.push((format!("meta.{name}"), value));
        }
        let ca_file = self
            .ca_file
            .as_ref()
            .map(|p| p.as_os_str().to_string_lossy());
        fields.extend(ca_file.as_deref().map(|p| ("ca_file".into(), p)));
        fields.into_iter().find_map(|(key, value)| {
            value
                .chars()
                .find(|c| c.is_control())
                .map(|c| (key.escape_debug().to_string(), c))
        })
    }
}

/// The error for a control character in option `key`; the value is not
/// quoted (it may be a secret, and the character would garble the message).
pub(super) fn control_character(key: &str, c: char) -> Error {
    Error::config(format!(
        "option '{}': contains the control character {c:?}; no option may hold one (CR, LF, NUL, tab, ...)",
        key.escape_debug()
    ))
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

fn is_header_value(s: &str) -> bool {
    s.bytes().all(|c| c == b'\t' || (0x20..0x7f).contains(&c))
}

//! Endpoint URLs: parsing `http[s]://host[:port]`, the Host header and
//! URL forms of each addressing style, and keeping passwords out of
//! messages.

use crate::error::{Error, Result};

/// One parsed endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub(super) https: bool,
    pub(super) host: String,
    port: Option<u16>,
}

impl Endpoint {
    /// Parses `http[s]://host[:port][/]`; anything else is an error naming
    /// the URL.
    pub fn parse(url: &str) -> Result<Endpoint> {
        let shown = redact_userinfo(url);
        let bad = |why: &str| Error::config(format!("endpoint '{shown}': {why}"));
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("must start with http:// or https://"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return Err(bad(
                "expected scheme://host[:port] with no path, query or user",
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("junk after the IPv6 address")),
            };
            (format!("[{h}]"), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        let port = match port {
            Some(p) => Some(p.parse::<u16>().map_err(|_| bad("bad port"))?),
            None => None,
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Endpoint {
            https,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    pub(super) fn authority(&self, bucket_prefix: Option<&str>) -> String {
        let mut s = String::new();
        if let Some(b) = bucket_prefix {
            s.push_str(b);
            s.push('.');
        }
        s.push_str(&self.host);
        if let Some(p) = self.port {
            s.push(':');
            s.push_str(&p.to_string());
        }
        s
    }

    pub(super) fn port(&self) -> u16 {
        self.port.unwrap_or(if self.https { 443 } else { 80 })
    }

    pub(super) fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// Whether the host is an IP address (which cannot carry a bucket name
    /// in front of it, as virtual-hosted addressing needs).
    pub(crate) fn host_is_ip(&self) -> bool {
        let bare = self.host.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<std::net::IpAddr>().is_ok()
    }

    /// The URL as a person would write it.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme(), self.authority(None))
    }
}

/// `url` with the password of a `user:password@` part replaced by `***`,
/// so it can appear in a message or a log.
pub(crate) fn redact_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let user = rest[..at].split(':').next().unwrap_or("");
    let redacted = format!("{user}:***@{}", &rest[at + 1..]);
    if scheme.is_empty() {
        redacted
    } else {
        format!("{scheme}://{redacted}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let e = Endpoint::parse("http://127.0.0.1:9000/").unwrap();
        assert_eq!(e.url(), "http://127.0.0.1:9000");
        assert_eq!(e.authority(Some("b")), "b.127.0.0.1:9000");
        let e = Endpoint::parse("https://obs.cn-north-4.myhuaweicloud.com").unwrap();
        assert_eq!(e.authority(Some("b")), "b.obs.cn-north-4.myhuaweicloud.com");
        assert_eq!(
            Endpoint::parse("http://[::1]:80").unwrap().url(),
            "http://[::1]:80"
        );
        for bad in [
            "ftp://x",
            "http://",
            "http://h/path",
            "http://h:notaport",
            "h:9000",
        ] {
            let e = Endpoint::parse(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn passwords_in_urls_never_reach_a_message() {
        assert_eq!(
            redact_userinfo("http://me:s3cret@proxy:3128"),
            "http://me:***@proxy:3128"
        );
        assert_eq!(
            redact_userinfo("http://host:9000/a@b"),
            "http://host:9000/a@b"
        );
        let e = Endpoint::parse("http://me:s3cret@proxy:3128").unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert!(e.to_string().contains("me:***@proxy"), "{e}");
    }
}

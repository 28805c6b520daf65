//! SigV4 request signing with the official `aws-sigv4` crate, configured the
//! way S3 wants it: single percent-encoding (the path is already encoded
//! exactly once, see `encode::key_path`), no path normalisation (`//` and
//! `.` in keys are meaningful), the `x-amz-content-sha256` header, and
//! UNSIGNED-PAYLOAD for streamed bodies (OBS accepts nothing else, and it
//! spares hashing every byte with SHA-256).

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
    SignatureLocation, SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use crate::error::{Error, Result};

/// What the signature says about the body.
pub(crate) enum Payload<'a> {
    /// `UNSIGNED-PAYLOAD`: the body is not part of the signature.
    Unsigned,
    /// The lowercase hex SHA-256 of the body, computed by the caller.
    #[cfg_attr(not(test), allow(dead_code))]
    Sha256(&'a str),
}

/// Signs requests for one set of credentials and one region.
pub(crate) struct Signer {
    identity: Identity,
    region: String,
    settings: SigningSettings,
}

impl Signer {
    pub fn new(
        access_key: &str,
        secret_key: &str,
        session_token: Option<&str>,
        region: &str,
    ) -> Signer {
        let creds = Credentials::new(
            access_key,
            secret_key,
            session_token.map(str::to_string),
            None,
            "batchput",
        );
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        Signer {
            identity: creds.into(),
            region: region.to_string(),
            settings,
        }
    }

    /// Signs `method url` with `headers` (which must include `host`) and
    /// returns the headers to add: `authorization`, `x-amz-date`,
    /// `x-amz-content-sha256` and, with a session token, `x-amz-security-token`.
    pub fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        payload: Payload<'_>,
        time: SystemTime,
    ) -> Result<Vec<(String, String)>> {
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("s3")
            .time(time)
            .settings(self.settings.clone())
            .build()
            .map_err(|e| Error::internal(format!("signing parameters: {e}")))?
            .into();
        let body = match payload {
            Payload::Unsigned => SignableBody::UnsignedPayload,
            Payload::Sha256(hash) => SignableBody::Precomputed(hash.to_string()),
        };
        let request = SignableRequest::new(method, url, headers.iter().copied(), body)
            .map_err(|e| Error::internal(format!("cannot sign {method} {url}: {e}")))?;
        let (instructions, _signature) = sign(request, &params)
            .map_err(|e| Error::internal(format!("cannot sign {method} {url}: {e}")))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// Presigns `method url` (headers: only `host`) for `expires`, as
    /// aws-sigv4's query-string signing does it: returns the `X-Amz-*`
    /// query parameters to append, the signature last. The payload is
    /// `UNSIGNED-PAYLOAD` (whoever uses the URL sends what body they like,
    /// as with every S3 presigned URL) and no `x-amz-content-sha256` header
    /// is signed (a plain HTTP client sends none).
    pub fn presign(
        &self,
        method: &str,
        url: &str,
        host: &str,
        expires: Duration,
        time: SystemTime,
    ) -> Result<Vec<(String, String)>> {
        let mut settings = self.settings.clone();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(expires);
        settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("s3")
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| Error::internal(format!("signing parameters: {e}")))?
            .into();
        let request = SignableRequest::new(
            method,
            url,
            [("host", host)].into_iter(),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| Error::internal(format!("cannot presign {method} {url}: {e}")))?;
        let (instructions, _signature) = sign(request, &params)
            .map_err(|e| Error::internal(format!("cannot presign {method} {url}: {e}")))?
            .into_parts();
        Ok(instructions
            .params()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// The "GET Object" example of the AWS S3 SigV4 documentation
    /// ("Examples: Signature Calculations in AWS Signature Version 4").
    #[test]
    fn reproduces_the_published_get_object_signature() {
        let signer = Signer::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
            "us-east-1",
        );
        // 20130524T000000Z
        let time = UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        let empty_sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let headers = signer
            .sign(
                "GET",
                "https://examplebucket.s3.amazonaws.com/test.txt",
                &[
                    ("host", "examplebucket.s3.amazonaws.com"),
                    ("range", "bytes=0-9"),
                ],
                Payload::Sha256(empty_sha),
                time,
            )
            .unwrap();
        let auth = &headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .unwrap()
            .1;
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    /// The presigned URL example of the AWS S3 documentation
    /// ("Authenticating Requests: Using Query Parameters").
    #[test]
    fn reproduces_the_published_presigned_url_signature() {
        let signer = Signer::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
            "us-east-1",
        );
        let time = UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        let params = signer
            .presign(
                "GET",
                "https://examplebucket.s3.amazonaws.com/test.txt",
                "examplebucket.s3.amazonaws.com",
                Duration::from_secs(86_400),
                time,
            )
            .unwrap();
        let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|p| p.1.as_str());
        assert_eq!(get("X-Amz-Expires"), Some("86400"));
        assert_eq!(get("X-Amz-SignedHeaders"), Some("host"));
        assert_eq!(
            get("X-Amz-Credential"),
            Some("AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request")
        );
        assert_eq!(
            get("X-Amz-Signature"),
            Some("aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")
        );
    }

    #[test]
    fn unsigned_payload_and_session_token_are_sent() {
        let signer = Signer::new("AK", "SK", Some("TOKEN"), "eu-west-1");
        let headers = signer
            .sign(
                "PUT",
                "http://127.0.0.1:9000/b/a%20b",
                &[("host", "127.0.0.1:9000")],
                Payload::Unsigned,
                SystemTime::now(),
            )
            .unwrap();
        let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|h| h.1.clone());
        assert_eq!(
            get("x-amz-content-sha256").as_deref(),
            Some("UNSIGNED-PAYLOAD")
        );
        assert_eq!(get("x-amz-security-token").as_deref(), Some("TOKEN"));
        assert!(get("authorization")
            .unwrap()
            .contains("/eu-west-1/s3/aws4_request"));
    }
}

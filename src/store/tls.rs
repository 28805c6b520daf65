//! TLS: which roots are trusted, and what a failed handshake tells the
//! person (a certificate problem is not a network fault: it is not
//! retried, and it says what to do).

use std::sync::Arc;

use super::http::{io_error, HttpError};
use crate::error::{Error, Result};

/// TLS roots: the bundled Mozilla roots, the system's trust store (which
/// `SSL_CERT_FILE` and `SSL_CERT_DIR` override, as OpenSSL has it), and the
/// certificates of `ca_file` (or `AWS_CA_BUNDLE`).
pub(super) fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let system = rustls_native_certs::load_native_certs();
    for e in &system.errors {
        log::warn!("system trust store: {e}");
    }
    // Certificates rustls cannot use as roots are skipped, as curl does.
    let (added, ignored) = roots.add_parsable_certificates(system.certs);
    log::debug!("TLS roots: {added} from the system store ({ignored} unusable)");
    if let Some(path) = ca_file {
        let bad =
            |why: String| Error::config(format!("option 'ca_file' ({}): {why}", path.display()));
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
        let mut added = 0;
        for cert in certs {
            let cert = cert.map_err(|e| bad(e.to_string()))?;
            // A bundle may hold certificates rustls cannot use as roots;
            // skip those, like curl does, but insist on at least one.
            if roots.add(cert).is_ok() {
                added += 1;
            }
        }
        if added == 0 {
            return Err(bad("no usable certificate in the file".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A handshake failure, in words that say what to do about it.
pub(super) fn tls_failure(host: &str, e: std::io::Error) -> HttpError {
    use rustls::{CertificateError, Error as TlsError};
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<TlsError>()) else {
        return io_error(e);
    };
    let why = match tls {
        TlsError::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => format!(
                "TLS certificate of {host} is not trusted (unknown issuer): \
                 pass --ca-file (option ca_file) with the CA that signed it"
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("TLS certificate of {host} is not valid for {host}")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("TLS certificate of {host} has expired")
            }
            other => format!("TLS certificate of {host} is not valid: {other:?}"),
        },
        other => {
            return HttpError::Connect(std::io::Error::other(format!(
                "TLS handshake with {host} failed: {other}"
            )))
        }
    };
    HttpError::Tls(std::io::Error::new(std::io::ErrorKind::InvalidData, why))
}

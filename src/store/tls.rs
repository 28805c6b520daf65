//! The TLS client configuration: which roots are trusted.

use std::sync::Arc;

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

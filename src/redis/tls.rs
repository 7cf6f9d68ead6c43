//! TLS client settings for `rediss://` targets: CA file or the system's
//! store, optional client certificate (mutual TLS), server name override,
//! and an explicit insecure mode that skips verification.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;

/// What the operator configured, before files are read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_file: Option<std::path::PathBuf>,
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

/// A ready TLS client configuration for one or more targets.
#[derive(Clone)]
pub struct TlsClient {
    pub config: Arc<ClientConfig>,
    /// Name the server certificate must carry (SNI too).
    pub server_name: String,
    /// Whether `server_name` came from the configuration (kept for nodes
    /// found by cluster discovery) or from the target's host (replaced by
    /// each discovered node's own host).
    pub name_overridden: bool,
    pub insecure: bool,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl PartialEq for TlsClient {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config) && self.server_name == other.server_name
    }
}

/// Builds the client configuration. Errors name the file setting at fault
/// (by its key suffix: `tls-ca-file`, ...), never the key material.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, (&'static str, String)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ("tls", e.to_string()))?;
    let builder = if files.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        match &files.ca_file {
            Some(path) => {
                for cert in read_certs(path).map_err(|e| ("tls-ca-file", e))? {
                    roots
                        .add(cert)
                        .map_err(|e| ("tls-ca-file", format!("{}: {e}", path.display())))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err((
                        "tls-ca-file",
                        "no CA file given and the system has no CA certificates".into(),
                    ));
                }
            }
        }
        builder.with_root_certificates(roots)
    };
    let config = match (&files.cert_file, &files.key_file) {
        (Some(cert), Some(key)) => {
            let certs = read_certs(cert).map_err(|e| ("tls-cert-file", e))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| ("tls-key-file", format!("{}: {e}", key.display())))?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                (
                    "tls-key-file",
                    format!("does not match the certificate: {e}"),
                )
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => {
            return Err(("tls-key-file", "a client certificate needs its key".into()))
        }
        (None, Some(_)) => {
            return Err(("tls-cert-file", "a client key needs its certificate".into()))
        }
    };
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect();
    let certs = certs.map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// Accepts any server certificate: for `tls-insecure-skip-verify`, which
/// the operator must ask for explicitly and which logs a warning. Handshake
/// signatures are still checked, so the channel is encrypted to whoever
/// holds the presented key.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

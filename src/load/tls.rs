//! TLS for `https://` targets: rustls with the aws-lc-rs provider (the one the AWS SDK already
//! builds), the platform's trusted roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` override them), SNI
//! from the URL's host (none for an IP address, as RFC 6066 says), ALPN `http/1.1`, and session
//! resumption for connections opened again. `insecure` accepts any certificate (a self-signed
//! test endpoint) but still checks that the server holds the key of the certificate it sent.

use std::io;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// What every connection of a run needs for its handshake.
#[derive(Clone)]
pub(crate) struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Tls {
    /// The client for `host` (a name or an IP address, without brackets).
    pub fn new(host: &str, insecure: bool) -> Result<Tls, String> {
        let name =
            ServerName::try_from(host.to_string()).map_err(|e| format!("`{host}` is not a TLS server name: {e}"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?;
        let mut config = if insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth()
        } else {
            builder.with_root_certificates(platform_roots()?).with_no_client_auth()
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls { connector: TlsConnector::from(Arc::new(config)), name })
    }

    /// Runs the handshake on a connected socket.
    pub async fn handshake(&self, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        self.connector.connect(self.name.clone(), tcp).await
    }
}

/// The platform's trusted certificates (the same the AWS SDK trusts).
fn platform_roots() -> Result<rustls::RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
        return Err(format!(
            "no trusted root certificates found on this system{}; install ca-certificates or set SSL_CERT_FILE",
            if why.is_empty() { String::new() } else { format!(" ({})", why.join("; ")) }
        ));
    }
    Ok(roots)
}

/// Whether an error of a handshake or of a TLS connection came from TLS itself (a certificate
/// rejected, no common protocol, a corrupt record) rather than from the socket under it.
pub(crate) fn is_tls_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
}

/// Whether the server's certificate was rejected (as opposed to any other failure).
pub(crate) fn is_certificate_error(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented))
}

/// A TLS error in words, for the report and the terminal. rustls shows some certificate
/// problems only as debug text (a self-signed certificate comes out as
/// `Other(OtherError(CaUsedAsEndEntity))`), which tells a user nothing about what to do.
pub(crate) fn describe(e: &io::Error) -> String {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(c)) => {
            format!("the server's certificate was rejected: {}", certificate_problem(c))
        }
        Some(rustls::Error::NoCertificatesPresented) => "the server presented no certificate".into(),
        Some(other) => other.to_string(),
        None => e.to_string(),
    }
}

/// Why a certificate was rejected, said for whoever has to fix it.
fn certificate_problem(c: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match c {
        C::UnknownIssuer => {
            "it is not issued by a certificate authority this machine trusts (a self-signed certificate, or one \
             from a private CA: trust that CA with SSL_CERT_FILE)"
                .into()
        }
        C::Expired | C::ExpiredContext { .. } => format!("it has expired ({c})"),
        C::NotValidYet | C::NotValidYetContext { .. } => format!("it is not valid yet ({c})"),
        C::NotValidForName => "it is for another name than the URL's host".into(),
        C::NotValidForNameContext { .. } => format!("it is for another name than the URL's host: {c}"),
        C::Revoked => "it has been revoked".into(),
        C::BadEncoding => "it is malformed".into(),
        C::BadSignature => "its signature does not verify".into(),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => "it is not meant for a TLS server".into(),
        C::Other(other) => match other.0.to_string().as_str() {
            // webpki's names for these, which rustls passes on as they are.
            "CaUsedAsEndEntity" => "it is a CA certificate used as the server's own: a self-signed certificate (as \
                                    `openssl req -x509` makes by default)"
                .into(),
            "EndEntityUsedAsCa" => "its chain uses a server certificate as a certificate authority".into(),
            "MaximumPathDepthExceeded" | "MaximumPathBuildCallsExceeded" => "its chain is too long".into(),
            "UnsupportedCertVersion" => "it is not an X.509 version 3 certificate".into(),
            "MissingOrMalformedExtensions" | "ExtensionValueInvalid" => "it has missing or malformed extensions".into(),
            "UnsupportedCriticalExtension" => "it has a critical extension this client does not support".into(),
            other => format!("{other} (a certificate problem rustls reports by this name)"),
        },
        other => other.to_string(),
    }
}

/// Accepts any certificate for any name (opt-in, for self-signed test endpoints); the handshake
/// signatures are still verified, so the server must hold the certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

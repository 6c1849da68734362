//! TLS for the `--tls-listen` listeners (and inherited sockets named `tls`):
//! rustls with the ring provider, TLS 1.3 and 1.2, ALPN `h2` then
//! `http/1.1`, session resumption by tickets (TLS 1.3 and 1.2) and by a
//! server-side session cache.
//!
//! The certificate and key live behind a resolver that can be swapped: a
//! SIGHUP re-reads both files and the next handshake uses the new pair,
//! while connections already open keep theirs. A pair that fails to load
//! (unreadable, not PEM, a key that does not match the certificate) is
//! refused at start-up naming the files, and on reload keeps the old pair.

use super::conn::{Checked, Rewind, Start};
use crate::config::TlsFiles;
use arc_swap::ArcSwap;
use std::io;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{ServerConfig, version};
use tokio_rustls::server::TlsStream;

/// Sessions the server-side cache keeps for resumption by session ID.
const SESSION_CACHE: usize = 4096;

/// The TLS side of the server: the acceptor and the swappable certificate.
#[derive(Clone)]
pub(super) struct Tls {
    acceptor: TlsAcceptor,
    current: Arc<Current>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

/// The certificate every new handshake gets.
#[derive(Debug)]
struct Current(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

impl Tls {
    /// Loads the pair and builds the acceptor.
    pub(super) fn new(files: &TlsFiles) -> io::Result<Tls> {
        let pair = load(files).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let current = Arc::new(Current(ArcSwap::from(pair)));
        let provider = Arc::new(ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&version::TLS13, &version::TLS12])
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        config.ticketer = ring::Ticketer::new().map_err(io::Error::other)?;
        Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(config)), current })
    }

    /// Reads and checks a pair for [`Tls::install`] (SIGHUP).
    pub(super) fn prepare(files: &TlsFiles) -> Result<Pair, String> {
        load(files).map(Pair)
    }

    /// The next handshakes use `pair`; open connections keep theirs.
    pub(super) fn install(&self, pair: Pair) {
        self.current.0.store(pair.0);
    }

    /// The handshake; the protocol ALPN chose.
    pub(super) async fn accept(
        &self,
        stream: Checked<Rewind<TcpStream>>,
    ) -> io::Result<(TlsStream<Checked<Rewind<TcpStream>>>, Start)> {
        let tls = self.acceptor.accept(stream).await?;
        let start = match tls.get_ref().1.alpn_protocol() {
            Some(b"h2") => Start::H2,
            _ => Start::H1,
        };
        Ok((tls, start))
    }
}

/// A checked certificate chain and key, ready to install.
#[derive(Debug)]
pub(super) struct Pair(Arc<CertifiedKey>);

/// The name of a negotiated TLS version, as the access log shows it.
pub(super) fn version_name(v: Option<tokio_rustls::rustls::ProtocolVersion>) -> Option<&'static str> {
    use tokio_rustls::rustls::ProtocolVersion;
    match v? {
        ProtocolVersion::TLSv1_3 => Some("TLSv1.3"),
        ProtocolVersion::TLSv1_2 => Some("TLSv1.2"),
        _ => Some("TLS"),
    }
}

/// Reads and checks a certificate chain and its key.
fn load(files: &TlsFiles) -> Result<Arc<CertifiedKey>, String> {
    let (cert, key) = (files.cert.display(), files.key.display());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| format!("cannot read the TLS certificate {cert}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the TLS certificate {cert} is not valid PEM: {e}"))?;
    if chain.is_empty() {
        return Err(format!("the TLS certificate file {cert} holds no certificate"));
    }
    let der = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("cannot read a private key from {key}: {e}"))?;
    let signing = ring::sign::any_supported_type(&der)
        .map_err(|e| format!("the private key in {key} cannot be used: {e}"))?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match()
        .map_err(|e| format!("the TLS key {key} does not match the certificate {cert} ({e})"))?;
    Ok(Arc::new(pair))
}

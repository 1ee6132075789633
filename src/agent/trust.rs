//! Which server certificate the agent accepts. Paired with a fingerprint (the one-line
//! install, `pair --fingerprint`, the pairing dialog) it accepts that certificate only, and the
//! next one the server announced over a connection pinned to it; paired without one it
//! accepts what the Windows root store trusts (an office with its own CA).
//!
//! Pinning needs a verifier of our own, which ureq's rustls connector does not take: the
//! connector here wraps ureq's TCP transport in rustls with it (the same steps as ureq's).

use std::fmt;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout,
    TcpConnector, Transport, TransportAdapter,
};

use crate::protocol::{Fingerprint, ServerCertificatePins};

/// How this agent decides that it talks to its server.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The certificates pinned at pairing (and the next one announced).
    Pinned(Arc<Pins>),
    /// Whatever the system's root store trusts (no fingerprint was given at pairing).
    System,
}

impl Trust {
    pub fn of(pins: Option<ServerCertificatePins>) -> Self {
        match pins {
            Some(p) => Trust::Pinned(Arc::new(Pins::new(p))),
            None => Trust::System,
        }
    }

    pub fn pinned(&self) -> Option<&Arc<Pins>> {
        match self {
            Trust::Pinned(p) => Some(p),
            Trust::System => None,
        }
    }
}

/// The pinned fingerprints, and what the last refused handshake presented.
#[derive(Debug)]
pub struct Pins {
    pins: RwLock<ServerCertificatePins>,
    changed: Mutex<bool>,
    refused: Mutex<Option<Fingerprint>>,
    /// The unannounced certificate the server said it serves, warned about once.
    unannounced: Mutex<Option<Fingerprint>>,
}

impl Pins {
    pub fn new(pins: ServerCertificatePins) -> Self {
        Self {
            pins: RwLock::new(pins),
            changed: Mutex::new(false),
            refused: Mutex::new(None),
            unannounced: Mutex::new(None),
        }
    }

    pub fn current(&self) -> ServerCertificatePins {
        self.pins.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether a handshake presenting `presented` goes ahead. The announced next certificate
    /// becomes the pinned one the first time the server presents it.
    fn accepts(&self, presented: &Fingerprint) -> bool {
        let mut pins = self.pins.write().unwrap_or_else(|p| p.into_inner());
        if pins.current == *presented {
            return true;
        }
        if pins.next.as_ref() == Some(presented) {
            super::log::info(format!(
                "The server now presents the certificate it announced ({presented}): pinned"
            ));
            *pins = ServerCertificatePins {
                current: presented.clone(),
                next: None,
            };
            *self.changed.lock().unwrap_or_else(|p| p.into_inner()) = true;
            return true;
        }
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(presented.clone());
        false
    }

    /// What the server announced over a connection this agent accepted: the next certificate
    /// of a planned change is accepted from now on, and once the server says it serves the
    /// announced one (this connection, made before the change, still vouches for it), that
    /// one is pinned.
    pub fn learn(&self, announced: &ServerCertificatePins) {
        let mut pins = self.pins.write().unwrap_or_else(|p| p.into_inner());
        if *pins == *announced {
            return;
        }
        if announced.current == pins.current {
            if let Some(next) = &announced.next {
                super::log::info(format!(
                    "The server announced its next certificate ({next}): it will be accepted when it is served"
                ));
            }
            pins.next = announced.next.clone();
        } else if pins.next.as_ref() == Some(&announced.current) {
            super::log::info(format!(
                "The server now serves the certificate it announced ({}): pinned",
                announced.current
            ));
            *pins = announced.clone();
        } else {
            // Neither the pinned certificate nor the announced one (changed without notice):
            // refused at the next connection; a new pairing decides.
            let mut warned = self.unannounced.lock().unwrap_or_else(|p| p.into_inner());
            if warned.as_ref() != Some(&announced.current) {
                *warned = Some(announced.current.clone());
                super::log::warn(format!(
                    "The server says it now serves a certificate that was never announced ({}): the next connection to it will be refused; pair again with its fingerprint if the change is the administrator's",
                    announced.current
                ));
            }
            return;
        }
        *self.changed.lock().unwrap_or_else(|p| p.into_inner()) = true;
    }

    /// The pins to save, once each time they change.
    pub fn take_changed(&self) -> Option<ServerCertificatePins> {
        let mut changed = self.changed.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *changed).then(|| self.current())
    }

    /// What the last refused handshake presented, once.
    pub fn take_refused(&self) -> Option<Fingerprint> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// Accepts the pinned certificates, whatever their names, issuer or dates: the fingerprint
/// names one certificate exactly. The handshake's signatures are still checked with its key.
#[derive(Debug)]
struct PinVerifier {
    pins: Arc<Pins>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pins.accepts(&Fingerprint::of(end_entity.as_ref())) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// rustls with [`PinVerifier`] over ureq's TCP transport.
struct PinnedTls {
    config: Arc<ClientConfig>,
}

impl fmt::Debug for PinnedTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedTls").finish()
    }
}

fn tls_error(detail: impl Into<String>) -> ureq::Error {
    ureq::Error::Io(std::io::Error::other(detail.into()))
}

impl<In: Transport> Connector<In> for PinnedTls {
    type Out = Either<In, PinnedTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Err(tls_error("no connection to wrap in TLS"));
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details.uri.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| tls_error(format!("not a host name: {host}")))?;
        let mut conn = ClientConnection::new(Arc::clone(&self.config), name)?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        conn.complete_io(&mut sock)?;
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(Either::B(PinnedTransport {
            buffers,
            stream: StreamOwned { conn, sock },
        })))
    }
}

pub struct PinnedTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl fmt::Debug for PinnedTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedTransport").finish()
    }
}

impl Transport for PinnedTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

/// An HTTP client that trusts the server as `trust` says.
pub fn http_agent(config: ureq::config::Config, trust: &Trust) -> ureq::Agent {
    match trust {
        Trust::System => ureq::Agent::new_with_config(config),
        Trust::Pinned(pins) => {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let tls = ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.dangerous()
                        .with_custom_certificate_verifier(Arc::new(PinVerifier {
                            pins: Arc::clone(pins),
                            provider,
                        }))
                        .with_no_client_auth()
                });
            match tls {
                Ok(tls) => {
                    let connector =
                        ().chain(ConnectProxyConnector::default())
                            .chain(TcpConnector::default())
                            .chain(PinnedTls {
                                config: Arc::new(tls),
                            });
                    ureq::Agent::with_parts(
                        config,
                        connector,
                        ureq::unversioned::resolver::DefaultResolver::default(),
                    )
                }
                // The ring provider always offers TLS 1.2 and 1.3: unreachable in practice,
                // and never a fall back to trusting anything.
                Err(e) => {
                    super::log::error(format!("TLS configuration: {e}"));
                    ureq::Agent::new_with_config(config)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(s: &str) -> Fingerprint {
        Fingerprint::of(s.as_bytes())
    }

    #[test]
    fn only_the_pinned_and_the_announced_certificate_are_accepted() {
        let pins = Pins::new(ServerCertificatePins {
            current: fp("a"),
            next: None,
        });
        assert!(pins.accepts(&fp("a")));
        assert!(!pins.accepts(&fp("b")));
        assert_eq!(pins.take_refused(), Some(fp("b")));
        assert_eq!(pins.take_refused(), None);
        // An announcement for another current certificate is not taken.
        pins.learn(&ServerCertificatePins {
            current: fp("x"),
            next: Some(fp("b")),
        });
        assert!(!pins.accepts(&fp("b")));
        assert_eq!(pins.take_changed(), None);
        pins.learn(&ServerCertificatePins {
            current: fp("a"),
            next: Some(fp("b")),
        });
        assert_eq!(pins.take_changed().unwrap().next, Some(fp("b")));
        assert!(pins.accepts(&fp("a")));
        // Told over the old connection that b is served now: b alone is pinned.
        let told = Pins::new(pins.current());
        told.learn(&ServerCertificatePins {
            current: fp("b"),
            next: None,
        });
        assert_eq!(told.current().current, fp("b"));
        assert!(!told.accepts(&fp("a")));
        // Served: b is pinned and a is no longer accepted.
        assert!(pins.accepts(&fp("b")));
        assert_eq!(
            pins.take_changed(),
            Some(ServerCertificatePins {
                current: fp("b"),
                next: None
            })
        );
        assert!(!pins.accepts(&fp("a")));
    }
}

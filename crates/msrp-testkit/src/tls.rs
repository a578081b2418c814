//! Throw-away TLS certificates and the servers and clients that use them.

use std::sync::Arc;

use tokio_rustls::{TlsAcceptor, TlsConnector};

type Der = rustls::pki_types::CertificateDer<'static>;

/// A self-signed certificate for `names`: its DER, its key and its PEM.
fn self_signed(names: &[&str]) -> (Der, rustls::pki_types::PrivateKeyDer<'static>, String) {
    let ck = rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
    (ck.cert.der().clone(), key, ck.cert.pem())
}

fn server_config(cert: &Der, key: rustls::pki_types::PrivateKeyDer<'static>) -> rustls::ServerConfig {
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap()
}

fn client_config(certs: &[Der]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots.add(c.clone()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub connector: TlsConnector,
}

/// A TLS client that trusts exactly `certs` (self-signed test certificates).
pub fn connector(certs: &[Der]) -> TlsConnector {
    TlsConnector::from(Arc::new(client_config(certs)))
}

/// A certificate for `names`: a server using it, and a client that trusts it (plus `extra`).
pub fn tls_for(names: &[&str], extra: &[Der]) -> (Tls, Der) {
    let (cert, key, _) = self_signed(names);
    let mut trusted = vec![cert.clone()];
    trusted.extend_from_slice(extra);
    let tls = Tls { acceptor: TlsAcceptor::from(Arc::new(server_config(&cert, key))), connector: connector(&trusted) };
    (tls, cert)
}

/// A certificate for `name` as configurations: the server's, a client's that trusts it, its
/// PEM (for rsipstack's TLS client) and its DER.
pub fn tls_configs(name: &str) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>, String, Der) {
    let (cert, key, pem) = self_signed(&[name]);
    let server = Arc::new(server_config(&cert, key));
    (server, Arc::new(client_config(std::slice::from_ref(&cert))), pem, cert)
}

//! Certificates made by the tests (rcgen): a CA, server leaves for `localhost` and 127.0.0.1,
//! client leaves, written as PEM files; and TLS clients (tonic, reqwest, a bare rustls handshake
//! that reports the certificate the server showed).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use tonic::transport::Channel;
use toolstream::tls::{ClientTls, ServerTls, TlsFiles};

/// A certificate authority that signs leaves.
pub struct Ca {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf's certificate and key, as PEM.
pub struct Leaf {
    pub cert: String,
    pub key: String,
}

impl Ca {
    /// A new CA; `name` is its subject CN (leaves must have other names: BoringSSL, under
    /// grpcio, refuses a chain whose names repeat).
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("ca cert");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server leaf for `localhost` and 127.0.0.1 with subject CN `name` and `serial`.
    pub fn server(&self, name: &str, serial: u64) -> Leaf {
        self.leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            name,
            serial,
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client leaf with subject CN `name`.
    pub fn client(&self, name: &str) -> Leaf {
        self.leaf(vec![], name, 7, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(
        &self,
        names: Vec<String>,
        common_name: &str,
        serial: u64,
        usage: ExtendedKeyUsagePurpose,
    ) -> Leaf {
        let mut params = CertificateParams::new(names).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

impl Leaf {
    /// Writes `<name>.pem` and `<name>.key` in `dir`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert).expect("write cert");
        std::fs::write(&key, &self.key).expect("write key");
        (cert, key)
    }
}

/// Everything a TLS test needs, in one temporary directory: the CA (`ca.pem`), the server's pair
/// (`server.pem`, `server.key`, CN "server-1", serial 1), a client of the CA (`alice.*`, CN
/// "alice") and a client of another CA (`mallory.*`).
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    pub ca_file: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TestPki {
    pub fn new() -> TestPki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::new("toolstream test CA");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca.pem).expect("write ca");
        let (server_cert, server_key) = ca.server("server-1", 1).write(dir.path(), "server");
        ca.client("alice").write(dir.path(), "alice");
        ca.client("bob").write(dir.path(), "bob");
        Ca::new("another CA")
            .client("mallory")
            .write(dir.path(), "mallory");
        TestPki {
            dir,
            ca,
            ca_file,
            server_cert,
            server_key,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The server's TLS from the files: with mTLS (clients need a certificate of the CA) or not.
    pub fn server_tls(&self, mtls: bool) -> ServerTls {
        ServerTls::load(TlsFiles {
            cert: self.server_cert.clone(),
            key: self.server_key.clone(),
            client_ca: mtls.then(|| self.ca_file.clone()),
        })
        .expect("server TLS")
    }

    /// Client settings trusting the CA, with the client certificate `client` (`alice`,
    /// `mallory`) when given.
    pub fn client_tls(&self, client: Option<&str>) -> ClientTls {
        ClientTls {
            ca: Some(self.ca_file.clone()),
            cert: client.map(|name| self.path(&format!("{name}.pem"))),
            key: client.map(|name| self.path(&format!("{name}.key"))),
        }
    }

    /// A tonic channel to `addr` over TLS, verified with the CA, as `localhost`.
    pub async fn channel(
        &self,
        addr: std::net::SocketAddr,
        client: Option<&str>,
    ) -> Result<Channel, tonic::transport::Error> {
        toolstream::tls::endpoint(
            &format!("https://localhost:{}", addr.port()),
            &self.client_tls(client),
        )
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
    }

    /// A reqwest client trusting the CA (HTTP/1.1 only, as a browser's SSE or WebSocket uses).
    pub fn http1(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca.pem.as_bytes()).expect("ca");
        reqwest::Client::builder()
            .add_root_certificate(ca)
            .http1_only()
            .build()
            .expect("client")
    }
}

/// A TLS connection to `addr` as `localhost`, trusting `ca_pem`, offering `alpn`, without a
/// client certificate.
pub async fn tls_connection(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("ca pem")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    connector.connect(name, tcp).await.expect("handshake")
}

/// The server certificate `addr` shows to a new connection: its subject CN and serial (hex),
/// with the ALPN protocol agreed when offering `alpn`.
pub async fn served_certificate(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    alpn: &[&[u8]],
) -> (String, String, Option<Vec<u8>>) {
    let tls = tls_connection(addr, ca_pem, alpn).await;
    let (_, connection) = tls.get_ref();
    let alpn = connection.alpn_protocol().map(<[u8]>::to_vec);
    let der = connection.peer_certificates().expect("server certs")[0].clone();
    let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).expect("x509");
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    (cn, parsed.raw_serial_as_string(), alpn)
}

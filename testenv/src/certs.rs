//! A throw-away certificate authority for tests: TLS server certificates for the registry and
//! the signing certificate of the token server.
//!
//! Keys are ECDSA P-256 (generated fresh by `rcgen` for every [`TestCa`]); certificates are valid
//! from 1975 to 4096, so clock skew never matters.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority that lives as long as the test.
pub struct TestCa {
    /// The CA certificate (PEM): what clients trust, and the registry's token `rootcertbundle`.
    pub ca_pem: String,
    /// The CA certificate (DER).
    pub ca_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate with its private key, signed by a [`TestCa`].
#[derive(Clone, Debug)]
pub struct LeafCert {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The certificate (DER), e.g. for a JWT `x5c` header.
    pub cert_der: Vec<u8>,
    /// The private key (PKCS#8 PEM).
    pub key_pem: String,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new CA with a fresh key. Panics only if `rcgen` cannot generate a key.
    pub fn new() -> Self {
        let key = KeyPair::generate().expect("generating the test CA key");
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "testenv CA");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "registry-operator testenv");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-signing the test CA");
        TestCa {
            ca_pem: cert.pem(),
            ca_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A TLS server certificate and key `(cert_pem, key_pem)` for the given SANs (IP addresses or
    /// DNS names). An empty `sans` means `["127.0.0.1", "localhost"]`.
    pub fn server_cert(&self, sans: &[&str]) -> (String, String) {
        let leaf = self.server_leaf(sans);
        (leaf.cert_pem, leaf.key_pem)
    }

    /// Like [`TestCa::server_cert`], with the DER form as well.
    pub fn server_leaf(&self, sans: &[&str]) -> LeafCert {
        let sans: Vec<String> = if sans.is_empty() {
            vec!["127.0.0.1".into(), "localhost".into()]
        } else {
            sans.iter().map(|s| s.to_string()).collect()
        };
        let mut params = CertificateParams::new(sans.clone()).expect("valid SANs");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, sans[0].clone());
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        self.sign(params)
    }

    /// A signing certificate and key for the token server: ECDSA P-256 (JWT `ES256`), usable in
    /// a JWT `x5c` header that chains to this CA.
    pub fn signing_cert(&self, common_name: &str) -> LeafCert {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> LeafCert {
        let key = KeyPair::generate().expect("generating a leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("signing a leaf certificate");
        LeafCert {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
        }
    }
}

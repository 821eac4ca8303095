//! Certificates, keys, the token file and the kubeconfig of one control plane.

use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// Files under `<dir>/pki` that kube-apiserver reads.
pub(crate) struct Pki {
    /// PEM of the CA that signed the serving certificate (goes into the kubeconfig).
    pub(crate) ca_pem: String,
    pub(crate) ca_file: PathBuf,
    pub(crate) serving_cert_file: PathBuf,
    pub(crate) serving_key_file: PathBuf,
    /// Service-account token signing key (PKCS#8 private key PEM) and its public key.
    pub(crate) sa_key_file: PathBuf,
    pub(crate) sa_pub_file: PathBuf,
    /// `--token-auth-file`: `TOKEN,admin,1,"system:masters"`.
    pub(crate) token_file: PathBuf,
    pub(crate) token: String,
}

impl Pki {
    pub(crate) fn generate(dir: &Path) -> anyhow::Result<Pki> {
        let pki = dir.join("pki");
        std::fs::create_dir_all(&pki).with_context(|| format!("creating {}", pki.display()))?;

        // A throwaway CA, and a serving certificate for the loopback names.
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params.distinguished_name = name("testenv control-plane CA");
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let serving_key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default".to_string(),
            "kubernetes.default.svc".to_string(),
            "10.0.0.1".to_string(),
        ])?;
        serving.distinguished_name = name("kube-apiserver");
        serving.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving.signed_by(&serving_key, &issuer)?;

        let sa_key = KeyPair::generate()?;
        let token = hex::encode(rand::random::<[u8; 24]>());

        let out = Pki {
            ca_pem: ca_cert.pem(),
            ca_file: pki.join("ca.crt"),
            serving_cert_file: pki.join("apiserver.crt"),
            serving_key_file: pki.join("apiserver.key"),
            sa_key_file: pki.join("service-account.key"),
            sa_pub_file: pki.join("service-account.pub"),
            token_file: pki.join("tokens.csv"),
            token,
        };
        write(&out.ca_file, &out.ca_pem)?;
        write(&out.serving_cert_file, &serving_cert.pem())?;
        write(&out.serving_key_file, &serving_key.serialize_pem())?;
        write(&out.sa_key_file, &sa_key.serialize_pem())?;
        write(&out.sa_pub_file, &sa_key.public_key_pem())?;
        write(
            &out.token_file,
            &format!("{},admin,1,\"system:masters\"\n", out.token),
        )?;
        Ok(out)
    }
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// A kubeconfig for the admin token, verifying the apiserver against our CA.
pub(crate) fn kubeconfig(server: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    token: {token}
contexts:
- name: testenv
  context:
    cluster: testenv
    user: admin
    namespace: default
current-context: testenv
"
    )
}

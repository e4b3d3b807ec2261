//! Certificates for TLS tests, made with openssl: a CA per [`Pki`], server
//! certificates for `localhost` and 127.0.0.1, and client certificates.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// A certificate authority in a temp dir, and what it issued.
pub struct Pki {
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (scripts/setup.sh system installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An EC P-256 key (fast to make) and a self-signed or CSR request.
const NEW_KEY: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

impl Pki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let subject = format!("/CN={name}");
        let mut args = vec!["req", "-x509", "-nodes", "-days", "2", "-subj", &subject];
        args.extend(NEW_KEY);
        args.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
        openssl(dir.path(), &args);
        Pki { dir }
    }

    /// A file in this CA's directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `ca.pem`.
    pub fn ca(&self) -> PathBuf {
        self.file("ca.pem")
    }

    /// Issues `NAME.pem` and `NAME.key`: a server certificate for
    /// localhost and 127.0.0.1, or a client certificate.
    pub fn issue(&self, name: &str, client: bool) -> (PathBuf, PathBuf) {
        self.issue_for(name, client, &[])
    }

    /// [`Pki::issue`], a server certificate also valid for `dns_names`
    /// (the cluster DNS names the manifests dial, say).
    pub fn issue_for(&self, name: &str, client: bool, dns_names: &[&str]) -> (PathBuf, PathBuf) {
        let (pem, key, csr, ext) = (
            format!("{name}.pem"),
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.ext"),
        );
        let subject = format!("/CN={name}");
        let mut args = vec!["req", "-nodes", "-subj", &subject];
        args.extend(NEW_KEY);
        args.extend(["-keyout", &key, "-out", &csr]);
        openssl(self.dir.path(), &args);
        let extensions = if client {
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n".to_string()
        } else {
            let extra: String = dns_names.iter().map(|n| format!(",DNS:{n}")).collect();
            format!(
                "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n\
                 subjectAltName=DNS:localhost,IP:127.0.0.1{extra}\n"
            )
        };
        std::fs::write(self.file(&ext), extensions).unwrap();
        openssl(
            self.dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &pem,
            ],
        );
        (self.file(&pem), self.file(&key))
    }

    /// Client settings trusting this CA, for `localhost`, with the client
    /// certificate `identity` (from [`Pki::issue`]) if given.
    pub fn client(&self, identity: Option<&(PathBuf, PathBuf)>) -> ClientTlsConfig {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(std::fs::read(self.ca()).unwrap()))
            .domain_name("localhost");
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(
                std::fs::read(cert).unwrap(),
                std::fs::read(key).unwrap(),
            ));
        }
        tls
    }
}

/// Server flags for a certificate from [`Pki::issue`].
pub fn server_flags((cert, key): &(PathBuf, PathBuf)) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        cert.display().to_string(),
        "--tls-key".into(),
        key.display().to_string(),
    ]
}

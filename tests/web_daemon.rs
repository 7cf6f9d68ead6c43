//! The daemon behind `--web.config.file`: HTTPS with basic auth and with
//! required client certificates, checked with a real client (curl).

mod common;
mod daemon_harness;

use std::path::Path;
use std::process::Command;

use daemon_harness::TestDaemon;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

fn pki(dir: &Path) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct subjects: with rcgen's default name on both, OpenSSL takes
    // the leaf for a self-signed certificate.
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "redis-vitals test CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
    for (name, sans) in [
        ("server", vec!["127.0.0.1".to_string()]),
        ("client", vec!["scraper.test".to_string()]),
    ] {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(sans).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &ca).unwrap();
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

/// HTTP status curl saw, or 0 when the connection or handshake failed.
fn curl(dir: &Path, url: &str, extra: &[&str]) -> u16 {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
            "--cacert",
        ])
        .arg(dir.join("ca.crt"))
        .args(extra)
        .arg(url)
        .output()
        .expect("curl must be installed (the README test command installs it)");
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    if code == 0 {
        eprintln!("curl {url}: {}", String::from_utf8_lossy(&out.stderr));
    }
    code
}

#[test]
fn https_with_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let hash = bcrypt::hash("scrape-pw", 4).unwrap();
    std::fs::write(
        dir.path().join("web.yml"),
        format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prometheus: {hash}\n"),
    )
    .unwrap();
    let redis = common::RedisServer::start(&[]);
    let d = TestDaemon::start(&[
        "--redis.addr",
        &redis.addr(),
        "--web.config.file",
        dir.path().join("web.yml").to_str().unwrap(),
    ]);
    let url = format!("https://{}/metrics", d.addr);
    let p = dir.path();
    assert_eq!(curl(p, &url, &["-u", "prometheus:scrape-pw"]), 200);
    assert_eq!(curl(p, &url, &["-u", "prometheus:wrong"]), 401);
    assert_eq!(curl(p, &url, &["-u", "someone:scrape-pw"]), 401);
    assert_eq!(curl(p, &url, &[]), 401);
    // Health endpoints are protected too, as exporter-toolkit does.
    assert_eq!(curl(p, &format!("https://{}/-/healthy", d.addr), &[]), 401);
    // Plain HTTP on the TLS port gets nowhere.
    let status =
        common::try_http_request(d.addr, "GET", "/metrics", &[], b"").map_or(0, |r| r.status);
    assert_ne!(status, 200);
}

#[test]
fn https_with_required_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    std::fs::write(
        dir.path().join("web.yml"),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: ca.crt\n  client_auth_type: RequireAndVerifyClientCert\n",
    )
    .unwrap();
    let d = TestDaemon::start(&[
        "--redis.addr",
        "127.0.0.1:1",
        "--web.config.file",
        dir.path().join("web.yml").to_str().unwrap(),
    ]);
    let url = format!("https://{}/-/healthy", d.addr);
    let p = dir.path();
    let cert = p.join("client.crt");
    let key = p.join("client.key");
    assert_eq!(
        curl(
            p,
            &url,
            &[
                "--cert",
                cert.to_str().unwrap(),
                "--key",
                key.to_str().unwrap()
            ]
        ),
        200
    );
    assert_eq!(
        curl(p, &url, &[]),
        0,
        "a client without a certificate must be refused"
    );
}

//! TLS to a real `redis-server --tls-port` with certificates made by the
//! test: CA-verified TLS, mutual TLS, server name override, a wrong CA that
//! fails with a clear reason, and the explicit insecure mode.

mod common;
mod daemon_harness;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{find_value, free_port, RedisServer};
use daemon_harness::TestDaemon;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

const WAIT: Duration = Duration::from_secs(15);

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn s(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }
}

fn make_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(dir: &Path, name: &str, sans: &[&str], issuer: &CertifiedIssuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

/// A CA, a server certificate for 127.0.0.1 and one only for
/// `redis.test`, a client certificate, and an unrelated CA.
fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca("redis-vitals test CA");
    std::fs::write(dir.path().join("ca.crt"), ca.pem()).unwrap();
    leaf(dir.path(), "server", &["127.0.0.1", "localhost"], &ca);
    leaf(dir.path(), "named", &["redis.test"], &ca);
    leaf(dir.path(), "client", &["client.test"], &ca);
    let other = make_ca("some other CA");
    std::fs::write(dir.path().join("other-ca.crt"), other.pem()).unwrap();
    Pki { dir }
}

/// A server with a TLS port beside the plain one the harness uses.
fn tls_server(p: &Pki, cert: &str, require_client_cert: bool) -> (RedisServer, String) {
    let port = free_port().to_string();
    let server = RedisServer::start(&[
        "--tls-port",
        &port,
        "--tls-cert-file",
        &p.s(&format!("{cert}.crt")),
        "--tls-key-file",
        &p.s(&format!("{cert}.key")),
        "--tls-ca-cert-file",
        &p.s("ca.crt"),
        "--tls-auth-clients",
        if require_client_cert { "yes" } else { "no" },
    ]);
    (server, format!("127.0.0.1:{port}"))
}

#[test]
fn tls_with_ca_mutual_tls_and_server_name() {
    let p = pki();
    let (_plain, addr) = tls_server(&p, "server", false);
    let (_mtls, mtls_addr) = tls_server(&p, "server", true);
    let (_named, named_addr) = tls_server(&p, "named", false);
    let config = format!(
        "[redis]\ntls-ca-file = \"{ca}\"\n\n\
         [[targets]]\naddr = \"rediss://{addr}\"\n\n\
         [[targets]]\naddr = \"rediss://{mtls_addr}\"\ntls-cert-file = \"{crt}\"\ntls-key-file = \"{key}\"\n\n\
         [[targets]]\naddr = \"rediss://{named_addr}\"\ntls-server-name = \"redis.test\"\n",
        ca = p.s("ca.crt"),
        crt = p.s("client.crt"),
        key = p.s("client.key"),
    );
    std::fs::write(p.path("config.toml"), config).unwrap();
    let d = TestDaemon::start(&["--config.file", &p.s("config.toml")]);
    for a in [&addr, &mtls_addr, &named_addr] {
        d.wait_value(WAIT, "redis_up", &[("addr", a)], |v| v == 1.0);
    }
    let m = d.metrics();
    assert!(find_value(&m, "redis_memory_used_bytes", &[("addr", &mtls_addr)]).is_some());
}

#[test]
fn tls_failures_have_clear_reasons() {
    let p = pki();
    let (_a, wrong_ca_addr) = tls_server(&p, "server", false);
    let (_b, no_cert_addr) = tls_server(&p, "server", true);
    let (_c, wrong_name_addr) = tls_server(&p, "named", false);
    let (_d, insecure_addr) = tls_server(&p, "server", false);
    let config = format!(
        "[redis]\ntls-ca-file = \"{ca}\"\n\n\
         [[targets]]\naddr = \"rediss://{wrong_ca_addr}\"\ntls-ca-file = \"{other}\"\n\n\
         [[targets]]\naddr = \"rediss://{no_cert_addr}\"\n\n\
         [[targets]]\naddr = \"rediss://{wrong_name_addr}\"\n\n\
         [[targets]]\naddr = \"rediss://{insecure_addr}\"\ntls-ca-file = \"{other}\"\ntls-insecure-skip-verify = true\n",
        ca = p.s("ca.crt"),
        other = p.s("other-ca.crt"),
    );
    std::fs::write(p.path("config.toml"), config).unwrap();
    let d = TestDaemon::start(&["--config.file", &p.s("config.toml")]);
    // An unknown CA and a certificate for another name fail in the
    // handshake: reason tls, and the landing page says why.
    for a in [&wrong_ca_addr, &wrong_name_addr] {
        d.wait_value(
            WAIT,
            "redis_vitals_poll_errors_total",
            &[("addr", a), ("reason", "tls")],
            |v| v >= 1.0,
        );
        assert_eq!(
            find_value(&d.metrics(), "redis_up", &[("addr", a)]),
            Some(0.0)
        );
    }
    let page = d.get("/").1;
    assert!(page.contains("invalid peer certificate"), "{page}");
    // Without a client certificate the server drops us after the handshake.
    d.wait_value(WAIT, "redis_up", &[("addr", &no_cert_addr)], |v| v == 0.0);
    common::wait_until(
        WAIT,
        "a failure reason for the missing client certificate",
        || {
            let m = d.metrics();
            ["tls", "io", "connect", "protocol"]
                .iter()
                .find(|r| {
                    // Every reason's series exists from the start at 0.
                    find_value(
                        &m,
                        "redis_vitals_poll_errors_total",
                        &[("addr", &no_cert_addr), ("reason", r)],
                    )
                    .is_some_and(|v| v >= 1.0)
                })
                .map(|_| ())
        },
    );
    // The explicit insecure mode connects despite the unknown CA.
    d.wait_value(WAIT, "redis_up", &[("addr", &insecure_addr)], |v| v == 1.0);
}

#[test]
fn bad_tls_files_are_config_errors() {
    let p = pki();
    std::fs::write(p.path("garbage.pem"), "not a certificate").unwrap();
    let (ca, garbage, client_crt, server_key) = (
        p.s("ca.crt"),
        p.s("garbage.pem"),
        p.s("client.crt"),
        p.s("server.key"),
    );
    let t = "rediss://127.0.0.1:1";
    let cases = [
        (
            vec!["--redis.addr", t, "--redis.tls-ca-file", "/nonexistent.pem"],
            "redis.tls-ca-file",
        ),
        (
            vec!["--redis.addr", t, "--redis.tls-ca-file", &garbage],
            "redis.tls-ca-file",
        ),
        (
            vec![
                "--redis.addr",
                t,
                "--redis.tls-ca-file",
                &ca,
                "--redis.tls-cert-file",
                &client_crt,
            ],
            "redis.tls-key-file",
        ),
        (
            vec![
                "--redis.addr",
                t,
                "--redis.tls-ca-file",
                &ca,
                "--redis.tls-cert-file",
                &client_crt,
                "--redis.tls-key-file",
                &server_key,
            ],
            "redis.tls-key-file",
        ),
    ];
    for (args, key) in cases {
        let mut all = vec!["redis-vitals"];
        all.extend(args.iter().copied());
        let e = redis_vitals::config::Config::from_args(all).unwrap_err();
        assert_eq!(e.key, key, "{e}");
    }
}

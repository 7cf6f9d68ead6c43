//! The daemon behind `--web.config.file`: HTTPS with basic auth and with
//! required client certificates, checked with a real client (curl).

mod common;
mod daemon_harness;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

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

/// Body of a curl GET (HTTPS with the test CA), or None when it failed.
fn curl_body(dir: &Path, url: &str, extra: &[&str]) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sS", "-f", "--max-time", "10", "--cacert"])
        .arg(dir.join("ca.crt"))
        .args(extra)
        .arg(url)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_reload_that_would_lower_the_protection_is_refused_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let hash = bcrypt::hash("scrape-pw", 4).unwrap();
    let web = dir.path().join("web.yml");
    let full = format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prometheus: {hash}\n");
    std::fs::write(&web, &full).unwrap();
    let d = TestDaemon::start(&[
        "--redis.addr",
        "127.0.0.1:1",
        "--web.config.file",
        web.to_str().unwrap(),
    ]);
    let p = dir.path();
    let url = format!("https://{}/metrics", d.addr);
    let auth = ["-u", "prometheus:scrape-pw"];
    let gauge = |body: &str| {
        common::MetricsText::parse(body)
            .value("redis_vitals_web_config_last_reload_successful", &[])
    };
    let first = curl_body(p, &url, &auth).expect("scrape with credentials");
    assert_eq!(gauge(&first), Some(1.0));

    // Emptied, then TLS removed, then every user removed: each refused.
    let no_tls = format!("basic_auth_users:\n  prometheus: {hash}\n");
    let no_users = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    for (what, text) in [
        ("emptied", ""),
        ("without TLS", no_tls.as_str()),
        ("without users", no_users),
    ] {
        std::fs::write(&web, text).unwrap();
        common::wait_until(
            Duration::from_secs(15),
            &format!("the {what} file to be refused"),
            || {
                curl_body(p, &url, &auth)
                    .filter(|b| gauge(b) == Some(0.0))
                    .map(|_| ())
            },
        );
        // The old protection stands: TLS with credentials only.
        assert_eq!(curl(p, &url, &[]), 401, "{what}: no credentials");
        let plain =
            common::try_http_request(d.addr, "GET", "/metrics", &[], b"").map_or(0, |r| r.status);
        assert_ne!(plain, 200, "{what}: plain HTTP answered");
    }
    // A valid file with the same protection is applied again.
    std::fs::write(&web, &full).unwrap();
    common::wait_until(
        Duration::from_secs(15),
        "the restored file to be applied",
        || {
            curl_body(p, &url, &auth)
                .filter(|b| gauge(b) == Some(1.0))
                .map(|_| ())
        },
    );
}

/// One request on an open connection; the status.
fn request_on(s: &mut std::net::TcpStream, auth: &str) -> u16 {
    use std::io::{Read, Write};
    s.write_all(
        format!("GET /-/healthy HTTP/1.1\r\nHost: t\r\nAuthorization: Basic {auth}\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("response");
        assert!(n > 0, "closed");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap();
            if got.len() >= end + 4 + len {
                return text[9..12].parse().unwrap();
            }
        }
    }
}

fn basic(user: &str, pw: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
}

#[test]
fn a_removed_user_is_refused_at_the_next_request_of_an_open_connection() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    let (a, b) = (
        bcrypt::hash("pw-a", 4).unwrap(),
        bcrypt::hash("pw-b", 4).unwrap(),
    );
    std::fs::write(
        &web,
        format!("basic_auth_users:\n  alice: {a}\n  bob: {b}\n"),
    )
    .unwrap();
    let d = TestDaemon::start(&[
        "--redis.addr",
        "127.0.0.1:1",
        "--web.config.file",
        web.to_str().unwrap(),
    ]);
    let mut conn = std::net::TcpStream::connect(d.addr).unwrap();
    assert_eq!(request_on(&mut conn, &basic("alice", "pw-a")), 200);
    std::fs::write(&web, format!("basic_auth_users:\n  bob: {b}\n")).unwrap();
    // Bob on a connection of his own sees the reload first...
    common::wait_until(Duration::from_secs(15), "the reload", || {
        let mut c = std::net::TcpStream::connect(d.addr).unwrap();
        (request_on(&mut c, &basic("alice", "pw-a")) == 401).then_some(())
    });
    // ...and Alice's open keep-alive connection is refused at once.
    assert_eq!(request_on(&mut conn, &basic("alice", "pw-a")), 401);
    assert_eq!(request_on(&mut conn, &basic("bob", "pw-b")), 200);
}

/// A connection from the loopback address `src`.
fn connect_from(src: [u8; 4], to: std::net::SocketAddr) -> std::net::TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = rt
        .block_on(async {
            let sock = tokio::net::TcpSocket::new_v4()?;
            sock.bind((std::net::Ipv4Addr::from(src), 0).into())?;
            sock.connect(to).await
        })
        .unwrap();
    let s = s.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s
}

#[test]
fn password_and_request_floods_do_not_slow_or_refuse_a_known_user() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    // A realistic cost (each check takes tens of ms), and a rate limit
    // that a flood from one address would exhaust if it were shared.
    let hash = bcrypt::hash("scrape-pw", 8).unwrap();
    std::fs::write(
        &web,
        format!(
            "basic_auth_users:\n  prometheus: {hash}\nrate_limit:\n  interval: 100ms\n  burst: 5\n"
        ),
    )
    .unwrap();
    let d = TestDaemon::start(&[
        "--redis.addr",
        "127.0.0.1:1",
        "--web.config.file",
        web.to_str().unwrap(),
    ]);
    let good = basic("prometheus", "scrape-pw");
    // Known: verified once before the flood.
    let mut scraper = connect_from([127, 0, 0, 2], d.addr);
    assert_eq!(request_on(&mut scraper, &good), 200);

    let stop = std::sync::atomic::AtomicBool::new(false);
    let (statuses, worst) = std::thread::scope(|scope| {
        // 64 connections from 8 addresses send wrong passwords; one more
        // address sends requests without credentials at 20 per second.
        for i in 0..64u8 {
            let stop = &stop;
            scope.spawn(move || {
                let mut c = connect_from([127, 0, 3, i / 8 + 1], d.addr);
                let bad = basic("prometheus", &format!("guess-{i}"));
                while !stop.load(std::sync::atomic::Ordering::Acquire) {
                    let _ = request_on(&mut c, &bad);
                }
            });
        }
        scope.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let mut c = connect_from([127, 0, 4, 1], d.addr);
                let _ = request_on(&mut c, "");
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        std::thread::sleep(Duration::from_secs(1));
        let mut statuses = Vec::new();
        let mut worst = Duration::ZERO;
        for _ in 0..15 {
            let t = std::time::Instant::now();
            statuses.push(request_on(&mut scraper, &good));
            worst = worst.max(t.elapsed());
            std::thread::sleep(Duration::from_millis(300));
        }
        stop.store(true, std::sync::atomic::Ordering::Release);
        (statuses, worst)
    });
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    // A cached check is a hash lookup: no queueing behind bcrypt.
    assert!(worst < Duration::from_millis(500), "worst {worst:?}");
    eprintln!("known user during the flood: worst {worst:?}");
}

//! `--web.config.file` (exporter-toolkit format): loading the fixtures, basic
//! auth, HTTPS and client certificates over real sockets, and reloading.
//!
//! Certificates are generated here with rcgen into temporary directories
//! (see tests/fixtures/webconfig/README.md).

use std::convert::Infallible;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use redis_vitals::web::config::{
    accept, unauthorized_response_headers, AuthError, WebConfig, WebConfigWatcher, POLL_INTERVAL,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/webconfig");
/// Passwords of the fixture users (bcrypt cost 4).
const ALICE: (&str, &str) = ("alice", "wonderland");
const BOB: (&str, &str) = ("bob", "builder");

// ---------------------------------------------------------------------------
// PKI

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn new_ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(p, key),
    }
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

fn new_leaf(ca: &Ca, cn: &str, sans: &[&str], serial: u64, client: bool) -> Leaf {
    let mut p =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.serial_number = Some(SerialNumber::from(serial));
    p.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
    }
}

fn server_leaf(ca: &Ca, cn: &str, serial: u64) -> Leaf {
    new_leaf(ca, cn, &["localhost", "127.0.0.1"], serial, false)
}

/// A temp dir with `ca.crt`, `server.crt`, `server.key` and `other.key`.
struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    server: Leaf,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca("redis-vitals test CA");
        let server = server_leaf(&ca, "server-a", 1001);
        std::fs::write(dir.path().join("ca.crt"), &ca.pem).unwrap();
        std::fs::write(dir.path().join("server.crt"), &server.cert_pem).unwrap();
        std::fs::write(dir.path().join("server.key"), &server.key_pem).unwrap();
        let other = KeyPair::generate().unwrap();
        std::fs::write(dir.path().join("other.key"), other.serialize_pem()).unwrap();
        Pki { dir, ca, server }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Copies fixture `rel` (e.g. `good/tls_only.yml`) into the dir.
    fn fixture(&self, rel: &str) -> PathBuf {
        let dest = self.path("web-config.yml");
        std::fs::copy(Path::new(FIXTURES).join(rel), &dest).unwrap();
        dest
    }

    fn config(&self, yaml: &str) -> PathBuf {
        let dest = self.path("web-config.yml");
        std::fs::write(&dest, yaml).unwrap();
        dest
    }

    fn load(&self, rel: &str) -> WebConfig {
        let path = self.fixture(rel);
        WebConfig::load(&path).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }
}

fn fixture_files(kind: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(Path::new(FIXTURES).join(kind))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yml"))
        .map(|n| format!("{kind}/{n}"))
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------
// Loading

#[test]
fn every_good_fixture_loads() {
    let pki = Pki::new();
    let good = fixture_files("good");
    assert!(good.len() >= 6, "{good:?}");
    for rel in &good {
        pki.load(rel);
    }
}

#[test]
fn good_fixtures_mean_what_they_say() {
    let pki = Pki::new();

    let empty = pki.load("good/empty.yml");
    assert!(empty.tls().is_none());
    assert!(!empty.basic_auth_enabled());
    assert!(empty.headers().is_empty());
    assert_eq!(empty.authorize(None), Ok(()));

    let tls = pki.load("good/tls_only.yml");
    assert!(tls.tls().is_some());
    assert!(!tls.basic_auth_enabled());
    // Relative paths resolve against the config file's directory.
    let mut watched = tls.watched_files().to_vec();
    watched.sort();
    assert_eq!(watched, [pki.path("server.crt"), pki.path("server.key")]);

    let ca = pki.load("good/tls_client_ca.yml");
    assert!(ca.tls().is_some());
    assert!(ca.watched_files().contains(&pki.path("ca.crt")));

    let auth = pki.load("good/basic_auth.yml");
    assert!(auth.tls().is_none());
    assert!(auth.basic_auth_enabled());

    let both = pki.load("good/tls_basic_auth.yml");
    assert!(both.tls().is_some() && both.basic_auth_enabled());

    let headers = pki.load("good/headers.yml");
    let names: Vec<&str> = headers.headers().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "content-security-policy",
            "x-frame-options",
            "x-content-type-options",
            "x-xss-protection",
            "strict-transport-security"
        ]
    );
    assert_eq!(headers.headers()[1].1, "deny");
    assert!(headers.warnings().is_empty(), "{:?}", headers.warnings());

    let sink = pki.load("good/kitchen_sink.yml");
    let w = sink.warnings().join("\n");
    assert!(w.contains("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"), "{w}");
    assert!(w.contains("CurveP521"), "{w}");
    let tls = sink.tls().unwrap();
    assert!(tls.ignore_client_order);
    let groups: Vec<_> = tls
        .crypto_provider()
        .kx_groups
        .iter()
        .map(|g| g.name())
        .collect();
    assert_eq!(
        groups,
        [rustls::NamedGroup::X25519, rustls::NamedGroup::secp256r1]
    );
    let tls12: Vec<_> = tls
        .crypto_provider()
        .cipher_suites
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS12)
        .map(|s| s.suite())
        .collect();
    assert_eq!(
        tls12,
        [
            rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        ]
    );
    // rate_limit: burst 10 at one per 100 ms.
    let allowed = (0..20).filter(|_| sink.allow_request()).count();
    assert!((10..=11).contains(&allowed), "{allowed}");
}

#[test]
fn every_bad_fixture_fails_naming_the_key() {
    let pki = Pki::new();
    let bad = fixture_files("bad");
    assert!(bad.len() >= 6, "{bad:?}");
    for rel in &bad {
        let text = std::fs::read_to_string(Path::new(FIXTURES).join(rel)).unwrap();
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{rel}: first line must be `# expect: KEY`"))
            .trim();
        let path = pki.fixture(rel);
        let err = match WebConfig::load(&path) {
            Ok(_) => panic!("{rel}: loaded, expected an error naming {expected}"),
            Err(e) => e,
        };
        let msg = err.to_string();
        println!("{rel}: {msg}");
        assert!(
            msg.starts_with(&format!("{expected}:")),
            "{rel}: {msg:?} does not start with {expected:?}"
        );
        assert_eq!(err.key(), Some(expected), "{rel}: {msg}");
        // Never a password, a hash or key material.
        for secret in ["$2y$04$ZyLWFQ", "ZyLWFQ", "builder", "PRIVATE KEY"] {
            assert!(!msg.contains(secret), "{rel}: {msg:?} leaks {secret:?}");
        }
    }
}

#[test]
fn yaml_errors_and_missing_file_are_reported() {
    let pki = Pki::new();
    let e = WebConfig::load(&pki.path("nope.yml")).unwrap_err();
    assert!(e.to_string().contains("nope.yml"), "{e}");
    let path = pki.config("tls_server_config:\n  cert_file: [unclosed\n");
    let e = WebConfig::load(&path).unwrap_err();
    assert!(e.to_string().starts_with("invalid YAML"), "{e}");
    let path = pki.config("basic_auth_users:\n  alice: x\n  alice: y\n");
    assert!(WebConfig::load(&path).is_err());
}

#[tokio::test]
async fn inline_pem_and_absolute_paths_work() {
    let pki = Pki::new();
    let indent = |s: &str| s.replace('\n', "\n    ");
    let path = pki.config(&format!(
        "tls_server_config:\n  cert: |\n    {}\n  key: |\n    {}\n  client_ca_file: {}\n  client_auth_type: VerifyClientCertIfGiven\n",
        indent(pki.server.cert_pem.trim_end()),
        indent(pki.server.key_pem.trim_end()),
        pki.path("ca.crt").display()
    ));
    let cfg = WebConfig::load(&path).unwrap();
    assert_eq!(cfg.watched_files(), [pki.path("ca.crt")]);
    // VerifyClientCertIfGiven: no certificate is fine, a foreign one is not.
    let mut server = start_server(fixed(cfg)).await;
    let r = https_get(server.addr, client_config(&pki.ca.pem, None, ALL), None)
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text);
    assert_eq!(r.server_cert.as_ref(), Some(&pki.server.der));
    let foreign = new_leaf(&new_ca("other"), "x", &["x.example"], 5, true);
    let r = https_get(
        server.addr,
        client_config(&pki.ca.pem, Some(&foreign), ALL),
        None,
    )
    .await;
    assert_refused(&mut server, r).await;
}

// ---------------------------------------------------------------------------
// Basic auth

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", b64(format!("{user}:{password}").as_bytes()))
}

fn b64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn authorize_accepts_only_the_right_password() {
    let pki = Pki::new();
    let cfg = pki.load("good/basic_auth.yml");
    assert_eq!(cfg.authorize(Some(&basic(ALICE.0, ALICE.1))), Ok(()));
    assert_eq!(cfg.authorize(Some(&basic(BOB.0, BOB.1))), Ok(()));
    // Cached now: still fine.
    assert_eq!(cfg.authorize(Some(&basic(ALICE.0, ALICE.1))), Ok(()));

    let denied = Err(AuthError::Denied);
    assert_eq!(cfg.authorize(Some(&basic(ALICE.0, "wonderlan"))), denied);
    assert_eq!(cfg.authorize(Some(&basic(ALICE.0, BOB.1))), denied);
    assert_eq!(cfg.authorize(Some(&basic(ALICE.0, ""))), denied);
    assert_eq!(cfg.authorize(Some(&basic("carol", ALICE.1))), denied);
    assert_eq!(cfg.authorize(Some(&basic("", ""))), denied);
    assert_eq!(cfg.authorize(Some(&basic("Alice", ALICE.1))), denied);
    let long = "x".repeat(100);
    assert_eq!(cfg.authorize(Some(&basic(ALICE.0, &long))), denied);

    assert_eq!(cfg.authorize(None), Err(AuthError::Missing));
    for malformed in [
        "Bearer abc".to_owned(),
        format!("Digest {}", b64(b"alice:wonderland")),
        "Basic".to_owned(),
        "Basic not*base64".to_owned(),
        "Basic YWxpY2U6d29uZGVybGFuZA".to_owned(), // missing padding
        format!("Basic {}", b64(b"alicewonderland")), // no colon
        String::new(),
    ] {
        assert!(
            matches!(
                cfg.authorize(Some(&malformed)),
                Err(AuthError::Malformed(_))
            ),
            "{malformed:?}"
        );
    }
    // The scheme is case-insensitive, as in Go.
    let lower = basic(ALICE.0, ALICE.1).replacen("Basic", "basic", 1);
    assert_eq!(cfg.authorize(Some(&lower)), Ok(()));
}

#[test]
fn no_users_means_no_auth() {
    let pki = Pki::new();
    let cfg = pki.load("good/tls_only.yml");
    assert_eq!(cfg.authorize(None), Ok(()));
    assert_eq!(cfg.authorize(Some("garbage")), Ok(()));
}

fn min_time(n: usize, mut f: impl FnMut()) -> Duration {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

#[test]
fn unknown_user_costs_a_bcrypt_and_success_is_cached() {
    // A cost-8 hash: slow enough to measure, fast enough for a debug build.
    let pki = Pki::new();
    let hash = bcrypt::hash("s3cret", 8).unwrap();
    let path = pki.config(&format!("basic_auth_users:\n  carol: '{hash}'\n"));
    let cfg = WebConfig::load(&path).unwrap();

    let wrong = min_time(3, || {
        assert!(cfg.authorize(Some(&basic("carol", "nope"))).is_err());
    });
    let unknown = min_time(3, || {
        assert!(cfg.authorize(Some(&basic("mallory", "nope"))).is_err());
    });
    // Failures are not cached: every one pays bcrypt, known user or not.
    assert!(
        unknown * 3 >= wrong && wrong * 3 >= unknown,
        "wrong password {wrong:?} vs unknown user {unknown:?}"
    );

    let first = min_time(1, || {
        assert_eq!(cfg.authorize(Some(&basic("carol", "s3cret"))), Ok(()))
    });
    let cached = min_time(3, || {
        assert_eq!(cfg.authorize(Some(&basic("carol", "s3cret"))), Ok(()))
    });
    assert!(
        cached * 10 < first,
        "cached {cached:?} should be far below bcrypt {first:?}"
    );
}

#[tokio::test]
async fn authorize_async_matches_authorize() {
    let pki = Pki::new();
    let cfg = Arc::new(pki.load("good/basic_auth.yml"));
    assert_eq!(
        cfg.clone().authorize_async(Some(basic(BOB.0, BOB.1))).await,
        Ok(())
    );
    assert_eq!(
        cfg.clone().authorize_async(Some(basic(BOB.0, "x"))).await,
        Err(AuthError::Denied)
    );
    assert_eq!(
        cfg.clone().authorize_async(None).await,
        Err(AuthError::Missing)
    );
}

/// A request whose connection closes while its password check waits or
/// runs is cancelled; the queue of checks must not keep counting it, or
/// after a few every check answers Busy (429), a legitimate one included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_password_checks_do_not_fill_the_queue() {
    let pki = Pki::new();
    let cfg = Arc::new(pki.load("good/basic_auth.yml"));
    let limit =
        redis_vitals::web::config::BCRYPT_CONCURRENCY + redis_vitals::web::config::BCRYPT_QUEUE;
    for i in 0..3 * limit {
        let check = cfg
            .clone()
            .authorize_async(Some(basic(BOB.0, &format!("guess-{i}"))));
        // Cancelled while it waits for, or runs, bcrypt.
        let _ = tokio::time::timeout(Duration::from_micros(50), check).await;
    }
    assert_eq!(
        cfg.clone().authorize_async(Some(basic(BOB.0, BOB.1))).await,
        Ok(()),
        "the queue still counts cancelled checks"
    );
}

#[test]
fn unauthorized_headers_name_the_realm() {
    let [(name, value)] = unauthorized_response_headers();
    assert_eq!(name, hyper::header::WWW_AUTHENTICATE);
    assert_eq!(value, "Basic realm=\"redis-vitals\"");
}

// ---------------------------------------------------------------------------
// Serving over real sockets

type ConfigSource = Arc<dyn Fn() -> Arc<WebConfig> + Send + Sync>;

struct TestServer {
    addr: SocketAddr,
    /// Errors from `accept` (failed handshakes).
    accept_errors: mpsc::UnboundedReceiver<std::io::Error>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A minimal server wired the way http.rs is (per connection the current
/// config and `accept`; per request authorize and headers), on hyper's
/// http1 rather than http.rs, so these tests check the web config alone.
async fn start_server(source: ConfigSource) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, accept_errors) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let web = source();
            let tx = tx.clone();
            tokio::spawn(async move {
                let stream = match accept(&web, tcp).await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(e);
                        return;
                    }
                };
                let service = service_fn(move |req: Request<Incoming>| {
                    let web = web.clone();
                    async move {
                        let header = req
                            .headers()
                            .get(AUTHORIZATION)
                            .map(|v| v.to_str().unwrap_or("").to_owned());
                        let mut resp = match web.clone().authorize_async(header).await {
                            Ok(()) => Response::new(Full::new(Bytes::from_static(b"hello\n"))),
                            Err(_) => {
                                let mut r =
                                    Response::new(Full::new(Bytes::from_static(b"unauthorized\n")));
                                *r.status_mut() = StatusCode::UNAUTHORIZED;
                                for (k, v) in unauthorized_response_headers() {
                                    r.headers_mut().insert(k, v);
                                }
                                r
                            }
                        };
                        for (k, v) in web.headers() {
                            resp.headers_mut().insert(k.clone(), v.clone());
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    TestServer {
        addr,
        accept_errors,
        task,
    }
}

fn fixed(cfg: WebConfig) -> ConfigSource {
    let cfg = Arc::new(cfg);
    Arc::new(move || cfg.clone())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(
    ca_pem: &str,
    client: Option<&Leaf>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match client {
        None => b.with_no_client_auth(),
        Some(leaf) => b
            .with_client_auth_cert(
                vec![leaf.der.clone()],
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    })
}

const ALL: &[&rustls::SupportedProtocolVersion] = rustls::ALL_VERSIONS;

struct Reply {
    text: String,
    server_cert: Option<CertificateDer<'static>>,
}

impl Reply {
    fn status(&self) -> u16 {
        self.text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

// tokio's io-util feature is not enabled: minimal read/write helpers.
async fn write_all<S: AsyncWrite + Unpin>(s: &mut S, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut *s).poll_write(cx, buf)).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    poll_fn(|cx| Pin::new(&mut *s).poll_flush(cx)).await
}

async fn read_reply<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<String> {
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let mut rb = ReadBuf::new(&mut chunk);
        match poll_fn(|cx| Pin::new(&mut *s).poll_read(cx, &mut rb)).await {
            Ok(()) if rb.filled().is_empty() => break,
            Ok(()) => buf.extend_from_slice(rb.filled()),
            // Some peers close without close_notify after a complete response.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn request(auth: Option<&str>) -> String {
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    format!("GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}\r\n")
}

async fn https_get(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    auth: Option<&str>,
) -> std::io::Result<Reply> {
    let fut = async {
        let tcp = TcpStream::connect(addr).await?;
        let connector = tokio_rustls::TlsConnector::from(cfg);
        let mut tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?;
        let server_cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first().cloned());
        write_all(&mut tls, request(auth).as_bytes()).await?;
        let text = read_reply(&mut tls).await?;
        Ok(Reply { text, server_cert })
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("client timed out")))
}

async fn http_get(addr: SocketAddr) -> std::io::Result<Reply> {
    let mut tcp = TcpStream::connect(addr).await?;
    write_all(&mut tcp, request(None).as_bytes()).await?;
    let text = read_reply(&mut tcp).await?;
    Ok(Reply {
        text,
        server_cert: None,
    })
}

/// A refused handshake: the client fails (at connect or, in TLS 1.3 where
/// the client finishes first, at the first read) and the server's `accept`
/// reports an error.
async fn assert_refused(server: &mut TestServer, result: std::io::Result<Reply>) {
    match result {
        Err(_) => {}
        Ok(r) => assert!(r.text.is_empty(), "expected refusal, got {:?}", r.text),
    }
    let err = tokio::time::timeout(Duration::from_secs(5), server.accept_errors.recv())
        .await
        .expect("server accept error")
        .unwrap();
    assert!(
        err.to_string().to_lowercase().contains("cert"),
        "unexpected handshake error: {err}"
    );
}

#[tokio::test]
async fn https_round_trip_with_headers() {
    let pki = Pki::new();
    let path = pki.config(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
         http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
    );
    let server = start_server(fixed(WebConfig::load(&path).unwrap())).await;
    for versions in [ALL, &[&rustls::version::TLS12], &[&rustls::version::TLS13]] {
        let r = https_get(
            server.addr,
            client_config(&pki.ca.pem, None, versions),
            None,
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text);
        assert!(r.text.ends_with("hello\n"), "{}", r.text);
        assert_eq!(r.header("x-frame-options"), Some("deny"));
        assert_eq!(r.server_cert.as_ref(), Some(&pki.server.der));
    }
    // A client that does not trust the CA fails.
    let stranger = new_ca("stranger");
    assert!(
        https_get(server.addr, client_config(&stranger.pem, None, ALL), None)
            .await
            .is_err()
    );
    // Plain HTTP on the TLS port gets nothing useful.
    let plain = http_get(server.addr).await;
    assert!(plain.map_or(true, |r| r.status() != 200));
}

#[tokio::test]
async fn plain_http_when_tls_is_not_configured() {
    let pki = Pki::new();
    let server = start_server(fixed(pki.load("good/headers.yml"))).await;
    let r = http_get(server.addr).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text);
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
}

#[tokio::test]
async fn basic_auth_over_https() {
    let pki = Pki::new();
    let server = start_server(fixed(pki.load("good/tls_basic_auth.yml"))).await;
    let client = client_config(&pki.ca.pem, None, ALL);
    let r = https_get(server.addr, client.clone(), None).await.unwrap();
    assert_eq!(r.status(), 401, "{}", r.text);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"redis-vitals\"")
    );
    let wrong = basic(ALICE.0, "nope");
    let r = https_get(server.addr, client.clone(), Some(&wrong))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let right = basic(ALICE.0, ALICE.1);
    let r = https_get(server.addr, client, Some(&right)).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text);
}

#[tokio::test]
async fn require_and_verify_client_cert() {
    let pki = Pki::new();
    let mut server = start_server(fixed(pki.load("good/tls_client_ca.yml"))).await;
    let good = new_leaf(&pki.ca, "prometheus", &["prometheus.example"], 7, true);
    let other_ca = new_ca("other CA");
    let foreign = new_leaf(&other_ca, "intruder", &["prometheus.example"], 8, true);

    for versions in [
        &[&rustls::version::TLS12][..],
        &[&rustls::version::TLS13][..],
    ] {
        // Without a certificate: refused.
        let r = https_get(
            server.addr,
            client_config(&pki.ca.pem, None, versions),
            None,
        )
        .await;
        assert_refused(&mut server, r).await;

        // With a certificate from the configured CA: served.
        let r = https_get(
            server.addr,
            client_config(&pki.ca.pem, Some(&good), versions),
            None,
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text);

        // With a certificate from another CA: refused.
        let r = https_get(
            server.addr,
            client_config(&pki.ca.pem, Some(&foreign), versions),
            None,
        )
        .await;
        assert_refused(&mut server, r).await;
    }
}

#[tokio::test]
async fn require_any_client_cert_wants_one_but_not_its_chain() {
    let pki = Pki::new();
    let path = pki.config(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: RequireAnyClientCert\n",
    );
    let mut server = start_server(fixed(WebConfig::load(&path).unwrap())).await;
    let other_ca = new_ca("other CA");
    let any = new_leaf(&other_ca, "anyone", &["anyone.example"], 9, true);
    for versions in [
        &[&rustls::version::TLS12][..],
        &[&rustls::version::TLS13][..],
    ] {
        let r = https_get(
            server.addr,
            client_config(&pki.ca.pem, None, versions),
            None,
        )
        .await;
        assert_refused(&mut server, r).await;
        let r = https_get(
            server.addr,
            client_config(&pki.ca.pem, Some(&any), versions),
            None,
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text);
    }
}

#[tokio::test]
async fn client_allowed_sans_are_enforced() {
    let pki = Pki::new();
    let mut server = start_server(fixed(pki.load("good/kitchen_sink.yml"))).await;
    let allowed = new_leaf(&pki.ca, "prom", &["prometheus.example"], 11, true);
    let allowed_ip = new_leaf(&pki.ca, "prom-ip", &["127.0.0.1"], 12, true);
    let other = new_leaf(&pki.ca, "grafana", &["grafana.example"], 13, true);
    let auth = basic(ALICE.0, ALICE.1);
    for leaf in [&allowed, &allowed_ip] {
        let r = https_get(
            server.addr,
            client_config(&pki.ca.pem, Some(leaf), ALL),
            Some(&auth),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text);
        assert_eq!(r.header("x-frame-options"), Some("sameorigin"));
    }
    let r = https_get(
        server.addr,
        client_config(&pki.ca.pem, Some(&other), ALL),
        Some(&auth),
    )
    .await;
    assert_refused(&mut server, r).await;
}

#[tokio::test]
async fn min_version_tls13_refuses_tls12_clients() {
    let pki = Pki::new();
    let path = pki.config(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         min_version: TLS13\n",
    );
    let server = start_server(fixed(WebConfig::load(&path).unwrap())).await;
    let tls12 = client_config(&pki.ca.pem, None, &[&rustls::version::TLS12]);
    assert!(https_get(server.addr, tls12, None).await.is_err());
    let tls13 = client_config(&pki.ca.pem, None, &[&rustls::version::TLS13]);
    assert_eq!(
        https_get(server.addr, tls13, None).await.unwrap().status(),
        200
    );
}

// ---------------------------------------------------------------------------
// Reloading

fn rotate(pki: &Pki, leaf: &Leaf) {
    std::fs::write(pki.path("server.key"), &leaf.key_pem).unwrap();
    std::fs::write(pki.path("server.crt"), &leaf.cert_pem).unwrap();
}

async fn presented_cert(pki: &Pki, addr: SocketAddr) -> Option<CertificateDer<'static>> {
    https_get(addr, client_config(&pki.ca.pem, None, ALL), None)
        .await
        .ok()
        .and_then(|r| r.server_cert)
}

async fn wait_for_cert(pki: &Pki, addr: SocketAddr, want: &CertificateDer<'_>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if presented_cert(pki, addr).await.as_ref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn watcher_picks_up_rotated_certificates_and_keeps_the_last_good_config() {
    let pki = Pki::new();
    let path = pki.fixture("good/tls_only.yml");
    let watcher = Arc::new(WebConfigWatcher::new(
        path.clone(),
        WebConfig::load(&path).unwrap(),
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(watcher.clone().run(stop_rx));
    let w = watcher.clone();
    let server = start_server(Arc::new(move || w.current())).await;
    assert_eq!(
        presented_cert(&pki, server.addr).await.as_ref(),
        Some(&pki.server.der)
    );

    // Rotation: a new certificate (new serial and subject) and key.
    let rotated = server_leaf(&pki.ca, "server-b", 2002);
    rotate(&pki, &rotated);
    wait_for_cert(&pki, server.addr, &rotated.der, POLL_INTERVAL * 3).await;

    // A broken certificate file: the watcher tries, fails, keeps serving B.
    let generation = watcher.generation();
    std::fs::write(pki.path("server.crt"), "not a certificate\n").unwrap();
    tokio::time::sleep(POLL_INTERVAL * 2 + Duration::from_millis(500)).await;
    assert_eq!(watcher.generation(), generation);
    assert_eq!(
        presented_cert(&pki, server.addr).await.as_ref(),
        Some(&rotated.der)
    );
    let err = watcher.reload().unwrap_err();
    assert_eq!(err.key(), Some("tls_server_config.cert_file"), "{err}");

    // Fixed again: picked up.
    let third = server_leaf(&pki.ca, "server-c", 3003);
    rotate(&pki, &third);
    wait_for_cert(&pki, server.addr, &third.der, POLL_INTERVAL * 3).await;

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("watcher stops")
        .unwrap();
}

#[tokio::test]
async fn watcher_reloads_on_config_changes_too() {
    let pki = Pki::new();
    let path = pki.fixture("good/basic_auth.yml");
    let watcher = Arc::new(WebConfigWatcher::with_poll_interval(
        path.clone(),
        WebConfig::load(&path).unwrap(),
        Duration::from_millis(100),
    ));
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(watcher.clone().run(stop_rx));
    assert!(watcher.current().basic_auth_enabled());
    // Adding TLS to basic auth is picked up.
    pki.fixture("good/tls_basic_auth.yml");
    let deadline = Instant::now() + Duration::from_secs(5);
    while watcher.current().tls().is_none() {
        assert!(Instant::now() < deadline, "config change not picked up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(watcher.current().basic_auth_enabled());
    assert!(watcher.reload_status().0);
    // An invalid edit keeps the previous config.
    pki.fixture("bad/unknown_key.yml");
    wait_for_reload_failure(&watcher).await;
    assert!(watcher.current().tls().is_some());
    // So does a valid one that drops every user (fail closed)...
    pki.fixture("good/tls_only.yml");
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_for_reload_failure(&watcher).await;
    assert!(
        watcher.current().basic_auth_enabled(),
        "users dropped by a reload"
    );
    // ...or TLS, or is empty.
    for (rel, what) in [
        ("good/basic_auth.yml", "TLS"),
        ("good/empty.yml", "everything"),
    ] {
        pki.fixture("good/tls_basic_auth.yml");
        watcher.reload().unwrap();
        pki.fixture(rel);
        let err = watcher.reload().unwrap_err();
        assert!(err.to_string().contains("only a restart"), "{what}: {err}");
        assert!(watcher.current().tls().is_some() && watcher.current().basic_auth_enabled());
        assert!(!watcher.reload_status().0, "{what}");
    }
}

/// Waits until the watcher reports its last reload as refused.
async fn wait_for_reload_failure(watcher: &WebConfigWatcher) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while watcher.reload_status().0 {
        assert!(Instant::now() < deadline, "the reload was not refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sighup_forces_a_reload() {
    use tokio::signal::unix::{signal, SignalKind};
    // Our own listener first, so SIGHUP can never terminate the test process.
    let _guard = signal(SignalKind::hangup()).unwrap();
    let pki = Pki::new();
    let path = pki.fixture("good/tls_only.yml");
    // Polling effectively off: only SIGHUP can trigger the reload.
    let watcher = Arc::new(WebConfigWatcher::with_poll_interval(
        path.clone(),
        WebConfig::load(&path).unwrap(),
        Duration::from_secs(3600),
    ));
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(watcher.clone().run(stop_rx));
    let w = watcher.clone();
    let server = start_server(Arc::new(move || w.current())).await;

    let rotated = server_leaf(&pki.ca, "server-hup", 4004);
    rotate(&pki, &rotated);
    let deadline = Instant::now() + Duration::from_secs(10);
    while watcher.generation() == 0 {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        let status = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        presented_cert(&pki, server.addr).await.as_ref(),
        Some(&rotated.der)
    );
}

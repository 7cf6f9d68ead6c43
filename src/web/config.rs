//! `--web.config.file`: TLS, client certificates, basic auth and extra
//! response headers, read from a file in the Prometheus exporter-toolkit
//! format (`docs/web-configuration.md` of prometheus/exporter-toolkit), so
//! operators can reuse the file they already give node_exporter & co.
//!
//! Used by `src/web/mod.rs`: [`accept`] per connection (TLS with the
//! config current at accept), then per request the config current *then*
//! ([`WebConfigWatcher::current`]): a reload, a removed user or a changed
//! password applies to open connections at their next request.
//! [`WebConfigWatcher`] refuses a reload that would lower the protection
//! (see its note).
//!
//! # Format decisions
//!
//! Every key of exporter-toolkit's `Config` is accepted; any other key is an
//! error naming it (`tls_server_config.bogus: unknown key ...`), like Go's
//! `yaml.UnmarshalStrict`. Relative paths are resolved against the config
//! file's directory. Empty strings mean "unset", as in Go.
//!
//! - `cert`/`key`/`client_ca` (inline PEM) are supported; when both the inline
//!   and the `_file` form are set, the file wins (as in Go) with a warning.
//! - `client_auth_type`: all five Go values plus the legacy alias
//!   `RequireClientCert`. `RequestClientCert`/`RequireAnyClientCert` request a
//!   certificate without checking its chain (Go semantics; proof of key
//!   possession is still checked). `VerifyClientCertIfGiven` and
//!   `RequireAndVerifyClientCert` need `client_ca_file`/`client_ca` here (Go
//!   would silently fall back to the system roots, which is never what an
//!   exporter wants). A client CA with `NoClientCert` is an error (as in Go).
//! - `client_allowed_sans`: enforced (DNS, IP, e-mail and URI SANs of the
//!   client certificate, exact match); requires `RequireAnyClientCert` or
//!   `RequireAndVerifyClientCert` (as in Go).
//! - `min_version`/`max_version`: TLS10..TLS13 parse; rustls implements only
//!   TLS 1.2 and 1.3, so a minimum of TLS10/TLS11 warns and means TLS12, and a
//!   maximum below TLS12 is an error.
//! - `cipher_suites`: Go's names. TLS 1.2 suites that rustls/ring implements
//!   are restricted to the listed ones, in the listed order; listed suites it
//!   lacks (CBC, RSA key exchange) are skipped with a warning; TLS 1.3 suites
//!   are not configurable (as in Go). Names Go does not know are errors.
//! - `curve_preferences`: X25519, CurveP256, CurveP384 restrict and order the
//!   key-exchange groups; CurveP521 (not in ring) is skipped with a warning;
//!   a list with no usable curve is an error.
//! - `prefer_server_cipher_suites` (default true) maps to rustls'
//!   `ignore_client_order`.
//! - `http_server_config.http2` is accepted and ignored: the exporter serves
//!   HTTP/1.1 only (ALPN offers `http/1.1`).
//! - `http_server_config.headers`: only the five headers exporter-toolkit
//!   allows (names matched case-insensitively), with its value checks for
//!   `X-Frame-Options` and `X-Content-Type-Options`; blank values are unset.
//! - `rate_limit` (`interval` as a Go duration, `burst`): a token bucket
//!   checked by [`WebConfig::allow_request`], as in exporter-toolkit.
//! - `basic_auth_users`: bcrypt hashes (`$2a$`, `$2b$`, `$2x$`, `$2y$`),
//!   format and cost checked at load.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash as _, Hasher as _};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, UNIX_EPOCH};

use http::header::{HeaderName, HeaderValue};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, NamedGroup, RootCertStore,
    ServerConfig, SignatureScheme, SupportedCipherSuite, SupportedProtocolVersion,
};
use rustls_pki_types::pem::PemObject;
use serde_yaml_ng::{Mapping, Value};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;

use crate::web::guard::TokenBucket;

/// How often the watcher re-checks the config file and the files it
/// references. Certificate rotation tools (cert-manager, certbot hooks)
/// replace files without signalling the exporter; 2 s applies a rotation
/// well before the next scrape (typically 15 s), and a stat plus a hash of a
/// few kilobytes every 2 s costs nothing measurable.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Longest a client may take to complete the TLS handshake; stops clients
/// that connect and stay silent from holding connection slots.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a successful basic-auth verification is remembered. bcrypt costs
/// 50-250 ms per check; five minutes covers several scrapes even at
/// Prometheus' default 1 m interval, so a steady scraper pays bcrypt at most
/// once per five minutes, while a leaked cache entry is short-lived. Every
/// reload starts with an empty cache.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(300);
/// Most cached verifications; one per (user, password) pair in use, so a
/// handful of Prometheus servers need a few. Bounded so a flood of distinct
/// valid credentials cannot grow memory.
pub const AUTH_CACHE_CAPACITY: usize = 128;
/// bcrypt only reads the first 72 bytes of a password: longer ones are
/// refused rather than silently truncated.
const MAX_PASSWORD_LEN: usize = 72;
/// bcrypt checks run at once, on the blocking pool: one, as in
/// exporter-toolkit, so a flood of bad passwords burns one core at most and
/// leaves the other to the pollers.
pub const BCRYPT_CONCURRENCY: usize = 1;
/// Password checks that may wait for that slot; more are answered 429 at
/// once instead of queueing without bound (a legitimate scraper's check is
/// remembered after its first success and never queues again).
pub const BCRYPT_QUEUE: usize = 8;
/// The `WWW-Authenticate` realm of 401 responses.
pub const REALM: &str = "redis-vitals";

// ---------------------------------------------------------------------------
// Errors

/// Why a web config could not be loaded. Each message starts with the key
/// (`tls_server_config.cert_file: ...`) and never includes a password, a
/// password hash or private key material.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The config file itself cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file is not valid YAML.
    #[error("invalid YAML: {0}")]
    Yaml(String),
    /// A file named by a key cannot be read.
    #[error("{key}: cannot read {path}: {source}")]
    File {
        key: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A key has a wrong, unknown or inconsistent value.
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

impl WebConfigError {
    fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        WebConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The key the error is about (`tls_server_config.cert_file`), if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            WebConfigError::File { key, .. } | WebConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// Why a request was refused by basic auth. Every variant means "answer
/// 401"; the distinction is for logs and tests, never for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no Authorization header")]
    Missing,
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    #[error("invalid user name or password")]
    Denied,
    /// Too many password checks are queued: answer 429, try later.
    #[error("too many password checks in progress")]
    Busy,
}

/// Headers for a 401 answer: `WWW-Authenticate: Basic realm="redis-vitals"`.
pub fn unauthorized_response_headers() -> [(HeaderName, HeaderValue); 1] {
    [(
        http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"redis-vitals\""),
    )]
}

// ---------------------------------------------------------------------------
// Parsed file (before files are read)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

const CLIENT_AUTH_TYPES: &str = "NoClientCert, RequestClientCert, RequireAnyClientCert, \
                                 VerifyClientCertIfGiven, RequireAndVerifyClientCert";

impl ClientAuth {
    fn parse(s: &str) -> Option<ClientAuth> {
        Some(match s {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            // "RequireClientCert": exporter-toolkit keeps it for compatibility.
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            ClientAuth::NoClientCert => "NoClientCert",
            ClientAuth::RequestClientCert => "RequestClientCert",
            ClientAuth::RequireAnyClientCert => "RequireAnyClientCert",
            ClientAuth::VerifyClientCertIfGiven => "VerifyClientCertIfGiven",
            ClientAuth::RequireAndVerifyClientCert => "RequireAndVerifyClientCert",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TlsVersion {
    V10,
    V11,
    V12,
    V13,
}

impl TlsVersion {
    fn parse(s: &str) -> Option<TlsVersion> {
        Some(match s {
            "TLS10" => TlsVersion::V10,
            "TLS11" => TlsVersion::V11,
            "TLS12" => TlsVersion::V12,
            "TLS13" => TlsVersion::V13,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            TlsVersion::V10 => "TLS10",
            TlsVersion::V11 => "TLS11",
            TlsVersion::V12 => "TLS12",
            TlsVersion::V13 => "TLS13",
        }
    }
}

/// Go's `tls.CipherSuites()` names (the ones exporter-toolkit accepts) with
/// their IANA code points.
const GO_CIPHER_SUITES: &[(&str, u16)] = &[
    ("TLS_AES_128_GCM_SHA256", 0x1301),
    ("TLS_AES_256_GCM_SHA384", 0x1302),
    ("TLS_CHACHA20_POLY1305_SHA256", 0x1303),
    ("TLS_RSA_WITH_AES_128_CBC_SHA", 0x002f),
    ("TLS_RSA_WITH_AES_256_CBC_SHA", 0x0035),
    ("TLS_RSA_WITH_AES_128_GCM_SHA256", 0x009c),
    ("TLS_RSA_WITH_AES_256_GCM_SHA384", 0x009d),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", 0xc009),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", 0xc00a),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", 0xc013),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", 0xc014),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", 0xc02b),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", 0xc02c),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 0xc02f),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", 0xc030),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", 0xcca8),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", 0xcca9),
];

/// Go's curve names (exporter-toolkit's `curves` map); `None`: not in ring.
const GO_CURVES: &[(&str, Option<NamedGroup>)] = &[
    ("CurveP256", Some(NamedGroup::secp256r1)),
    ("CurveP384", Some(NamedGroup::secp384r1)),
    ("CurveP521", None),
    ("X25519", Some(NamedGroup::X25519)),
];

/// The headers exporter-toolkit lets a config set, with the values allowed
/// (empty: any value).
const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

#[derive(Default)]
struct RawTls {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<ClientAuth>,
    client_ca_file: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<TlsVersion>,
    max_version: Option<TlsVersion>,
    /// (name, IANA id)
    cipher_suites: Vec<(String, u16)>,
    prefer_server_cipher_suites: Option<bool>,
    /// (name, group if ring has it)
    curve_preferences: Vec<(String, Option<NamedGroup>)>,
}

impl RawTls {
    /// exporter-toolkit's `TLSConfig.IsEnabled`.
    fn enabled(&self) -> bool {
        self.cert.is_some()
            || self.key.is_some()
            || self.client_ca.is_some()
            || self.cert_file.is_some()
            || self.key_file.is_some()
            || self.client_ca_file.is_some()
            || self.client_auth_type.is_some()
    }
}

#[derive(Default)]
struct RawFile {
    tls: RawTls,
    headers: Vec<(HeaderName, HeaderValue)>,
    rate_limit: Option<(Duration, u32)>,
    users: Vec<(String, String)>,
}

// -- YAML helpers ------------------------------------------------------------

fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// A mapping key or scalar as text, as Go's yaml decodes scalars into
/// strings.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Iterates a mapping's entries as (text key, full key path, value).
fn entries<'a>(
    map: &'a Mapping,
    parent: &str,
) -> Result<Vec<(String, String, &'a Value)>, WebConfigError> {
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        let Some(name) = scalar_text(k) else {
            return Err(WebConfigError::invalid(
                if parent.is_empty() {
                    "(top level)"
                } else {
                    parent
                },
                format!("keys must be strings, found {}", kind_of(k)),
            ));
        };
        let full = join_key(parent, &name);
        out.push((name, full, v));
    }
    Ok(out)
}

fn section<'a>(v: &'a Value, key: &str) -> Result<Option<&'a Mapping>, WebConfigError> {
    match v {
        Value::Null => Ok(None),
        Value::Mapping(m) => Ok(Some(m)),
        other => Err(WebConfigError::invalid(
            key,
            format!("expected a mapping, found {}", kind_of(other)),
        )),
    }
}

/// A string value; empty and null mean unset (Go's zero value). The value
/// never appears in the error message.
fn string_value(v: &Value, key: &str) -> Result<Option<String>, WebConfigError> {
    match v {
        Value::Null => Ok(None),
        Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => Err(WebConfigError::invalid(
            key,
            format!("expected a string, found {}", kind_of(v)),
        )),
        _ => Ok(scalar_text(v).filter(|s| !s.is_empty())),
    }
}

fn bool_value(v: &Value, key: &str) -> Result<Option<bool>, WebConfigError> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        // YAML 1.1 booleans, which Go's yaml.v2 also accepts.
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "y" => Ok(Some(true)),
            "false" | "no" | "off" | "n" => Ok(Some(false)),
            _ => Err(WebConfigError::invalid(
                key,
                format!("expected true or false, found {s:?}"),
            )),
        },
        other => Err(WebConfigError::invalid(
            key,
            format!("expected true or false, found {}", kind_of(other)),
        )),
    }
}

fn string_list(v: &Value, key: &str) -> Result<Option<Vec<String>>, WebConfigError> {
    match v {
        Value::Null => Ok(None),
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                scalar_text(item).ok_or_else(|| {
                    WebConfigError::invalid(
                        format!("{key}[{i}]"),
                        format!("expected a string, found {}", kind_of(item)),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        other => Err(WebConfigError::invalid(
            key,
            format!("expected a list of strings, found {}", kind_of(other)),
        )),
    }
}

fn unknown_key(key: &str, expected: &str) -> WebConfigError {
    WebConfigError::invalid(key, format!("unknown key (expected one of {expected})"))
}

// -- The parser ----------------------------------------------------------------

fn parse_file(text: &str) -> Result<RawFile, WebConfigError> {
    let doc: Value =
        serde_yaml_ng::from_str(text).map_err(|e| WebConfigError::Yaml(e.to_string()))?;
    let mut raw = RawFile::default();
    let Some(top) = section(&doc, "(top level)")? else {
        // An empty file: plain HTTP, no auth, as in exporter-toolkit.
        return Ok(raw);
    };
    for (name, full, v) in entries(top, "")? {
        match name.as_str() {
            "tls_server_config" => {
                if let Some(m) = section(v, &full)? {
                    raw.tls = parse_tls(m, &full)?;
                }
            }
            "http_server_config" => {
                if let Some(m) = section(v, &full)? {
                    raw.headers = parse_http(m, &full)?;
                }
            }
            "rate_limit" => {
                if let Some(m) = section(v, &full)? {
                    raw.rate_limit = parse_rate_limit(m, &full)?;
                }
            }
            "basic_auth_users" => {
                if let Some(m) = section(v, &full)? {
                    raw.users = parse_users(m, &full)?;
                }
            }
            _ => {
                return Err(unknown_key(
                    &full,
                    "tls_server_config, http_server_config, basic_auth_users, rate_limit",
                ))
            }
        }
    }
    Ok(raw)
}

fn parse_tls(m: &Mapping, parent: &str) -> Result<RawTls, WebConfigError> {
    const KEYS: &str = "cert, key, client_ca, cert_file, key_file, client_auth_type, \
                        client_ca_file, client_allowed_sans, min_version, max_version, \
                        cipher_suites, prefer_server_cipher_suites, curve_preferences";
    let mut t = RawTls::default();
    for (name, key, v) in entries(m, parent)? {
        match name.as_str() {
            "cert" => t.cert = string_value(v, &key)?,
            // Never echo a private key: only its type is reported.
            "key" => t.key = string_value(v, &key)?,
            "client_ca" => t.client_ca = string_value(v, &key)?,
            "cert_file" => t.cert_file = string_value(v, &key)?,
            "key_file" => t.key_file = string_value(v, &key)?,
            "client_ca_file" => t.client_ca_file = string_value(v, &key)?,
            "client_auth_type" => {
                t.client_auth_type = match string_value(v, &key)? {
                    None => None,
                    Some(s) => Some(ClientAuth::parse(&s).ok_or_else(|| {
                        WebConfigError::invalid(
                            &key,
                            format!("invalid value {s:?} (expected one of {CLIENT_AUTH_TYPES})"),
                        )
                    })?),
                }
            }
            "client_allowed_sans" => t.client_allowed_sans = string_list(v, &key)?,
            "min_version" | "max_version" => {
                let parsed = match string_value(v, &key)? {
                    None => None,
                    Some(s) => Some(TlsVersion::parse(&s).ok_or_else(|| {
                        WebConfigError::invalid(
                            &key,
                            format!(
                                "unknown TLS version {s:?} (expected TLS10, TLS11, TLS12 or TLS13)"
                            ),
                        )
                    })?),
                };
                if name == "min_version" {
                    t.min_version = parsed;
                } else {
                    t.max_version = parsed;
                }
            }
            "cipher_suites" => {
                for (i, s) in string_list(v, &key)?
                    .unwrap_or_default()
                    .into_iter()
                    .enumerate()
                {
                    let Some(&(_, id)) = GO_CIPHER_SUITES.iter().find(|(n, _)| *n == s) else {
                        return Err(WebConfigError::invalid(
                            format!("{key}[{i}]"),
                            format!("unknown cipher suite {s:?}"),
                        ));
                    };
                    t.cipher_suites.push((s, id));
                }
            }
            "prefer_server_cipher_suites" => t.prefer_server_cipher_suites = bool_value(v, &key)?,
            "curve_preferences" => {
                for (i, s) in string_list(v, &key)?
                    .unwrap_or_default()
                    .into_iter()
                    .enumerate()
                {
                    let Some(&(_, group)) = GO_CURVES.iter().find(|(n, _)| *n == s) else {
                        return Err(WebConfigError::invalid(
                            format!("{key}[{i}]"),
                            format!(
                                "unknown curve {s:?} (expected CurveP256, CurveP384, CurveP521 or X25519)"
                            ),
                        ));
                    };
                    t.curve_preferences.push((s, group));
                }
            }
            _ => return Err(unknown_key(&key, KEYS)),
        }
    }
    Ok(t)
}

fn parse_http(m: &Mapping, parent: &str) -> Result<Vec<(HeaderName, HeaderValue)>, WebConfigError> {
    let mut headers = Vec::new();
    for (name, key, v) in entries(m, parent)? {
        match name.as_str() {
            // HTTP/2 is not served; accepted so shared files load.
            "http2" => {
                bool_value(v, &key)?;
            }
            "headers" => {
                let Some(hm) = section(v, &key)? else {
                    continue;
                };
                for (hname, hkey, hv) in entries(hm, &key)? {
                    let Some(&(canonical, allowed)) = ALLOWED_HEADERS
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(&hname))
                    else {
                        return Err(WebConfigError::invalid(
                            &hkey,
                            "this HTTP header cannot be configured (allowed: \
                             Strict-Transport-Security, X-Content-Type-Options, \
                             X-Frame-Options, X-XSS-Protection, Content-Security-Policy)",
                        ));
                    };
                    // "Unset if blank".
                    let Some(value) = string_value(hv, &hkey)? else {
                        continue;
                    };
                    if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                        return Err(WebConfigError::invalid(
                            &hkey,
                            format!("invalid value {value:?} (expected one of {allowed:?})"),
                        ));
                    }
                    let value = HeaderValue::from_str(&value).map_err(|_| {
                        WebConfigError::invalid(&hkey, "not a valid HTTP header value")
                    })?;
                    let name = HeaderName::from_bytes(canonical.as_bytes())
                        .map_err(|_| WebConfigError::invalid(&hkey, "invalid header name"))?;
                    headers.retain(|(n, _): &(HeaderName, HeaderValue)| *n != name);
                    headers.push((name, value));
                }
            }
            _ => return Err(unknown_key(&key, "http2, headers")),
        }
    }
    Ok(headers)
}

fn parse_rate_limit(m: &Mapping, parent: &str) -> Result<Option<(Duration, u32)>, WebConfigError> {
    let mut interval: i128 = 0;
    let mut burst: u32 = 0;
    for (name, key, v) in entries(m, parent)? {
        match name.as_str() {
            "interval" => {
                interval = match v {
                    Value::Null => 0,
                    // go-yaml decodes an integer into a Duration as nanoseconds.
                    Value::Number(n) => n.as_i64().map(i128::from).ok_or_else(|| {
                        WebConfigError::invalid(&key, "expected a duration such as 1s or 500ms")
                    })?,
                    Value::String(s) => parse_go_duration(s).ok_or_else(|| {
                        WebConfigError::invalid(
                            &key,
                            format!("invalid duration {s:?} (expected e.g. 1s, 500ms, 1m30s)"),
                        )
                    })?,
                    other => {
                        return Err(WebConfigError::invalid(
                            &key,
                            format!("expected a duration, found {}", kind_of(other)),
                        ))
                    }
                }
            }
            "burst" => {
                burst = match v {
                    Value::Null => 0,
                    Value::Number(n) => {
                        n.as_u64()
                            .and_then(|b| u32::try_from(b).ok())
                            .ok_or_else(|| {
                                WebConfigError::invalid(&key, "expected a non-negative integer")
                            })?
                    }
                    other => {
                        return Err(WebConfigError::invalid(
                            &key,
                            format!("expected an integer, found {}", kind_of(other)),
                        ))
                    }
                }
            }
            _ => return Err(unknown_key(&key, "interval, burst")),
        }
    }
    // exporter-toolkit: interval 0 disables; a negative interval is an
    // infinite rate, i.e. disabled too.
    if interval <= 0 {
        return Ok(None);
    }
    let nanos = u64::try_from(interval).unwrap_or(u64::MAX);
    Ok(Some((Duration::from_nanos(nanos), burst)))
}

fn parse_users(m: &Mapping, parent: &str) -> Result<Vec<(String, String)>, WebConfigError> {
    let mut users = Vec::new();
    for (name, key, v) in entries(m, parent)? {
        // The value is a secret: it never appears in a message.
        let Value::String(hash) = v else {
            return Err(WebConfigError::invalid(
                &key,
                format!("expected a bcrypt hash string, found {}", kind_of(v)),
            ));
        };
        match hash.parse::<bcrypt::HashParts>() {
            Ok(parts) if (4..=31).contains(&parts.get_cost()) => {}
            Ok(_) => {
                return Err(WebConfigError::invalid(
                    &key,
                    "bcrypt cost must be between 4 and 31",
                ))
            }
            Err(_) => {
                return Err(WebConfigError::invalid(
                    &key,
                    "not a bcrypt hash (expected 60 characters like $2y$10$..., \
                     as made by `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)",
                ))
            }
        }
        users.push((name, hash.clone()));
    }
    Ok(users)
}

/// Go's `time.ParseDuration`, in nanoseconds.
fn parse_go_duration(s: &str) -> Option<i128> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    const UNITS: &[(&str, u128)] = &[
        ("ns", 1),
        ("us", 1_000),
        ("\u{b5}s", 1_000),
        ("\u{3bc}s", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(r) = rest.strip_prefix('.') {
            let frac_len = r.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &r[..frac_len];
            rest = &r[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let &(_, scale) = UNITS.iter().find(|(u, _)| *u == unit)?;
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().ok()?
        };
        total = total.checked_add(whole.checked_mul(scale)?)?;
        if !frac_part.is_empty() {
            let digits = &frac_part[..frac_part.len().min(30)];
            let f: u128 = digits.parse().ok()?;
            let div = 10u128.checked_pow(u32::try_from(digits.len()).ok()?)?;
            total = total.checked_add(f.checked_mul(scale)? / div)?;
        }
    }
    if total > i64::MAX as u128 {
        return None;
    }
    let total = total as i128;
    Some(if neg { -total } else { total })
}

// ---------------------------------------------------------------------------
// Loaded config

/// A loaded web config: the TLS server config (certificates read), basic
/// auth users and extra response headers. Immutable; a reload builds a new
/// one (see [`WebConfigWatcher`]).
pub struct WebConfig {
    tls: Option<Arc<ServerConfig>>,
    /// user name -> bcrypt hash
    users: HashMap<String, String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    rate_limit: Option<RateLimiter>,
    warnings: Vec<String>,
    watched_files: Vec<PathBuf>,
    auth: AuthState,
}

impl Default for WebConfig {
    /// No TLS, no auth, no extra headers: the behaviour without
    /// `--web.config.file`.
    fn default() -> Self {
        WebConfig {
            tls: None,
            users: HashMap::new(),
            headers: Vec::new(),
            rate_limit: None,
            warnings: Vec::new(),
            watched_files: Vec::new(),
            auth: AuthState::new(Vec::new(), [0; 32]),
        }
    }
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut users: Vec<&str> = self.users.keys().map(String::as_str).collect();
        users.sort_unstable();
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("basic_auth_users", &users)
            .field("headers", &self.headers)
            .field(
                "rate_limit",
                &self.rate_limit.as_ref().map(|r| (r.interval, r.burst)),
            )
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

impl WebConfig {
    /// Parses the file, reads the certificates and keys it names, and
    /// validates everything (including the bcrypt hash format). Warnings
    /// (accepted-but-ignored settings) are logged and kept in
    /// [`warnings`](Self::warnings).
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let raw = parse_file(&text)?;
        let dir = path.parent().unwrap_or(Path::new(""));
        let mut warnings = Vec::new();
        let mut watched_files = Vec::new();
        let tls = build_tls(&raw.tls, dir, &mut warnings, &mut watched_files)?;
        if let Some((_, 0)) = raw.rate_limit {
            warnings.push(
                "rate_limit.burst: 0 with a non-zero interval refuses every request \
                 (as in exporter-toolkit)"
                    .to_owned(),
            );
        }
        let mut salt = [0u8; 32];
        rustls::crypto::ring::default_provider()
            .secure_random
            .fill(&mut salt)
            .map_err(|_| {
                WebConfigError::invalid("basic_auth_users", "no randomness for the auth cache")
            })?;
        let auth = AuthState::new(raw.users.clone(), salt);
        for w in &warnings {
            tracing::warn!(file = %path.display(), "web config: {w}");
        }
        Ok(WebConfig {
            tls,
            users: raw.users.into_iter().collect(),
            headers: raw.headers,
            rate_limit: raw
                .rate_limit
                .map(|(interval, burst)| RateLimiter::new(interval, burst)),
            warnings,
            watched_files,
            auth,
        })
    }

    /// The TLS server config, if the file enables TLS.
    pub fn tls(&self) -> Option<Arc<ServerConfig>> {
        self.tls.clone()
    }

    /// Extra headers to add to every response (`http_server_config.headers`).
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    /// Whether requests need basic auth.
    pub fn basic_auth_enabled(&self) -> bool {
        !self.users.is_empty()
    }

    /// Settings accepted but not (fully) applied, one sentence each.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Files the config reads besides itself (certificates, keys, CAs);
    /// the watcher polls them.
    pub fn watched_files(&self) -> &[PathBuf] {
        &self.watched_files
    }

    /// `rate_limit`: false when this request exceeds the configured rate
    /// (answer 429). Always true without `rate_limit`.
    pub fn allow_request(&self) -> bool {
        self.rate_limit.as_ref().is_none_or(RateLimiter::allow)
    }

    /// The `rate_limit` setting: (interval, burst).
    pub fn rate_limit(&self) -> Option<(Duration, u32)> {
        self.rate_limit.as_ref().map(|r| (r.interval, r.burst))
    }

    /// The answer to an `Authorization` header when it needs no bcrypt: no
    /// users configured, a missing or malformed header, or credentials
    /// verified recently. `None`: a password check is needed.
    pub fn authorize_cached(&self, authorization: Option<&str>) -> Option<Result<(), AuthError>> {
        match self.authorize_fast(authorization) {
            Fast::Done(r) => Some(r),
            Fast::Verify(_) => None,
        }
    }

    /// Checks an `Authorization` header value against `basic_auth_users`.
    /// No users configured: `Ok`. Unknown user and wrong password both give
    /// `Err(AuthError::Denied)` after a bcrypt verification of equal cost.
    /// May block for one bcrypt verification (tens to hundreds of ms): in
    /// async code use [`authorize_async`](Self::authorize_async).
    pub fn authorize(&self, authorization: Option<&str>) -> Result<(), AuthError> {
        match self.authorize_fast(authorization) {
            Fast::Done(r) => r,
            Fast::Verify(creds) => self.auth.verify(creds),
        }
    }

    /// [`authorize`](Self::authorize) for async code: answers from the cache
    /// on the calling task, and runs bcrypt on the blocking pool otherwise,
    /// [`BCRYPT_CONCURRENCY`] at a time with at most [`BCRYPT_QUEUE`]
    /// waiting (`Err(Busy)` beyond).
    pub async fn authorize_async(
        self: Arc<Self>,
        authorization: Option<String>,
    ) -> Result<(), AuthError> {
        let creds = match self.authorize_fast(authorization.as_deref()) {
            Fast::Done(r) => return r,
            Fast::Verify(creds) => creds,
        };
        static GATE: Semaphore = Semaphore::const_new(BCRYPT_CONCURRENCY);
        static WAITING: AtomicU64 = AtomicU64::new(0);
        /// Counts a check from its admission until it ends, cancelled (its
        /// connection closed mid-check) or not: a leaked count would make
        /// every later check answer Busy.
        struct Waiting;
        impl Drop for Waiting {
            fn drop(&mut self) {
                WAITING.fetch_sub(1, Ordering::AcqRel);
            }
        }
        if WAITING.fetch_add(1, Ordering::AcqRel) >= (BCRYPT_CONCURRENCY + BCRYPT_QUEUE) as u64 {
            WAITING.fetch_sub(1, Ordering::AcqRel);
            return Err(AuthError::Busy);
        }
        let _waiting = Waiting;
        match GATE.acquire().await {
            // The permit goes with the bcrypt work: a cancelled request
            // cannot free its slot while its bcrypt still runs.
            Ok(permit) => tokio::task::spawn_blocking(move || {
                let _permit = permit;
                self.auth.verify(creds)
            })
            .await
            .unwrap_or(Err(AuthError::Denied)),
            Err(_) => Err(AuthError::Busy),
        }
    }

    fn authorize_fast(&self, authorization: Option<&str>) -> Fast {
        if self.users.is_empty() {
            return Fast::Done(Ok(()));
        }
        let (user, password) = match parse_basic(authorization) {
            Ok(c) => c,
            Err(e) => return Fast::Done(Err(e)),
        };
        if password.len() > MAX_PASSWORD_LEN {
            return Fast::Done(Err(AuthError::Denied));
        }
        let cache_key = self.auth.digest(&[b"credentials", &user, &password]);
        if self.auth.cache_hit(&cache_key) {
            return Fast::Done(Ok(()));
        }
        Fast::Verify(Credentials {
            user,
            password,
            cache_key,
        })
    }
}

enum Fast {
    Done(Result<(), AuthError>),
    Verify(Credentials),
}

struct Credentials {
    user: Vec<u8>,
    password: Vec<u8>,
    cache_key: [u8; 32],
}

/// `Authorization: Basic base64(user:password)`, parsed as Go's
/// `Request.BasicAuth` does.
fn parse_basic(header: Option<&str>) -> Result<(Vec<u8>, Vec<u8>), AuthError> {
    let header = header.ok_or(AuthError::Missing)?.as_bytes();
    if header.len() < 6 || !header[..6].eq_ignore_ascii_case(b"Basic ") {
        return Err(AuthError::Malformed("not the Basic scheme"));
    }
    let decoded = base64_decode(&header[6..]).ok_or(AuthError::Malformed("invalid base64"))?;
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or(AuthError::Malformed("no colon between user and password"))?;
    Ok((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

/// Standard base64 with padding (Go's `base64.StdEncoding`).
fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(input).ok()
}

// -- basic auth state --------------------------------------------------------

struct UserEntry {
    name_digest: [u8; 32],
    hash: String,
}

struct AuthState {
    /// Per-load random salt for the name digests and cache keys, so neither
    /// is a plain hash of a user name or password.
    salt: [u8; 32],
    users: Vec<UserEntry>,
    /// Verified for unknown users: same cost as the costliest real hash, so
    /// unknown user and wrong password take the same time. Matches nothing.
    dummy_hash: String,
    cache: Mutex<HashMap<[u8; 32], Instant>>,
    /// One bcrypt at a time (as exporter-toolkit): a flood of bad passwords
    /// burns one core at most, leaving the other to the pollers.
    bcrypt_lock: Mutex<()>,
}

impl AuthState {
    fn new(users: Vec<(String, String)>, salt: [u8; 32]) -> Self {
        let mut state = AuthState {
            salt,
            users: Vec::new(),
            dummy_hash: String::new(),
            cache: Mutex::new(HashMap::new()),
            bcrypt_lock: Mutex::new(()),
        };
        let mut max_cost = 4;
        for (name, hash) in users {
            if let Ok(parts) = hash.parse::<bcrypt::HashParts>() {
                max_cost = max_cost.max(parts.get_cost());
            }
            state.users.push(UserEntry {
                name_digest: state.digest(&[b"user", name.as_bytes()]),
                hash,
            });
        }
        // 22 salt + 31 hash characters of bcrypt's base64 '.' (zero bits).
        state.dummy_hash = format!("$2y${max_cost:02}${}", ".".repeat(53));
        state
    }

    /// SHA-256 over the salt and the length-prefixed parts.
    fn digest(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = sha256_provider().start();
        ctx.update(&self.salt);
        for p in parts {
            ctx.update(&(p.len() as u64).to_be_bytes());
            ctx.update(p);
        }
        let out = ctx.finish();
        let mut d = [0u8; 32];
        let bytes = out.as_ref();
        let n = bytes.len().min(32);
        d[..n].copy_from_slice(&bytes[..n]);
        d
    }

    fn cache_hit(&self, key: &[u8; 32]) -> bool {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(key)
            .is_some_and(|at| at.elapsed() < AUTH_CACHE_TTL)
    }

    fn remember(&self, key: [u8; 32]) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= AUTH_CACHE_CAPACITY && !cache.contains_key(&key) {
            cache.retain(|_, at| at.elapsed() < AUTH_CACHE_TTL);
            if cache.len() >= AUTH_CACHE_CAPACITY {
                if let Some(oldest) = cache.iter().min_by_key(|(_, at)| **at).map(|(k, _)| *k) {
                    cache.remove(&oldest);
                }
            }
        }
        cache.insert(key, Instant::now());
    }

    /// The slow path: constant-time user lookup, then one bcrypt.
    fn verify(&self, creds: Credentials) -> Result<(), AuthError> {
        let wanted = self.digest(&[b"user", &creds.user]);
        let mut found = subtle::Choice::from(0u8);
        let mut index = 0u32;
        for (i, u) in self.users.iter().enumerate() {
            let eq = u.name_digest.ct_eq(&wanted);
            found |= eq;
            index.conditional_assign(&(i as u32), eq);
        }
        let found: bool = found.into();
        let hash = if found {
            &self.users[index as usize].hash
        } else {
            &self.dummy_hash
        };
        let ok = {
            let _guard = self.bcrypt_lock.lock().unwrap_or_else(|e| e.into_inner());
            bcrypt::verify(&creds.password, hash).unwrap_or(false)
        };
        if found && ok {
            self.remember(creds.cache_key);
            Ok(())
        } else {
            Err(AuthError::Denied)
        }
    }
}

fn sha256_provider() -> &'static dyn rustls::crypto::hash::Hash {
    match rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256 {
        SupportedCipherSuite::Tls13(s) => s.common.hash_provider,
        SupportedCipherSuite::Tls12(s) => s.common.hash_provider,
    }
}

// -- rate limit ----------------------------------------------------------------

/// exporter-toolkit's `rate_limit`: one bucket (see `web::guard` for who
/// draws on it).
struct RateLimiter {
    interval: Duration,
    burst: u32,
    state: Mutex<TokenBucket>,
}

impl RateLimiter {
    fn new(interval: Duration, burst: u32) -> Self {
        RateLimiter {
            interval,
            burst,
            state: Mutex::new(TokenBucket::full(burst, Instant::now())),
        }
    }

    fn allow(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.take(self.interval, self.burst, Instant::now())
    }
}

// ---------------------------------------------------------------------------
// TLS

/// exporter-toolkit's `JoinDir`: relative paths are relative to `dir`.
fn resolve(dir: &Path, file: &str) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_owned()
    } else {
        dir.join(p)
    }
}

/// Reads `file_key` (a path) or else `inline_key` (PEM text); returns the
/// bytes and the key to name in errors.
fn read_material(
    dir: &Path,
    file: &Option<String>,
    inline: &Option<String>,
    file_key: &str,
    inline_key: &str,
    warnings: &mut Vec<String>,
    watched: &mut Vec<PathBuf>,
) -> Result<Option<(Vec<u8>, String)>, WebConfigError> {
    if let Some(f) = file {
        if inline.is_some() {
            warnings.push(format!(
                "{inline_key} and {file_key} are both set; {file_key} is used (as in exporter-toolkit)"
            ));
        }
        let path = resolve(dir, f);
        let data = std::fs::read(&path).map_err(|source| WebConfigError::File {
            key: file_key.to_owned(),
            path: path.clone(),
            source,
        })?;
        watched.push(path);
        return Ok(Some((data, file_key.to_owned())));
    }
    Ok(inline
        .as_ref()
        .map(|s| (s.as_bytes().to_vec(), inline_key.to_owned())))
}

fn parse_certs(data: &[u8], key: &str) -> Result<Vec<CertificateDer<'static>>, WebConfigError> {
    let certs = CertificateDer::pem_slice_iter(data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| WebConfigError::invalid(key, format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(WebConfigError::invalid(
            key,
            "no PEM certificate (-----BEGIN CERTIFICATE-----) found",
        ));
    }
    Ok(certs)
}

const T: &str = "tls_server_config";

fn build_tls(
    raw: &RawTls,
    dir: &Path,
    warnings: &mut Vec<String>,
    watched: &mut Vec<PathBuf>,
) -> Result<Option<Arc<ServerConfig>>, WebConfigError> {
    if !raw.enabled() {
        return Ok(None);
    }
    // Versions.
    let min = raw.min_version.unwrap_or(TlsVersion::V12);
    let max = raw.max_version.unwrap_or(TlsVersion::V13);
    if max < TlsVersion::V12 {
        return Err(WebConfigError::invalid(
            format!("{T}.max_version"),
            format!(
                "{} is not supported (rustls implements TLS12 and TLS13)",
                max.name()
            ),
        ));
    }
    if min > max {
        return Err(WebConfigError::invalid(
            format!("{T}.min_version"),
            format!("{} is above max_version {}", min.name(), max.name()),
        ));
    }
    if min < TlsVersion::V12 {
        warnings.push(format!(
            "{T}.min_version: {} is below what rustls implements; TLS12 is the minimum",
            min.name()
        ));
    }
    let versions: Vec<&'static SupportedProtocolVersion> = [
        (TlsVersion::V12, &rustls::version::TLS12),
        (TlsVersion::V13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (min.max(TlsVersion::V12)..=max).contains(v))
    .map(|(_, p)| p)
    .collect();

    // Certificate and key.
    let cert_file_key = format!("{T}.cert_file");
    let key_file_key = format!("{T}.key_file");
    let Some((cert_pem, cert_key)) = read_material(
        dir,
        &raw.cert_file,
        &raw.cert,
        &cert_file_key,
        &format!("{T}.cert"),
        warnings,
        watched,
    )?
    else {
        return Err(WebConfigError::invalid(
            T,
            "missing one of cert or cert_file",
        ));
    };
    let Some((key_pem, key_key)) = read_material(
        dir,
        &raw.key_file,
        &raw.key,
        &key_file_key,
        &format!("{T}.key"),
        warnings,
        watched,
    )?
    else {
        return Err(WebConfigError::invalid(T, "missing one of key or key_file"));
    };
    let chain = parse_certs(&cert_pem, &cert_key)?;
    // Never echo anything from a key file: the error says what was expected.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        WebConfigError::invalid(
            &key_key,
            "no usable PEM private key found (expected PKCS#8, PKCS#1 or SEC1)",
        )
    })?;

    // Client CA.
    let ca_key_name = if raw.client_ca_file.is_some() {
        format!("{T}.client_ca_file")
    } else {
        format!("{T}.client_ca")
    };
    let ca = read_material(
        dir,
        &raw.client_ca_file,
        &raw.client_ca,
        &format!("{T}.client_ca_file"),
        &format!("{T}.client_ca"),
        warnings,
        watched,
    )?;
    let roots = match &ca {
        None => None,
        Some((pem, key)) => {
            let mut store = RootCertStore::empty();
            for (i, cert) in parse_certs(pem, key)?.into_iter().enumerate() {
                store.add(cert).map_err(|e| {
                    WebConfigError::invalid(
                        key,
                        format!("certificate #{} is not a usable CA certificate: {e}", i + 1),
                    )
                })?;
            }
            Some(Arc::new(store))
        }
    };
    let client_auth = raw.client_auth_type.unwrap_or(ClientAuth::NoClientCert);
    if roots.is_some() && client_auth == ClientAuth::NoClientCert {
        return Err(WebConfigError::invalid(
            ca_key_name,
            "a client CA is configured but client_auth_type is NoClientCert \
             (set client_auth_type: RequireAndVerifyClientCert)",
        ));
    }

    // Cipher suites and curves.
    let mut provider = rustls::crypto::ring::default_provider();
    if !raw.cipher_suites.is_empty() {
        let mut tls12: Vec<SupportedCipherSuite> = Vec::new();
        for (name, id) in &raw.cipher_suites {
            if (0x1301..=0x1303).contains(id) {
                warnings.push(format!(
                    "{T}.cipher_suites: {name} ignored: TLS 1.3 suites are not configurable \
                     (as in Go)"
                ));
                continue;
            }
            match provider.cipher_suites.iter().find(|s| {
                matches!(s, SupportedCipherSuite::Tls12(_)) && u16::from(s.suite()) == *id
            }) {
                Some(s) if !tls12.contains(s) => tls12.push(*s),
                Some(_) => {}
                None => warnings.push(format!(
                    "{T}.cipher_suites: {name} is not implemented by rustls and is ignored"
                )),
            }
        }
        if tls12.is_empty() && versions.contains(&&rustls::version::TLS12) {
            if !versions.contains(&&rustls::version::TLS13) {
                return Err(WebConfigError::invalid(
                    format!("{T}.cipher_suites"),
                    "none of the listed TLS 1.2 cipher suites is implemented by rustls \
                     and max_version is TLS12",
                ));
            }
            warnings.push(format!(
                "{T}.cipher_suites: none of the listed TLS 1.2 suites is implemented by \
                 rustls: TLS 1.2 clients cannot connect"
            ));
        }
        let mut suites: Vec<SupportedCipherSuite> = provider
            .cipher_suites
            .iter()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
            .copied()
            .collect();
        suites.extend(tls12);
        provider.cipher_suites = suites;
    }
    if !raw.curve_preferences.is_empty() {
        let mut groups = Vec::new();
        for (name, group) in &raw.curve_preferences {
            let found = group.and_then(|g| provider.kx_groups.iter().find(|k| k.name() == g));
            match found {
                Some(k)
                    if !groups
                        .iter()
                        .any(|x: &&dyn rustls::crypto::SupportedKxGroup| x.name() == k.name()) =>
                {
                    groups.push(*k)
                }
                Some(_) => {}
                None => warnings.push(format!(
                    "{T}.curve_preferences: {name} is not implemented by rustls/ring and is ignored"
                )),
            }
        }
        if groups.is_empty() {
            return Err(WebConfigError::invalid(
                format!("{T}.curve_preferences"),
                "none of the listed curves is implemented by rustls/ring \
                 (X25519, CurveP256 and CurveP384 are)",
            ));
        }
        provider.kx_groups = groups;
    }
    let provider = Arc::new(provider);

    // Client certificate policy.
    let needs_ca = |name: &str| {
        WebConfigError::invalid(
            format!("{T}.client_auth_type"),
            format!("{name} needs client_ca_file (or client_ca) to verify client certificates"),
        )
    };
    let mut verifier: Option<Arc<dyn ClientCertVerifier>> = match client_auth {
        ClientAuth::NoClientCert => None,
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => {
            Some(Arc::new(AnyClientCert {
                mandatory: client_auth == ClientAuth::RequireAnyClientCert,
                algorithms: provider.signature_verification_algorithms,
            }))
        }
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            let roots = roots.clone().ok_or_else(|| needs_ca(client_auth.name()))?;
            let mut b = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
            if client_auth == ClientAuth::VerifyClientCertIfGiven {
                b = b.allow_unauthenticated();
            }
            Some(b.build().map_err(|e| {
                WebConfigError::invalid(ca_key_name.clone(), format!("unusable client CA: {e}"))
            })?)
        }
    };
    if let Some(sans) = &raw.client_allowed_sans {
        let inner = match (&verifier, client_auth) {
            (
                Some(v),
                ClientAuth::RequireAnyClientCert | ClientAuth::RequireAndVerifyClientCert,
            ) => v.clone(),
            _ => {
                return Err(WebConfigError::invalid(
                    format!("{T}.client_allowed_sans"),
                    "requires client_auth_type to be one of RequireAnyClientCert or \
                     RequireAndVerifyClientCert",
                ))
            }
        };
        if sans.is_empty() {
            warnings.push(format!(
                "{T}.client_allowed_sans is an empty list: every client is refused"
            ));
        }
        verifier = Some(Arc::new(AllowedSans {
            inner,
            allowed: sans.clone(),
        }));
    }

    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| WebConfigError::invalid(T, format!("{e}")))?;
    let builder = match verifier {
        None => builder.with_no_client_auth(),
        Some(v) => builder.with_client_cert_verifier(v),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            WebConfigError::invalid(
                &key_key,
                format!("the private key does not match the certificate in {cert_key}"),
            )
        }
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            WebConfigError::invalid(&cert_key, format!("unusable certificate: {e}"))
        }
        other => WebConfigError::invalid(&key_key, format!("unusable private key: {other}")),
    })?;
    config.ignore_client_order = raw.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// `RequestClientCert` / `RequireAnyClientCert`: asks for a certificate and
/// accepts any (no chain check, as in Go), but still checks the handshake
/// signature, i.e. that the client holds the certificate's key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `client_allowed_sans`: the inner verifier's checks, then one of the
/// client certificate's SANs must equal an allowed entry.
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let sans = subject_alt_names(end_entity).ok_or(rustls::Error::InvalidCertificate(
            CertificateError::BadEncoding,
        ))?;
        if sans.iter().any(|s| self.allowed.contains(s)) {
            Ok(verified)
        } else {
            tracing::debug!(?sans, "client certificate has no allowed SAN");
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// One DER TLV: (tag, contents, rest). Single-byte tags, definite lengths.
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The DNS, e-mail, URI and IP subject alternative names of a certificate,
/// as strings (IPs in Rust's canonical form, which matches Go's for v4 and
/// RFC 5952 v6). `None` if the DER cannot be walked.
fn subject_alt_names(cert: &[u8]) -> Option<Vec<String>> {
    let (0x30, cert, _) = der_next(cert)? else {
        return None;
    };
    let (0x30, mut tbs, _) = der_next(cert)? else {
        return None;
    };
    let mut out = Vec::new();
    while !tbs.is_empty() {
        let (tag, content, rest) = der_next(tbs)?;
        tbs = rest;
        if tag != 0xa3 {
            continue;
        }
        let (0x30, mut exts, _) = der_next(content)? else {
            return None;
        };
        while !exts.is_empty() {
            let (0x30, ext, rest) = der_next(exts)? else {
                return None;
            };
            exts = rest;
            let (0x06, oid, mut ext) = der_next(ext)? else {
                return None;
            };
            if oid != [0x55, 0x1d, 0x11] {
                continue;
            }
            let (mut tag, mut value, rest) = der_next(ext)?;
            if tag == 0x01 {
                ext = rest;
                (tag, value, _) = der_next(ext)?;
            }
            if tag != 0x04 {
                return None;
            }
            let (0x30, mut names, _) = der_next(value)? else {
                return None;
            };
            while !names.is_empty() {
                let (tag, v, rest) = der_next(names)?;
                names = rest;
                match tag {
                    // rfc822Name, dNSName, uniformResourceIdentifier
                    0x81 | 0x82 | 0x86 => {
                        if let Ok(s) = std::str::from_utf8(v) {
                            out.push(s.to_owned());
                        }
                    }
                    // iPAddress
                    0x87 => {
                        if let Ok(b) = <[u8; 4]>::try_from(v) {
                            out.push(Ipv4Addr::from(b).to_string());
                        } else if let Ok(b) = <[u8; 16]>::try_from(v) {
                            out.push(Ipv6Addr::from(b).to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// Accepting connections

/// An accepted connection, plain or TLS, over the transport `S`.
pub enum MaybeTlsStream<S> {
    Plain(S),
    Tls(Box<tokio_rustls::server::TlsStream<S>>),
}

impl<S> MaybeTlsStream<S> {
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTlsStream::Tls(_))
    }

    /// The client's certificate chain, when it sent one over TLS.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        match self {
            MaybeTlsStream::Plain(_) => None,
            MaybeTlsStream::Tls(s) => s.get_ref().1.peer_certificates(),
        }
    }

    /// The transport under TLS.
    pub fn transport(&self) -> &S {
        match self {
            MaybeTlsStream::Plain(s) => s,
            MaybeTlsStream::Tls(s) => s.get_ref().0,
        }
    }
}

impl<S> fmt::Debug for MaybeTlsStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaybeTlsStream")
            .field("tls", &self.is_tls())
            .finish()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTlsStream::Plain(s) => s.is_write_vectored(),
            MaybeTlsStream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Serves one accepted connection's transport: completes the TLS
/// handshake when `config` enables TLS (within [`HANDSHAKE_TIMEOUT`]),
/// otherwise passes the stream through. Hand the result to hyper.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    config: &WebConfig,
    stream: S,
) -> io::Result<MaybeTlsStream<S>> {
    let Some(tls) = config.tls() else {
        return Ok(MaybeTlsStream::Plain(stream));
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Ok(MaybeTlsStream::Tls(Box::new(s))),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "TLS handshake timed out",
        )),
    }
}

// ---------------------------------------------------------------------------
// Reloading

/// Holds the current [`WebConfig`] and swaps it when the config file or a
/// file it references changes (polled every [`POLL_INTERVAL`]: mtime, size
/// and a content hash, since rotations may keep mtime and size) or on
/// SIGHUP, so rotated certificates apply without a restart. A reload that
/// fails keeps the previous config and logs an error (naming the key, never
/// secret material), once per change.
///
/// A reload fails closed: a file that would remove TLS, or remove every
/// basic-auth user, is refused like an invalid one (an emptied, truncated
/// or half-written file is exactly that), so nothing written to the file
/// while the daemon runs can lower its protection; only a restart can.
/// [`reload_status`](Self::reload_status) feeds the
/// `redis_vitals_web_config_last_reload_*` gauges.
pub struct WebConfigWatcher {
    path: PathBuf,
    poll_interval: Duration,
    current: RwLock<Arc<WebConfig>>,
    /// Fingerprint of the files last loaded or last tried.
    fingerprint: Mutex<u64>,
    generation: AtomicU64,
    /// Whether the last load (the one at start included) was applied.
    last_ok: std::sync::atomic::AtomicBool,
    /// When a load was last applied, in Unix milliseconds.
    last_success_ms: AtomicU64,
}

/// Unix time now, in milliseconds.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl fmt::Debug for WebConfigWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfigWatcher")
            .field("path", &self.path)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl WebConfigWatcher {
    /// `initial` is the config just loaded from `path`.
    pub fn new(path: PathBuf, initial: impl Into<Arc<WebConfig>>) -> Self {
        Self::with_poll_interval(path, initial, POLL_INTERVAL)
    }

    /// As [`new`](Self::new) with another poll interval (tests).
    pub fn with_poll_interval(
        path: PathBuf,
        initial: impl Into<Arc<WebConfig>>,
        poll_interval: Duration,
    ) -> Self {
        let initial: Arc<WebConfig> = initial.into();
        let fingerprint = fingerprint(&path, initial.watched_files());
        WebConfigWatcher {
            path,
            poll_interval,
            current: RwLock::new(initial),
            fingerprint: Mutex::new(fingerprint),
            generation: AtomicU64::new(0),
            last_ok: std::sync::atomic::AtomicBool::new(true),
            last_success_ms: AtomicU64::new(unix_ms()),
        }
    }

    /// Whether the last reload was applied, and when one last was (Unix
    /// seconds; the start counts as one).
    pub fn reload_status(&self) -> (bool, f64) {
        (
            self.last_ok.load(Ordering::Acquire),
            self.last_success_ms.load(Ordering::Acquire) as f64 / 1000.0,
        )
    }

    /// The config to use for the next connection or request.
    pub fn current(&self) -> Arc<WebConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many reloads have been applied since start.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Loads the file now and swaps it in (what SIGHUP does). On error the
    /// previous config stays.
    pub fn reload(&self) -> Result<(), WebConfigError> {
        let fp = fingerprint(&self.path, self.current().watched_files());
        self.load_and_swap(fp)
    }

    fn load_and_swap(&self, fp: u64) -> Result<(), WebConfigError> {
        *self.fingerprint.lock().unwrap_or_else(|e| e.into_inner()) = fp;
        let result = self.load_checked().map(|new| self.swap(new));
        self.last_ok.store(result.is_ok(), Ordering::Release);
        if result.is_ok() {
            self.last_success_ms.store(unix_ms(), Ordering::Release);
        }
        result
    }

    /// Loads the file and refuses it if it lowers the protection in force.
    fn load_checked(&self) -> Result<WebConfig, WebConfigError> {
        let new = WebConfig::load(&self.path)?;
        let current = self.current();
        if current.tls.is_some() && new.tls.is_none() {
            return Err(WebConfigError::invalid(
                "tls_server_config",
                "the new file has no TLS while TLS is in force; only a restart may remove it",
            ));
        }
        if !current.users.is_empty() && new.users.is_empty() {
            return Err(WebConfigError::invalid(
                "basic_auth_users",
                "the new file has no users while basic auth is in force; only a restart may remove it",
            ));
        }
        Ok(new)
    }

    fn swap(&self, new: WebConfig) {
        let old_files = self.current().watched_files.clone();
        if new.watched_files != old_files {
            // Other files now: fingerprint the new set (a change between the
            // load and here would be missed; SIGHUP recovers).
            let fp = fingerprint(&self.path, new.watched_files());
            *self.fingerprint.lock().unwrap_or_else(|e| e.into_inner()) = fp;
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// One poll (or a forced reload), logging the outcome.
    fn check(&self, force: bool) {
        let fp = fingerprint(&self.path, self.current().watched_files());
        let unchanged = *self.fingerprint.lock().unwrap_or_else(|e| e.into_inner()) == fp;
        if unchanged && !force {
            return;
        }
        match self.load_and_swap(fp) {
            Ok(()) => tracing::info!(file = %self.path.display(), "web config reloaded"),
            Err(e) => tracing::error!(
                file = %self.path.display(),
                error = %e,
                "web config reload failed; keeping the previous configuration"
            ),
        }
    }

    /// Polls and listens for SIGHUP until `stop` turns true (or its sender
    /// is dropped).
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; web config reloads by polling only");
                None
            }
        };
        let mut tick = tokio::time::interval(self.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            if *stop.borrow() {
                return;
            }
            let force = tokio::select! {
                _ = tick.tick() => false,
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    tracing::info!(file = %self.path.display(), "SIGHUP: reloading the web config");
                    true
                }
                r = stop.changed() => {
                    if r.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.check(force)).await;
        }
    }
}

/// mtime, size and content hash of the config file and the files it names.
fn fingerprint(config: &Path, files: &[PathBuf]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for path in std::iter::once(config).chain(files.iter().map(PathBuf::as_path)) {
        path.hash(&mut h);
        match std::fs::metadata(path) {
            Ok(m) => {
                m.len().hash(&mut h);
                m.modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .hash(&mut h);
            }
            Err(e) => e.kind().hash(&mut h),
        }
        match std::fs::read(path) {
            Ok(bytes) => bytes.hash(&mut h),
            Err(e) => e.kind().hash(&mut h),
        }
    }
    h.finish()
}

// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ns = |s: &str| parse_go_duration(s);
        assert_eq!(ns("0"), Some(0));
        assert_eq!(ns("1s"), Some(1_000_000_000));
        assert_eq!(ns("500ms"), Some(500_000_000));
        assert_eq!(ns("1m30s"), Some(90_000_000_000));
        assert_eq!(ns("1.5h"), Some(5_400_000_000_000));
        assert_eq!(ns("2us"), Some(2_000));
        assert_eq!(ns("2\u{b5}s"), Some(2_000));
        assert_eq!(ns("-1s"), Some(-1_000_000_000));
        assert_eq!(ns(".5s"), Some(500_000_000));
        for bad in ["", "1", "s", "1x", "1.s.", "1s2", "--1s", "."] {
            assert_eq!(ns(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn base64_like_go() {
        assert_eq!(
            base64_decode(b"YWxpY2U6cHc=").as_deref(),
            Some(&b"alice:pw"[..])
        );
        assert_eq!(base64_decode(b"YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(base64_decode(b"YWI=").as_deref(), Some(&b"ab"[..]));
        assert_eq!(base64_decode(b"YWJj").as_deref(), Some(&b"abc"[..]));
        assert_eq!(base64_decode(b"").as_deref(), Some(&b""[..]));
        for bad in [&b"YQ"[..], b"YQ=", b"Y===", b"YQ==YWJj", b"YW!j", b"YWJj "] {
            assert_eq!(base64_decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn basic_header_parsing() {
        assert_eq!(parse_basic(None), Err(AuthError::Missing));
        assert!(matches!(
            parse_basic(Some("Bearer abc")),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            parse_basic(Some("Basic !!!!")),
            Err(AuthError::Malformed(_))
        ));
        // "alice" without a colon
        assert!(matches!(
            parse_basic(Some("Basic YWxpY2U=")),
            Err(AuthError::Malformed(_))
        ));
        let (u, p) = parse_basic(Some("basic YWxpY2U6cDpx")).unwrap();
        assert_eq!((u.as_slice(), p.as_slice()), (&b"alice"[..], &b"p:q"[..]));
    }

    #[test]
    fn rate_limiter_is_a_token_bucket() {
        let r = RateLimiter::new(Duration::from_secs(3600), 2);
        assert!(r.allow());
        assert!(r.allow());
        assert!(!r.allow());
        let r = RateLimiter::new(Duration::from_millis(1), 1);
        assert!(r.allow());
        std::thread::sleep(Duration::from_millis(5));
        assert!(r.allow());
        let none = RateLimiter::new(Duration::from_secs(1), 0);
        assert!(!none.allow());
    }

    #[test]
    fn sans_are_read_from_der() {
        let mut params = rcgen::CertificateParams::new(vec![
            "client.example".to_owned(),
            "10.1.2.3".to_owned(),
            "::1".to_owned(),
        ])
        .unwrap();
        params.subject_alt_names.push(rcgen::SanType::Rfc822Name(
            "ops@example.com".try_into().unwrap(),
        ));
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://example/prometheus".try_into().unwrap(),
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let sans = subject_alt_names(cert.der()).unwrap();
        assert_eq!(
            sans,
            [
                "client.example",
                "10.1.2.3",
                "::1",
                "ops@example.com",
                "spiffe://example/prometheus"
            ]
        );
        assert_eq!(subject_alt_names(b"\x30\x03\x02\x01"), None);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse_file("tls_server_config:\n  cert_file: a\n  nope: 1\n")
            .err()
            .unwrap();
        assert_eq!(e.key(), Some("tls_server_config.nope"));
        let e = parse_file("http_server_config:\n  headers:\n    X-Powered-By: me\n")
            .err()
            .unwrap();
        assert_eq!(e.key(), Some("http_server_config.headers.X-Powered-By"));
        let e = parse_file("rate_limit:\n  interval: 1s\n  bursts: 2\n")
            .err()
            .unwrap();
        assert_eq!(e.key(), Some("rate_limit.bursts"));
        let e = parse_file("basic_auth_user:\n  a: b\n").err().unwrap();
        assert_eq!(e.key(), Some("basic_auth_user"));
    }

    #[test]
    fn hash_values_never_appear_in_errors() {
        let secret = "$2y$10$notreallyahashbutsecret";
        let e = parse_file(&format!("basic_auth_users:\n  alice: '{secret}'\n"))
            .err()
            .unwrap();
        assert_eq!(e.key(), Some("basic_auth_users.alice"));
        assert!(!e.to_string().contains("notreally"), "{e}");
    }

    #[test]
    fn dummy_hash_is_a_valid_bcrypt_hash() {
        let state = AuthState::new(
            vec![(
                "a".to_owned(),
                "$2b$04$ZyLWFQFPI9S.7iZ9M6/eUOJIZ4SlBv6PW6wPG8dV8keKTMdVw81b2".to_owned(),
            )],
            [7; 32],
        );
        let parts: bcrypt::HashParts = state.dummy_hash.parse().unwrap();
        assert_eq!(parts.get_cost(), 4);
        assert_eq!(bcrypt::verify("", &state.dummy_hash).ok(), Some(false));
    }
}

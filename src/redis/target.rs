//! What one Redis node to poll is: its address, credentials and settings.
//!
//! Credentials live in [`Secret`], whose `Debug` and `Display` never show the
//! value, so a target can be logged or put in an error without leaking.

use std::fmt;
use std::sync::Arc;

/// A password. Printing it in any way shows `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(s: &str) -> Self {
        Secret(Arc::from(s))
    }
    /// The only way to read the value; grep for it when auditing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a node listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Tcp { host: String, port: u16 },
    Unix { path: String },
}

/// One node to poll.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub endpoint: Endpoint,
    /// The `addr` label: `host:port` (IPv6 in brackets) or the socket path.
    pub addr: String,
    pub db: i64,
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// The `cluster` label; empty for a standalone node without a group name.
    pub cluster: String,
    /// Operator-supplied `maxclients`, for servers that hide it (managed
    /// Redis before 6.2 with CONFIG blocked).
    pub maxclients_override: Option<u64>,
    /// Name of the CONFIG command (renamed on some servers); `None` when the
    /// operator disabled it, so it is never sent.
    pub config_command: Option<String>,
    /// Whether this target was configured (a seed) or found by discovery.
    pub discovered: bool,
    /// Found through Redis Sentinel: its membership belongs to
    /// `collect::sentinel`, and Redis Cluster discovery leaves it alone
    /// (a Sentinel group named like a cluster must not lose its nodes).
    pub from_sentinel: bool,
    /// A `[[targets]]` entry's `insight`: overrides `insight.enabled` for
    /// this target and every node found from it.
    pub insight: Option<bool>,
    /// TLS settings for `rediss://` targets.
    pub tls: Option<crate::redis::tls::TlsClient>,
}

/// Formats `host:port`, bracketing IPv6 literals so the label parses back.
pub fn format_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Why a target address was refused. Never carries the address itself: it
/// may hold a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("not a valid URL")]
    Invalid,
    #[error("unsupported scheme (use redis://, rediss:// or unix://)")]
    Scheme,
    #[error("missing host")]
    NoHost,
    #[error("missing socket path")]
    NoPath,
    #[error("database must be a number from 0 to 1000000")]
    Db,
    #[error("user name is not valid UTF-8")]
    User,
    #[error("password is not valid UTF-8")]
    Password,
}

/// The parts of a target URL. `redis://[user[:password]@]host[:port][/db]`,
/// `unix:///path[?db=N]`, or a bare `host:port`.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedAddr {
    pub endpoint: Endpoint,
    /// `rediss://`: connect with TLS.
    pub tls: bool,
    pub addr: String,
    pub db: i64,
    pub user: Option<String>,
    pub password: Option<Secret>,
}

/// Largest db index we accept; Redis' own limit is the `databases` setting,
/// this only rejects nonsense early.
const MAX_DB: i64 = 1_000_000;

pub fn parse_addr(input: &str) -> Result<ParsedAddr, AddrError> {
    let input = input.trim();
    // A bare `host:port` is what people type most; give it a scheme.
    let owned;
    let text = if input.contains("://") {
        input
    } else {
        owned = format!("redis://{input}");
        &owned
    };
    let url = url::Url::parse(text).map_err(|_| AddrError::Invalid)?;
    let decode = percent_encoding_decode;
    let user = match url.username() {
        "" => None,
        u => Some(decode(u).ok_or(AddrError::User)?),
    };
    let password = match url.password() {
        None | Some("") => None,
        Some(p) => Some(Secret::new(&decode(p).ok_or(AddrError::Password)?)),
    };
    match url.scheme() {
        scheme @ ("redis" | "rediss") => {
            let host = match url.host() {
                Some(url::Host::Domain(d)) => d.to_string(),
                Some(url::Host::Ipv4(ip)) => ip.to_string(),
                Some(url::Host::Ipv6(ip)) => ip.to_string(),
                None => return Err(AddrError::NoHost),
            };
            if host.is_empty() {
                return Err(AddrError::NoHost);
            }
            let port = url.port().unwrap_or(6379);
            let db = match url.path().trim_start_matches('/') {
                "" => 0,
                p => p.parse().map_err(|_| AddrError::Db)?,
            };
            if !(0..=MAX_DB).contains(&db) {
                return Err(AddrError::Db);
            }
            Ok(ParsedAddr {
                addr: format_host_port(&host, port),
                endpoint: Endpoint::Tcp { host, port },
                tls: scheme == "rediss",
                db,
                user,
                password,
            })
        }
        "unix" | "redis+unix" => {
            let path = url.path().to_string();
            if path.is_empty() || path == "/" {
                return Err(AddrError::NoPath);
            }
            let db = match url.query_pairs().find(|(k, _)| k == "db") {
                Some((_, v)) => v.parse().map_err(|_| AddrError::Db)?,
                None => 0,
            };
            if !(0..=MAX_DB).contains(&db) {
                return Err(AddrError::Db);
            }
            Ok(ParsedAddr {
                addr: path.clone(),
                endpoint: Endpoint::Unix { path },
                tls: false,
                db,
                user,
                password,
            })
        }
        _ => Err(AddrError::Scheme),
    }
}

fn percent_encoding_decode(s: &str) -> Option<String> {
    // url keeps userinfo percent-encoded.
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// A URL with any password replaced by `****`, for messages that must name
/// which configured address is wrong. Everything between the userinfo's
/// first `:` and the last `@` is hidden, whatever it contains (`://`, `@`).
pub fn redact_url(input: &str) -> String {
    let Some(at) = input.rfind('@') else {
        return input.to_string();
    };
    let (before, host) = (&input[..at], &input[at + 1..]);
    let scheme_end = before.find("://").filter(|&i| {
        i > 0
            && before[..i]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    let (scheme, userinfo) = match scheme_end {
        Some(i) => (&before[..i + 3], &before[i + 3..]),
        None => ("", before),
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}{user}:****@{host}"),
        // `scheme://user@host` names a user; a bare `secret@host` may be a
        // password typed in the wrong place.
        None if scheme.is_empty() => format!("****@{host}"),
        None => format!("{scheme}{userinfo}@{host}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        let a = parse_addr("redis://alice:s3cr%40t@10.0.0.1:6380/2").unwrap();
        assert_eq!(a.addr, "10.0.0.1:6380");
        assert_eq!(a.db, 2);
        assert_eq!(a.user.as_deref(), Some("alice"));
        assert_eq!(a.password.as_ref().unwrap().expose(), "s3cr@t");
        assert!(!format!("{:?}", a).contains("s3cr"));

        let b = parse_addr("localhost:7000").unwrap();
        assert_eq!(b.addr, "localhost:7000");
        let c = parse_addr("redis://[::1]:7000").unwrap();
        assert_eq!(c.addr, "[::1]:7000");
        let d = parse_addr("unix:///run/redis.sock?db=3").unwrap();
        assert_eq!(d.addr, "/run/redis.sock");
        assert_eq!(d.db, 3);
        assert_eq!(parse_addr("redis://h:1/x"), Err(AddrError::Db));
        assert_eq!(parse_addr("http://h:1"), Err(AddrError::Scheme));
        assert_eq!(parse_addr("redis://h:99999"), Err(AddrError::Invalid));
        assert_eq!(parse_addr("unix://"), Err(AddrError::NoPath));
        assert_eq!(parse_addr("redis://h:1/%"), Err(AddrError::Db));
        assert_eq!(parse_addr("redis://:%FF@h"), Err(AddrError::Password));
    }

    #[test]
    fn redacts() {
        assert_eq!(redact_url("redis://u:pw@h:1"), "redis://u:****@h:1");
        assert_eq!(redact_url("redis://:pw@h:1"), "redis://:****@h:1");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
        assert_eq!(redact_url("pw@h:1"), "****@h:1");
        assert_eq!(redact_url("alice:p://w@host:6379"), "alice:****@host:6379");
        assert_eq!(redact_url("redis://u:p@ss@h:1"), "redis://u:****@h:1");
        assert_eq!(redact_url("redis://u@h:1"), "redis://u@h:1");
    }
}

//! Why a poll failed, as a small fixed set of reasons.
//!
//! The reason becomes the `reason` label of `redis_vitals_poll_errors_total`
//! and the short text on the landing page. Free error text never reaches a
//! label: it could be unbounded, and it could carry a secret.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// TCP/Unix connect refused, unreachable or failed DNS.
    Connect,
    /// AUTH/HELLO rejected (wrong password, unknown user, NOAUTH).
    Auth,
    /// No complete reply within `poll.timeout`.
    Timeout,
    /// The connection broke mid-conversation.
    Io,
    /// The server sent something that is not a valid reply to our command.
    Protocol,
    /// ACL denied a command (NOPERM).
    Denied,
    /// The server is loading its dataset and refuses commands.
    Loading,
    /// The server is busy running a script.
    Busy,
    /// A reply larger than the cap.
    ReplyTooLarge,
    /// TLS handshake or certificate problem.
    Tls,
    /// Any other error reply from the server.
    ServerError,
}

impl Reason {
    pub const ALL: [Reason; 11] = [
        Reason::Connect,
        Reason::Auth,
        Reason::Timeout,
        Reason::Io,
        Reason::Protocol,
        Reason::Denied,
        Reason::Loading,
        Reason::Busy,
        Reason::ReplyTooLarge,
        Reason::Tls,
        Reason::ServerError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Connect => "connect",
            Reason::Auth => "auth",
            Reason::Timeout => "timeout",
            Reason::Io => "io",
            Reason::Protocol => "protocol",
            Reason::Denied => "denied",
            Reason::Loading => "loading",
            Reason::Busy => "busy",
            Reason::ReplyTooLarge => "reply_too_large",
            Reason::Tls => "tls",
            Reason::ServerError => "server_error",
        }
    }

    /// Maps the code of an error reply (its first word).
    pub fn from_error_code(code: &str) -> Reason {
        match code {
            "NOPERM" => Reason::Denied,
            "NOAUTH" | "WRONGPASS" => Reason::Auth,
            "LOADING" => Reason::Loading,
            "BUSY" => Reason::Busy,
            _ => Reason::ServerError,
        }
    }

    /// The server answered with an error reply: the connection itself is
    /// fine and is kept.
    pub fn is_error_reply(self) -> bool {
        matches!(
            self,
            Reason::Denied | Reason::Loading | Reason::Busy | Reason::ServerError
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed poll: the reason, and a short detail for logs and the landing
/// page. The detail is built only from fixed strings and the error kind,
/// never from configuration or connection strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollError {
    pub reason: Reason,
    pub detail: String,
}

/// Longest error detail kept: enough for a Redis error line, bounded so a
/// hostile server cannot fill our memory or logs with one error.
const MAX_DETAIL: usize = 160;

impl PollError {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        let mut detail: String = detail.into();
        if detail.len() > MAX_DETAIL {
            let mut end = MAX_DETAIL;
            while !detail.is_char_boundary(end) {
                end -= 1;
            }
            detail.truncate(end);
        }
        // Control characters from a server could forge log lines.
        let detail = detail
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        PollError { reason, detail }
    }

    /// An error reply (`-NOPERM ...`), reason from its code. The text is
    /// the server's reply, bounded and cleaned by [`PollError::new`].
    pub fn from_error_reply(line: &str) -> Self {
        let code = line.split(' ').next().unwrap_or("");
        PollError::new(Reason::from_error_code(code), line)
    }
}

impl fmt::Display for PollError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

/// Why a discovered address is not polled. A fixed set: it is the `reason`
/// label of `redis_vitals_discovery_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// Outside the allowed networks (or not an IP literal).
    NotAllowed,
    /// Link-local (169.254.0.0/16, fe80::/10) and not listed explicitly.
    LinkLocal,
    /// `cluster.max-nodes` or `poll.max-nodes` reached.
    Cap,
}

impl Refusal {
    pub const ALL: [Refusal; 3] = [Refusal::NotAllowed, Refusal::LinkLocal, Refusal::Cap];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NotAllowed => "not_allowed",
            Refusal::LinkLocal => "link_local",
            Refusal::Cap => "cap",
        }
    }
}

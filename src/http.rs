//! The HTTP side: `/metrics`, `/scrape`, `/sd`, health, readiness and a
//! landing page. Every handler reads stored snapshots; none touches Redis.
//!
//! HTTP/1.1 is served here over `httparse` (the request-head parser hyper
//! itself uses) rather than through hyper's connection machinery: the
//! exporter answers GET and HEAD of stored pages and nothing else, and at
//! one node hyper's per-request path (dispatcher, header maps, body
//! framing) was a sixth of the HTTP thread's CPU per scrape (BENCHMARKS.md,
//! "Round 5"). What the protocol needs from a server that takes no request
//! bodies is all below: keep-alive (HTTP/1.1 by default, HTTP/1.0 on
//! request), pipelined requests answered in order, `Content-Length`
//! framing, `Date`, and a clear status for what is refused.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;

use crate::daemon::Shared;
use crate::exposition::Page;
use crate::webconfig::WebConfig;

/// Most HTTP connections served at once; more are closed on accept. Far
/// above what a few Prometheus servers need, low enough that a flood of
/// connections cannot exhaust file descriptors the pollers need.
pub const MAX_CONNECTIONS: usize = 256;
/// Time a client gets to send a request head, counted from its first byte
/// (from the accept for a connection's first request); stops slow-loris
/// clients and silent connections from holding connection slots. Time
/// between requests on a keep-alive connection is not counted.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head accepted (the read buffer); a scrape request is a
/// few hundred bytes.
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// Upper bound on one connection's life, so an idle keep-alive client
/// cannot pin a slot forever, and a client that stops reading a page
/// cannot hold one either. Above the scrape intervals people use (15 s to
/// 2 min), so Prometheus keeps reusing its connection between scrapes.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);
/// How long a connection that finds every slot taken waits while idle
/// keep-alive connections give theirs up: a close is immediate, so this is
/// only slack for a busy thread.
const SLOT_WAIT: Duration = Duration::from_millis(200);
/// Most request headers accepted; Prometheus sends five or six.
const MAX_HEADERS: usize = 64;
/// Largest request body read and thrown away. GET and HEAD carry none; a
/// client that sends a small one anyway keeps its connection, a larger one
/// is refused (413) rather than read.
pub const MAX_DISCARDED_BODY: u64 = 16 * 1024;

/// A connection's first read buffer: a scrape's head is a few hundred
/// bytes, so most connections never grow it.
const FIRST_READ_BUFFER: usize = 4 * 1024;
/// Largest write buffer a connection keeps between requests: a one-node
/// page (13-25 KB) and its head fit, so the common scrape reuses it; with
/// 256 idle connections that is 8 MiB at most.
const KEPT_WRITE_BUFFER: usize = 32 * 1024;

/// How long, and how many bytes, a refused request's unread bytes are
/// drained before closing: enough for a client's in-flight body or head to
/// arrive, short enough that a refused client cannot hold a slot.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Accepts connections until `stop` turns true.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Wakes every connection idle between requests, to close: sent when a
    // new connection finds every slot taken, so idle keep-alive clients
    // (or someone holding connections open to lock scrapers out) cannot
    // keep a scraper from connecting. They reconnect when they need to.
    let pressure = Arc::new(Pressure::default());
    loop {
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            // Wait only if some connection is idle and can give its slot
            // up, so a flood of new connections is not accepted slowly.
            Err(_) if pressure.idle.load(Ordering::Acquire) > 0 => {
                pressure.close_idle.notify_waiters();
                match tokio::time::timeout(SLOT_WAIT, slots.clone().acquire_owned()).await {
                    Ok(Ok(p)) => p,
                    _ => {
                        tracing::debug!("every connection slot is busy; closing a new connection");
                        drop(stream);
                        continue;
                    }
                }
            }
            Err(_) => {
                tracing::debug!("every connection slot is busy; closing a new connection");
                drop(stream);
                continue;
            }
        };
        // A long page goes out in several writes, the last one short.
        // Nagle would hold that write until the client ACKs the previous
        // one, and a client delaying its ACK stalls the scrape for 40 ms
        // (p90 47 ms at 100 nodes before this).
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let pressure = pressure.clone();
        tokio::spawn(async move {
            // The web config current when the connection arrived serves all
            // of it; a reload applies to the next connection.
            let web = shared.web();
            let _ = tokio::time::timeout(MAX_CONNECTION_AGE, async {
                let stream = match crate::webconfig::accept(&web, stream).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                };
                // The first head is timed from here: the TLS handshake has
                // its own timeout.
                let first_head_by = Instant::now() + HEADER_READ_TIMEOUT;
                Connection::new(stream, &shared, web, &pressure, first_head_by)
                    .run()
                    .await;
            })
            .await;
            drop(permit);
        });
    }
}

/// Connections idle between requests, and the signal that closes them when
/// a new connection finds every slot taken.
#[derive(Default)]
struct Pressure {
    idle: AtomicUsize,
    close_idle: Notify,
}

impl Pressure {
    /// Counts the connection idle until the guard drops (also when the
    /// connection's age runs out while it waits).
    fn enter_idle(&self) -> IdleGuard<'_> {
        self.idle.fetch_add(1, Ordering::AcqRel);
        IdleGuard(&self.idle)
    }
}

struct IdleGuard<'a>(&'a AtomicUsize);

impl Drop for IdleGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What one request asks for, copied out of the read buffer.
pub struct Request {
    pub method: Method,
    /// The path, without the query or fragment; never empty.
    pub path: String,
    pub query: String,
    /// A secret: never logged (see the `Debug` impl).
    pub authorization: Option<String>,
    /// An HTTP/1.0 request: keep-alive is granted only when asked for, and
    /// said so in the response.
    pub http10: bool,
    /// The connection stays open after the response.
    pub keep_alive: bool,
    /// `Content-Length` of a body to read and throw away, at most
    /// [`MAX_DISCARDED_BODY`].
    pub body: u64,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .field("http10", &self.http10)
            .field("keep_alive", &self.keep_alive)
            .field("body", &self.body)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Other,
}

/// The outcome of parsing the bytes read so far.
#[derive(Debug)]
pub enum Parsed {
    /// A whole head, `len` bytes long.
    Complete(Request, usize),
    Partial,
    /// Not a request we serve: answer with this status and close. The
    /// method, when the head got that far (a refused HEAD gets no body).
    Refused(u16, &'static str, Method),
}

/// Parses one request head at the start of `buf`. Pure and total: tested
/// on bytes alone (tests/properties.rs, fuzz/), it never panics.
pub fn parse_head(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Refused(431, "too many request headers\n", Method::Get)
        }
        Err(_) => return Parsed::Refused(400, "malformed request\n", Method::Get),
    };
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        _ => Method::Other,
    };
    let refuse = |status, why| Parsed::Refused(status, why, method);
    // Origin form (`/metrics?x`) or absolute form (`http://host/metrics`);
    // a fragment is not part of the resource.
    let target = req.path.unwrap_or("/");
    let target = target.split_once('#').map_or(target, |(t, _)| t);
    let target = match target.split_once("://") {
        Some((_, rest)) if !target.starts_with('/') => {
            // The authority ends at the path, or at the query if no path.
            rest.find(['/', '?']).map_or("", |i| &rest[i..])
        }
        _ => target,
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = if path.is_empty() { "/" } else { path };
    // Not origin form and not a URL ("*", "host:port", "http:/x"): nothing
    // this server has (found by fuzz/fuzz_targets/http_head.rs).
    if !path.starts_with('/') {
        return refuse(400, "request target must be a path or an http URL\n");
    }
    let http10 = req.version != Some(1);
    // "close" in any Connection header wins over "keep-alive" (RFC 9112 9.3).
    let (mut close, mut keep_alive_asked) = (false, false);
    let mut authorization = None;
    let mut body: Option<u64> = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_asked |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if h.name.eq_ignore_ascii_case("authorization") {
            // Two credentials: which one a proxy checked is unknowable.
            if authorization.is_some() {
                return refuse(400, "more than one Authorization header\n");
            }
            authorization = Some(String::from_utf8_lossy(h.value).into_owned());
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let Some(n) = content_length(h.value) else {
                return refuse(400, "bad Content-Length\n");
            };
            if body.is_some_and(|m| m != n) {
                return refuse(400, "conflicting Content-Length headers\n");
            }
            body = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return refuse(501, "request bodies are not accepted\n");
        }
    }
    let body = body.unwrap_or(0);
    if body > MAX_DISCARDED_BODY {
        return refuse(413, "request bodies are not accepted\n");
    }
    let keep_alive = !close && (!http10 || keep_alive_asked);
    Parsed::Complete(
        Request {
            method,
            path: path.to_string(),
            query: query.to_string(),
            authorization,
            http10,
            keep_alive,
            body,
        },
        len,
    )
}

/// A `Content-Length` value: digits only (no sign, no list), at most 18
/// of them so it cannot overflow. Anything looser could let a proxy in front
/// and this server disagree on where a body ends.
fn content_length(value: &[u8]) -> Option<u64> {
    let v = value.trim_ascii();
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// A response before it is written.
struct Response {
    status: u16,
    content_type: &'static str,
    body: Body,
    /// Headers beyond the standard ones (`WWW-Authenticate`, `Allow`).
    extra: Vec<(HeaderName, HeaderValue)>,
}

enum Body {
    Text(String),
    /// Streamed: rendered chunk by chunk as it is written, so a scrape
    /// never holds the whole page (see `exposition::CHUNK_SIZE`).
    Page(Page),
}

impl Body {
    fn len(&self) -> usize {
        match self {
            Body::Text(t) => t.len(),
            Body::Page(p) => p.len(),
        }
    }
}

fn respond(status: u16, content_type: &'static str, body: impl Into<String>) -> Response {
    Response {
        status,
        content_type,
        body: Body::Text(body.into()),
        extra: Vec::new(),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// One client connection: requests read, answered in order, until the
/// client closes it, asks to, or breaks the protocol.
struct Connection<'a, S> {
    io: S,
    shared: &'a Shared,
    web: Arc<WebConfig>,
    /// Slot pressure: closes the connection while it is idle.
    pressure: &'a Pressure,
    /// Bytes read and not yet consumed, in the first `filled` bytes; grows
    /// from [`FIRST_READ_BUFFER`] to [`MAX_REQUEST_HEAD`] as a head needs.
    buf: Vec<u8>,
    filled: usize,
    /// When the head being read must be whole: set at the accept for the
    /// first request, at the first byte of each later one.
    head_by: Option<Instant>,
    /// The response being written, reused between requests.
    out: String,
}

impl<'a, S: AsyncRead + AsyncWrite + Unpin> Connection<'a, S> {
    fn new(
        io: S,
        shared: &'a Shared,
        web: Arc<WebConfig>,
        pressure: &'a Pressure,
        first_head_by: Instant,
    ) -> Self {
        Connection {
            io,
            shared,
            web,
            pressure,
            buf: vec![0u8; FIRST_READ_BUFFER],
            filled: 0,
            head_by: Some(first_head_by),
            out: String::new(),
        }
    }

    async fn run(mut self) {
        loop {
            let (req, len) = match parse_head(&self.buf[..self.filled]) {
                Parsed::Complete(req, len) => (req, len),
                Parsed::Partial if self.filled == MAX_REQUEST_HEAD => {
                    self.refuse(431, "request head too large\n", Method::Get)
                        .await;
                    return;
                }
                Parsed::Partial => {
                    if self.filled == self.buf.len() {
                        let bigger = (self.buf.len() * 2).min(MAX_REQUEST_HEAD);
                        self.buf.resize(bigger, 0);
                    }
                    if !self.read_more().await {
                        return;
                    }
                    continue;
                }
                Parsed::Refused(status, why, method) => {
                    self.refuse(status, why, method).await;
                    return;
                }
            };
            self.consume(len);
            self.head_by = None;
            if !self.discard_body(req.body).await {
                return;
            }
            let (method, http10, keep_alive) = (req.method, req.http10, req.keep_alive);
            let resp = self.answer(req).await;
            let scrape = method == Method::Get && matches!(resp.body, Body::Page(_));
            let sent = self.write(resp, method, http10, keep_alive).await;
            if scrape && sent.is_ok() {
                // After the answer is out, so the poll never delays it.
                self.shared.scraped();
            }
            if sent.is_err() || !keep_alive {
                let _ = self.io.shutdown().await;
                return;
            }
        }
    }

    /// Answers a request that cannot be served, then closes gently: bytes
    /// the client already sent (a body, the rest of a long head) are read
    /// and dropped for a moment first. Closing with them unread makes the
    /// kernel send a reset, and some client stacks drop a response they
    /// have not read yet when one arrives (RFC 9112 9.6). Linux clients
    /// keep it, so the tests cannot show the difference.
    async fn refuse(&mut self, status: u16, why: &'static str, method: Method) {
        let r = respond(status, "text/plain", why);
        if self.write(r, method, false, false).await.is_err() {
            return;
        }
        let _ = self.io.shutdown().await;
        let _ = tokio::time::timeout(LINGER, async {
            let mut dropped = 0;
            while dropped < LINGER_BYTES {
                match self.io.read(&mut self.buf[..]).await {
                    Ok(n) if n > 0 => dropped += n,
                    _ => break,
                }
            }
        })
        .await;
    }

    /// Reads more bytes; false when the connection is over (EOF, error,
    /// or a head not whole by its deadline).
    async fn read_more(&mut self) -> bool {
        if self.filled > 0 && self.head_by.is_none() {
            self.head_by = Some(Instant::now() + HEADER_READ_TIMEOUT);
        }
        let read = self.io.read(&mut self.buf[self.filled..]);
        let n = match self.head_by {
            // Idle between requests: only the connection's age bounds it,
            // and slot pressure ends it.
            None => {
                let _idle = self.pressure.enter_idle();
                let r = tokio::select! {
                    r = read => Some(r),
                    _ = self.pressure.close_idle.notified() => None,
                };
                match r {
                    Some(r) => r,
                    None => {
                        tracing::debug!(
                            "every connection slot is taken; closing an idle connection"
                        );
                        return false;
                    }
                }
            }
            Some(by) => match tokio::time::timeout_at(by, read).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::debug!(
                        "request head not complete within the header read timeout; closing"
                    );
                    return false;
                }
            },
        };
        match n {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                if self.filled == 0 && self.head_by.is_none() {
                    self.head_by = Some(Instant::now() + HEADER_READ_TIMEOUT);
                }
                self.filled += n;
                true
            }
        }
    }

    /// Drops the first `len` buffered bytes (a pipelined next request
    /// moves to the front).
    fn consume(&mut self, len: usize) {
        self.buf.copy_within(len..self.filled, 0);
        self.filled -= len;
    }

    /// Reads and drops a request body of `len` bytes (at most
    /// [`MAX_DISCARDED_BODY`]), within the header read timeout.
    async fn discard_body(&mut self, len: u64) -> bool {
        let mut left = len as usize;
        let by = Instant::now() + HEADER_READ_TIMEOUT;
        loop {
            let here = left.min(self.filled);
            self.consume(here);
            left -= here;
            if left == 0 {
                return true;
            }
            match tokio::time::timeout_at(by, self.io.read(&mut self.buf[..])).await {
                Ok(Ok(n)) if n > 0 => self.filled = n,
                _ => return false,
            }
        }
    }

    /// Rate limit and basic auth from the web config (every path, health
    /// checks included, as exporter-toolkit does), then the handler.
    async fn answer(&self, mut req: Request) -> Response {
        if !self.web.allow_request() {
            return respond(429, "text/plain", "rate limit exceeded\n");
        }
        match self
            .web
            .clone()
            .authorize_async(req.authorization.take())
            .await
        {
            Ok(()) => handle(self.shared, &req),
            Err(_) => {
                let mut r = respond(401, "text/plain", "unauthorized\n");
                r.extra
                    .extend(crate::webconfig::unauthorized_response_headers());
                r
            }
        }
    }

    /// Writes `resp` (its head alone for HEAD), then flushes (TLS buffers).
    /// An error means the connection must close.
    async fn write(
        &mut self,
        resp: Response,
        method: Method,
        http10: bool,
        keep_alive: bool,
    ) -> std::io::Result<()> {
        use std::fmt::Write as _;
        let out = &mut self.out;
        out.clear();
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\ndate: {}\r\n",
            resp.status,
            reason(resp.status),
            resp.content_type,
            resp.body.len(),
            httpdate::fmt_http_date(std::time::SystemTime::now()),
        );
        // HTTP/1.1 clients keep the connection unless told; HTTP/1.0
        // clients that asked for keep-alive are told it is granted.
        if !keep_alive {
            out.push_str("connection: close\r\n");
        } else if http10 {
            out.push_str("connection: keep-alive\r\n");
        }
        for (k, v) in resp.extra.iter().chain(self.web.headers()) {
            out.push_str(k.as_str());
            out.push_str(": ");
            out.push_str(v.to_str().unwrap_or(""));
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        // The head and the first stretch of body go out in one write; a
        // page is rendered straight into the write buffer.
        match resp.body {
            _ if method == Method::Head => {}
            Body::Text(t) => out.push_str(&t),
            Body::Page(mut page) => {
                let head = out.len();
                let mut sent = 0;
                while page.next_chunk_into(out) {
                    self.io.write_all(out.as_bytes()).await?;
                    sent += out.len();
                    out.clear();
                }
                // Content-Length was the page's computed length: a page
                // that rendered otherwise would leave the client waiting
                // for bytes or reading ours as the next response.
                if sent + out.len() != head + page.len() {
                    debug_assert!(
                        false,
                        "page rendered {sent} bytes, announced {}",
                        page.len()
                    );
                    return Err(std::io::Error::other(
                        "page length differs from Content-Length",
                    ));
                }
            }
        }
        self.io.write_all(out.as_bytes()).await?;
        // A connection keeps a buffer the size of a small page between
        // requests; a large page's buffer is not held while idle.
        if out.capacity() > KEPT_WRITE_BUFFER {
            *out = String::new();
        }
        self.io.flush().await
    }
}

fn handle(shared: &Shared, req: &Request) -> Response {
    if req.method == Method::Other {
        let mut r = respond(405, "text/plain", "only GET and HEAD\n");
        r.extra
            .push((http::header::ALLOW, HeaderValue::from_static("GET, HEAD")));
        return r;
    }
    let path = req.path.as_str();
    if path == shared.config.telemetry_path {
        return metrics(shared.page(None));
    }
    match path {
        "/" => respond(200, "text/html; charset=utf-8", shared.landing_page()),
        "/-/healthy" => respond(200, "text/plain", "OK\n"),
        "/-/ready" => {
            if shared.ready() {
                respond(200, "text/plain", "ready\n")
            } else {
                respond(503, "text/plain", "not every node has been polled yet\n")
            }
        }
        "/sd" => respond(200, "application/json", shared.service_discovery()),
        "/scrape" => scrape(shared, &req.query),
        _ => respond(404, "text/plain", "not found\n"),
    }
}

/// A metric page, streamed.
fn metrics(page: Page) -> Response {
    Response {
        status: 200,
        content_type: TEXT_FORMAT,
        body: Body::Page(page),
        extra: Vec::new(),
    }
}

/// `/scrape?target=host:port`: one known node's series. A target the
/// exporter does not already poll is refused: this endpoint must never make
/// the exporter connect somewhere new with its credentials.
fn scrape(shared: &Shared, query: &str) -> Response {
    let target = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "target")
        .map(|(_, v)| v.into_owned());
    let Some(target) = target else {
        return respond(400, "text/plain", "missing ?target=host:port\n");
    };
    // Accept the forms Prometheus relabelling produces: host:port or a URL.
    let addr = match crate::target::parse_addr(&target) {
        Ok(p) => p.addr,
        Err(_) => target.clone(),
    };
    if !shared.knows(&addr) {
        return respond(
            404,
            "text/plain",
            "unknown target: only nodes this exporter already polls can be scraped (see /sd)\n",
        );
    }
    metrics(shared.page(Some(addr)))
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(bytes: &[u8]) -> (Request, usize) {
        match parse_head(bytes) {
            Parsed::Complete(r, n) => (r, n),
            other => panic!("{other:?}"),
        }
    }

    fn refused(bytes: &[u8]) -> u16 {
        match parse_head(bytes) {
            Parsed::Refused(status, _, _) => status,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_scrape_request_parses_and_keeps_the_connection() {
        let head = b"GET /metrics?x=1&target=a HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nAuthorization: Basic YTpi\r\n\r\n";
        let (r, n) = complete(head);
        assert_eq!(n, head.len());
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, "/metrics");
        assert_eq!(r.query, "x=1&target=a");
        assert_eq!(r.authorization.as_deref(), Some("Basic YTpi"));
        assert!(r.keep_alive);
        assert_eq!(r.body, 0);
    }

    #[test]
    fn only_the_first_of_pipelined_heads_is_consumed() {
        let two = b"HEAD / HTTP/1.1\r\n\r\nGET /sd HTTP/1.1\r\n\r\n";
        let (r, n) = complete(two);
        assert_eq!((r.method, r.path.as_str(), n), (Method::Head, "/", 19));
        let (r, _) = complete(&two[n..]);
        assert_eq!(r.path, "/sd");
    }

    #[test]
    fn close_wins_over_keep_alive() {
        let both = b"GET / HTTP/1.1\r\nConnection: close, keep-alive\r\n\r\n";
        assert!(!complete(both).0.keep_alive);
        let two = b"GET / HTTP/1.0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n";
        assert!(!complete(two).0.keep_alive);
    }

    #[test]
    fn content_length_is_digits_only() {
        assert_eq!(content_length(b" 17 "), Some(17));
        for bad in [
            &b"+5"[..],
            b"-1",
            b"5, 5",
            b"0x10",
            b"",
            b"5\xc2\xa0",
            b"9999999999999999999",
        ] {
            assert_eq!(content_length(bad), None, "{bad:?}");
        }
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello"),
            400
        );
    }

    #[test]
    fn a_refused_head_request_is_answered_without_a_body() {
        let head = b"HEAD / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(
            parse_head(head),
            Parsed::Refused(501, _, Method::Head)
        ));
    }

    #[test]
    fn two_authorization_headers_are_refused_and_never_printed() {
        let two =
            b"GET / HTTP/1.1\r\nAuthorization: Basic YTpi\r\nAuthorization: Basic Yzpk\r\n\r\n";
        assert_eq!(refused(two), 400);
        let (r, _) = complete(b"GET / HTTP/1.1\r\nAuthorization: Basic c2VjcmV0\r\n\r\n");
        let shown = format!("{r:?}");
        assert!(
            !shown.contains("c2VjcmV0") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn connection_tokens_decide_keep_alive_per_version() {
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").0.keep_alive);
        assert!(
            complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(
            !complete(b"GET / HTTP/1.1\r\nConnection: TE, close\r\n\r\n")
                .0
                .keep_alive
        );
    }

    #[test]
    fn absolute_form_targets_keep_their_path() {
        let (r, _) = complete(b"GET http://h:9121/scrape?target=a HTTP/1.1\r\n\r\n");
        assert_eq!((r.path.as_str(), r.query.as_str()), ("/scrape", "target=a"));
        let (r, _) = complete(b"GET http://h:9121 HTTP/1.1\r\n\r\n");
        assert_eq!(r.path, "/");
        // No path, a query with a slash in it.
        let (r, _) = complete(b"GET http://h:9121?target=a/b HTTP/1.1\r\n\r\n");
        assert_eq!((r.path.as_str(), r.query.as_str()), ("/", "target=a/b"));
        // A fragment is not part of the path or the query.
        let (r, _) = complete(b"GET /scrape?target=a#x HTTP/1.1\r\n\r\n");
        assert_eq!((r.path.as_str(), r.query.as_str()), ("/scrape", "target=a"));
        // A path that merely contains "://" is not absolute form.
        let (r, _) = complete(b"GET /a://b HTTP/1.1\r\n\r\n");
        assert_eq!(r.path, "/a://b");
    }

    #[test]
    fn targets_that_are_neither_a_path_nor_a_url_are_refused() {
        // The fuzzer's input: a scheme without "//", read as a path before.
        let head = b"POST http:/o/h:9121/sd?x=1#f HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(refused(head), 400);
        assert_eq!(refused(b"OPTIONS * HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(refused(b"GET localhost:9121 HTTP/1.1\r\n\r\n"), 400);
    }

    #[test]
    fn incomplete_heads_wait_for_more() {
        for cut in [&b""[..], b"GE", b"GET /metrics HTTP/1.1\r\nHost: h\r\n"] {
            assert!(matches!(parse_head(cut), Parsed::Partial), "{cut:?}");
        }
    }

    #[test]
    fn bodies_are_discarded_when_small_and_refused_otherwise() {
        let (r, _) = complete(b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!((r.method, r.body), (Method::Other, 5));
        let big = format!(
            "GET / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_DISCARDED_BODY + 1
        );
        assert_eq!(refused(big.as_bytes()), 413);
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            501
        );
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            400
        );
    }

    #[test]
    fn malformed_and_oversized_heads_are_refused() {
        assert_eq!(refused(b"GET / HTTP/1.1\r\nbad header\r\n\r\n"), 400);
        assert_eq!(refused(b"\x00\x01 / HTTP/1.1\r\n\r\n"), 400);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(refused(&many), 431);
    }
}

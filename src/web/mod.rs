//! The HTTP side: `/metrics`, `/scrape`, `/sd`, health, readiness and a
//! landing page, served with hyper. Every handler reads stored snapshots;
//! none touches Redis.
//!
//! - `slots.rs`: connection slots, head and write deadlines, eviction.
//! - `guard.rs`: per-source rate limits and password-failure slowing.
//! - `pages.rs`: rendered pages shared between connections, memory bound.
//! - `config.rs`: `--web.config.file` (TLS, basic auth, headers, reload).
//! - `insight.rs`: the `/insight` report page (HTML, no script).
//!
//! The strictness a scrape endpoint can afford: GET and HEAD only (405),
//! no request bodies beyond a small one thrown away (413, 501 for
//! chunked), request heads of at most [`MAX_REQUEST_HEAD`] bytes and
//! [`MAX_HEADERS`] fields (431; hyper answers these), exactly one `Host`
//! on HTTP/1.1 (400, RFC 9112 §3.2).

pub mod config;
pub mod guard;
pub mod html;
pub mod insight;
pub mod pages;
pub mod slots;

use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use config::AuthError;
use guard::Guard;
use pages::Pages;
use slots::{Guarded, Slots, Track, MAX_CONNECTION_AGE};

/// Largest request head accepted (hyper's read buffer; its minimum is
/// 8 KiB); a scrape request is a few hundred bytes.
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// Most request header fields; Prometheus sends five or six.
pub const MAX_HEADERS: usize = 64;
/// Largest request body tolerated (and not read): GET and HEAD carry none;
/// a larger declared one is refused with 413.
pub const MAX_DISCARDED_BODY: u64 = 16 * 1024;
/// Kernel send buffer of an accepted connection (Linux doubles it). Left to
/// autotuning it grows to 4 MiB, and a client that reads nothing makes the
/// kernel copy and hold that much of each page it asks for: CPU and memory
/// an attacker gets for free. 512 KiB in flight still moves 5 MB/s over a
/// 100 ms round trip.
const SEND_BUFFER: usize = 256 * 1024;
/// Listen backlog: connections the kernel completes before the accept
/// loop takes them. tokio's default (1024) overflowed under a flood of 400
/// new connections a second on a loaded host, and a dropped SYN costs a
/// scraper a 1 s retransmission; the kernel caps it at `somaxconn` (4096
/// on current kernels).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds the HTTP listener with [`LISTEN_BACKLOG`].
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // A restarted exporter can rebind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Pause after a failed accept (EMFILE and friends) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the HTTP side needs from the exporter, implemented by
/// `daemon::Shared`: it only reads snapshots and settings, and never
/// reaches into the daemon (a trait keeps that visible).
pub trait Site: Send + Sync + 'static {
    /// The web config for the next connection or request.
    fn web(&self) -> Arc<config::WebConfig>;
    /// `--web.telemetry-path`.
    fn telemetry_path(&self) -> &str;
    /// `--web.compression`.
    fn compression(&self) -> bool;
    /// A snapshot of every node (`None`) or one (`/scrape`), and the
    /// topology it was rendered with.
    fn page_and_topology(
        &self,
        only_addr: Option<String>,
    ) -> (
        crate::expose::Page,
        Arc<Vec<crate::expose::topology::TopoNode>>,
    );
    /// Whether the exporter polls this node (`/scrape` serves no other).
    fn knows(&self, addr: &str) -> bool;
    /// A `/scrape` target the exporter does not poll: starts polling it if
    /// `scrape.allowed-networks` allows, returning the node and how long to
    /// wait for its first poll; else why not.
    fn adopt(
        &self,
        target: &str,
    ) -> Result<(Arc<crate::expose::state::NodeState>, std::time::Duration), &'static str>;
    /// A `/scrape` of this node is being answered.
    fn scraped(&self, addr: &str);
    /// Every known node has been polled once (`/-/ready`).
    fn ready(&self) -> bool;
    /// `/sd`: Prometheus HTTP service-discovery JSON.
    fn service_discovery(&self) -> String;
    /// `/`: the landing page.
    fn landing_page(&self) -> String;
    /// `/insight`: the nodes' last keyspace reports, policies and shards.
    fn insight(&self) -> crate::expose::insight::InsightView;
}

/// What every connection of one server shares.
struct Server {
    shared: Arc<dyn Site>,
    slots: Arc<Slots>,
    guard: Guard,
    pages: Pages,
    /// The last `/insight` page and when it was rendered (see
    /// [`INSIGHT_PAGE_REUSE`]).
    insight: std::sync::Mutex<Option<(std::time::Instant, Bytes)>>,
}

/// How long a rendered `/insight` page answers every request: a page of a
/// 4096-node fleet takes ~150 ms to render on the HTTP thread, and without
/// reuse any client allowed in could keep that thread busy with it and
/// delay the scrapes. Reports change once per pass (minutes); a second
/// of reuse costs nothing in freshness.
const INSIGHT_PAGE_REUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// Accepts connections until `stop` turns true.
pub async fn serve(listener: TcpListener, shared: Arc<dyn Site>, mut stop: watch::Receiver<bool>) {
    let server = Arc::new(Server {
        shared,
        slots: Arc::new(Slots::default()),
        guard: Guard::default(),
        pages: Pages::default(),
        insight: std::sync::Mutex::new(None),
    });
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        // IPv4 clients of a dual-stack socket count as their IPv4 address.
        let peer_ip = peer.ip().to_canonical();
        let Some(slot) = server.slots.admit(peer_ip) else {
            tracing::debug!(peer = %peer_ip, "no connection slot; closing a new connection");
            continue;
        };
        // A long page goes out in several writes, the last one short; Nagle
        // would hold it until the client ACKs the previous one (40 ms with
        // delayed ACKs).
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
        let server = server.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let track = slot.track.clone();
            tokio::select! {
                _ = connection(server, stream, track.clone(), stop) => {}
                _ = track.killed() => {}
            }
            drop(slot);
        });
    }
}

/// One connection: TLS per the web config current at accept, then hyper
/// until the client leaves, a deadline passes, the connection's age is
/// reached (after the response in flight) or the server stops.
async fn connection(
    server: Arc<Server>,
    stream: tokio::net::TcpStream,
    track: Arc<Track>,
    mut stop: watch::Receiver<bool>,
) {
    let tls_config = server.shared.web();
    let stream = match config::accept(&tls_config, Guarded::new(stream, track.clone())).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            return;
        }
    };
    drop(tls_config);
    let peer = track.peer;
    let service = {
        let track = track.clone();
        hyper::service::service_fn(move |req| {
            let (server, track) = (server.clone(), track.clone());
            async move { Ok::<_, Infallible>(answer(&server, &track, peer, req).await) }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_buf_size(MAX_REQUEST_HEAD)
        .max_headers(MAX_HEADERS)
        // Heads are timed by `Guarded`, which does not count the idle time
        // between keep-alive requests (hyper's timer does).
        .header_read_timeout(None)
        .half_close(false);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let age = tokio::time::sleep(MAX_CONNECTION_AGE);
    tokio::pin!(age);
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "HTTP connection ended");
                }
                return;
            }
            _ = &mut age, if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            r = stop.changed(), if !closing => {
                closing = true;
                if r.is_ok() {
                    conn.as_mut().graceful_shutdown();
                } else {
                    return;
                }
            }
        }
    }
}

/// Largest slice of a page handed to hyper at a time. hyper asks for the
/// next one only when it has written most of the last, so a connection
/// that stops reading holds its page through the body (counted by
/// `pages.rs`), not through copies queued in hyper.
const BODY_CHUNK: usize = 64 * 1024;

/// A response body that tells the connection's track when it is done
/// (dropped: written, or abandoned), so the time until the next request
/// counts as idle, not as a late head.
pub struct TrackedBody {
    /// What is left to send.
    rest: Bytes,
    /// The page `rest` is cut from, kept alive (and counted) while sent.
    page: Option<Arc<pages::SharedPage>>,
    track: Arc<Track>,
    /// The request this answers (`Track::request_started`).
    request: u64,
    done: bool,
}

impl TrackedBody {
    /// At the end of the body, or when it is dropped before.
    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            self.page = None;
            self.track.response_done(self.request);
        }
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let me = self.get_mut();
        if me.rest.is_empty() {
            me.finish();
            return Poll::Ready(None);
        }
        let chunk = me.rest.split_to(me.rest.len().min(BODY_CHUNK));
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

/// A response before the connection's headers are added.
struct Answer {
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
    /// The shared page `body` is, for a metric page.
    page: Option<Arc<pages::SharedPage>>,
    headers: Vec<(header::HeaderName, HeaderValue)>,
    /// Close the connection after this response.
    close: bool,
}

fn text(status: StatusCode, body: &'static str) -> Answer {
    Answer {
        status,
        content_type: "text/plain; charset=utf-8",
        body: Bytes::from_static(body.as_bytes()),
        page: None,
        headers: Vec::new(),
        close: false,
    }
}

fn owned(status: StatusCode, content_type: &'static str, body: String) -> Answer {
    Answer {
        status,
        content_type,
        body: Bytes::from(body),
        page: None,
        headers: Vec::new(),
        close: false,
    }
}

/// Answers one request: protocol checks, then rate limit and basic auth
/// (every path, health checks included, as exporter-toolkit does), then
/// the handler. The web config is the one current now, so a reload applies
/// to open connections at their next request.
async fn answer(
    server: &Server,
    track: &Arc<Track>,
    peer: IpAddr,
    req: Request<Incoming>,
) -> Response<TrackedBody> {
    let request = track.request_started();
    let web = server.shared.web();
    let a = match refuse_protocol(&req) {
        Some(a) => a,
        None => match authorize(server, &web, peer, &req).await {
            Some(refused) => refused,
            None => {
                if req.uri().path() == "/scrape" {
                    if let Some(refused) = adopt_unknown(server, &req).await {
                        refused
                    } else {
                        route(server, track, &req)
                    }
                } else {
                    route(server, track, &req)
                }
            }
        },
    };
    let mut resp = Response::new(TrackedBody {
        rest: a.body,
        page: a.page,
        track: track.clone(),
        request,
        done: false,
    });
    *resp.status_mut() = a.status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    for (k, v) in a.headers.into_iter().chain(web.headers().iter().cloned()) {
        h.append(k, v);
    }
    if a.close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// What the request head alone decides.
fn refuse_protocol(req: &Request<Incoming>) -> Option<Answer> {
    let hosts = req.headers().get_all(header::HOST).iter().count();
    if hosts > 1 || (hosts == 0 && req.version() == Version::HTTP_11) {
        let mut a = text(
            StatusCode::BAD_REQUEST,
            "exactly one Host header is required\n",
        );
        a.close = true;
        return Some(a);
    }
    if req.headers().contains_key(header::TRANSFER_ENCODING) {
        let mut a = text(
            StatusCode::NOT_IMPLEMENTED,
            "request bodies are not accepted\n",
        );
        a.close = true;
        return Some(a);
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if declared > MAX_DISCARDED_BODY {
        let mut a = text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request bodies are not accepted\n",
        );
        a.close = true;
        return Some(a);
    }
    None
}

/// Rate limit and basic auth; `Some` is the refusal to send. See
/// `guard.rs` for who draws on which bucket.
async fn authorize(
    server: &Server,
    web: &Arc<config::WebConfig>,
    peer: IpAddr,
    req: &Request<Incoming>,
) -> Option<Answer> {
    let too_many = || {
        let mut a = text(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded\n");
        a.headers
            .push((header::RETRY_AFTER, HeaderValue::from_static("1")));
        a
    };
    let unauthorized = || {
        let mut a = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
        a.headers.extend(config::unauthorized_response_headers());
        a
    };
    if !web.basic_auth_enabled() {
        return (!server.guard.allow_unauthenticated(peer, web.rate_limit())).then(too_many);
    }
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let verdict = match web.authorize_cached(header.as_deref()) {
        Some(v) => v,
        None => {
            if !server.guard.charge_password_check(peer) {
                return Some(too_many());
            }
            let v = web.clone().authorize_async(header).await;
            // Only a wrong password keeps its charge.
            if v != Err(AuthError::Denied) {
                server.guard.refund_password_check(peer);
            }
            v
        }
    };
    match verdict {
        Ok(()) => (!web.allow_request()).then(too_many),
        Err(AuthError::Busy) => Some(too_many()),
        Err(_) => {
            if !server.guard.allow_unauthenticated(peer, web.rate_limit()) {
                return Some(too_many());
            }
            Some(unauthorized())
        }
    }
}

fn route(server: &Server, track: &Arc<Track>, req: &Request<Incoming>) -> Answer {
    let shared = &server.shared;
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut a = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        a.headers
            .push((header::ALLOW, HeaderValue::from_static("GET, HEAD")));
        return a;
    }
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    if path == shared.telemetry_path() {
        return metrics(server, track, req, None);
    }
    match path {
        "/" => owned(
            StatusCode::OK,
            "text/html; charset=utf-8",
            shared.landing_page(),
        ),
        "/-/healthy" => text(StatusCode::OK, "OK\n"),
        "/-/ready" => {
            if shared.ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not every node has been polled yet\n",
                )
            }
        }
        "/sd" => owned(
            StatusCode::OK,
            "application/json",
            shared.service_discovery(),
        ),
        "/scrape" => scrape(server, track, req, query),
        "/insight" => insight_page(server),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// `/insight`, sent with its Content-Security-Policy (see
/// `insight::PAGE_POLICY` for why this one) and without caching: with
/// `insight.show-key-names` it names keys.
fn insight_page(server: &Server) -> Answer {
    let body = {
        let mut cached = server.insight.lock().unwrap_or_else(|e| e.into_inner());
        match &*cached {
            Some((at, page)) if at.elapsed() < INSIGHT_PAGE_REUSE => page.clone(),
            _ => {
                let page = Bytes::from(insight::render(&server.shared.insight()));
                *cached = Some((std::time::Instant::now(), page.clone()));
                page
            }
        }
    };
    let mut a = owned(StatusCode::OK, "text/html; charset=utf-8", String::new());
    a.body = body;
    a.headers.extend([
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(insight::CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]);
    a
}

/// A metric page, shared with the other connections sending the same
/// snapshot, gzipped when the client accepts it.
fn metrics(
    server: &Server,
    track: &Arc<Track>,
    req: &Request<Incoming>,
    only: Option<String>,
) -> Answer {
    let shared = &server.shared;
    let (fresh, topology) = shared.page_and_topology(only.clone());
    let page = server.pages.get(only, fresh, topology);
    page.sent_by(track);
    let gzip = shared.compression() && accepts_gzip(req);
    let mut a = Answer {
        status: StatusCode::OK,
        content_type: TEXT_FORMAT,
        body: if gzip {
            page.gzip()
        } else {
            page.plain.clone()
        },
        page: Some(page),
        headers: vec![(header::VARY, HeaderValue::from_static("Accept-Encoding"))],
        close: false,
    };
    if gzip {
        a.headers
            .push((header::CONTENT_ENCODING, HeaderValue::from_static("gzip")));
    }
    a
}

/// Whether `Accept-Encoding` lists gzip (or `*`) with a weight above 0.
pub fn accepts_gzip(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(accepts_gzip_value)
}

/// One `Accept-Encoding` value (pure, for tests).
pub fn accepts_gzip_value(value: &str) -> bool {
    value.split(',').any(|item| {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        if !coding.eq_ignore_ascii_case("gzip") && coding != "*" {
            return false;
        }
        parts.all(|p| {
            let p = p.trim();
            match p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")) {
                Some(q) => q.trim().parse::<f64>().is_ok_and(|q| q > 0.0),
                None => true,
            }
        })
    })
}

/// The `target` of a `/scrape` query and the node address it names.
fn scrape_target(query: &str) -> Option<(String, String)> {
    let target = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "target")
        .map(|(_, v)| v.into_owned())?;
    // Accept the forms Prometheus relabelling produces: host:port or a URL.
    let addr = match crate::redis::target::parse_addr(&target) {
        Ok(p) => p.addr,
        Err(_) => target.clone(),
    };
    Some((target, addr))
}

/// Before a `/scrape` of a node the exporter does not poll: with
/// `scrape.allowed-networks` set and the node inside, the node joins the
/// poll set and the answer waits for its first poll (as the peer answers
/// from an immediate connection). Refusals are answered by `scrape` (404).
async fn adopt_unknown(server: &Server, req: &Request<Incoming>) -> Option<Answer> {
    let (target, addr) = scrape_target(req.uri().query().unwrap_or(""))?;
    if server.shared.knows(&addr) {
        return None;
    }
    let Ok((node, wait)) = server.shared.adopt(&target) else {
        return None;
    };
    let deadline = tokio::time::Instant::now() + wait;
    while !node.status().polled_once && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    None
}

/// `/scrape?target=host:port`: one known node's series. A target the
/// exporter does not already poll is refused, unless it lies in
/// `scrape.allowed-networks` (then `adopt_unknown` added it): this endpoint
/// never makes the exporter connect anywhere the operator did not allow
/// with its credentials.
fn scrape(server: &Server, track: &Arc<Track>, req: &Request<Incoming>, query: &str) -> Answer {
    let Some((target, addr)) = scrape_target(query) else {
        return text(StatusCode::BAD_REQUEST, "missing ?target=host:port\n");
    };
    if !server.shared.knows(&addr) {
        let why = server
            .shared
            .adopt(&target)
            .err()
            .unwrap_or("unknown target");
        return owned(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            format!("{why}\n"),
        );
    }
    server.shared.scraped(&addr);
    metrics(server, track, req, Some(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_accepted_unless_weighted_zero() {
        for yes in [
            "gzip",
            "deflate, gzip",
            "GZIP;q=0.5",
            "*",
            "br;q=1, gzip ; q=0.1",
        ] {
            assert!(accepts_gzip_value(yes), "{yes}");
        }
        for no in [
            "",
            "identity",
            "deflate",
            "gzip;q=0",
            "gzip; q=0.0",
            "x-gzip",
        ] {
            assert!(!accepts_gzip_value(no), "{no}");
        }
    }
}

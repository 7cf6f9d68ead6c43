//! The HTTP side: `/metrics`, `/scrape`, `/sd`, health, readiness and a
//! landing page. Every handler reads stored snapshots; none touches Redis.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};

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
/// between requests on a keep-alive connection is not counted (see
/// [`Heads`]).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head accepted (hyper's read buffer); a scrape request is
/// a few hundred bytes.
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// Upper bound on one connection's life, so an idle keep-alive client
/// cannot pin a slot forever. Above the scrape intervals people use (15 s
/// to 2 min), so Prometheus keeps reusing its connection between scrapes.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A response body: small responses whole, metric pages streamed.
type Body = Either<Full<Bytes>, Page>;

/// A metric page is rendered chunk by chunk as hyper writes it out, so a
/// scrape never holds the whole page (see `exposition::CHUNK_SIZE`).
/// Its length is known up front, so it goes with a Content-Length.
impl http_body::Body for Page {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        // Rendering never waits: each chunk is computed from the snapshot.
        let chunk = self.get_mut().next_chunk();
        Poll::Ready(chunk.map(|c| Ok(Frame::data(Bytes::from(c)))))
    }

    /// The exact length, so hyper sends Content-Length rather than chunked
    /// framing (cheaper for clients to read).
    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len() as u64)
    }
}

/// Accepts connections until `stop` turns true.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
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
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        // A streamed page goes out in several writes, the last one short.
        // Nagle would hold that write until the client ACKs the previous
        // one, and a client delaying its ACK stalls the scrape for 40 ms
        // (p90 47 ms at 100 nodes before this).
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            // The web config current when the connection arrived serves all
            // of it; a reload applies to the next connection.
            let web = shared.web();
            let stream = match crate::webconfig::accept(&web, stream).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
            };
            let heads = Arc::new(Heads::awaiting_first());
            let service_heads = heads.clone();
            let service = service_fn(move |req| {
                // hyper calls the service once a request's head is whole.
                service_heads.completed();
                let shared = shared.clone();
                let web = web.clone();
                async move { Ok::<_, Infallible>(guarded(&shared, web, req).await) }
            });
            // No hyper header_read_timeout: it also runs while a keep-alive
            // connection waits for its next request, so every scrape
            // interval over 10 s cost a new connection (and TLS handshake)
            // per scrape. `Heads` times the head alone.
            let conn = http1::Builder::new()
                .header_read_timeout(None)
                .max_buf_size(MAX_REQUEST_HEAD)
                .serve_connection(
                    TokioIo::new(Watched {
                        inner: stream,
                        heads: heads.clone(),
                    }),
                    service,
                );
            let _ = tokio::time::timeout(MAX_CONNECTION_AGE, async {
                tokio::select! {
                    biased;
                    _ = conn => {}
                    _ = heads.overdue() => {
                        tracing::debug!("request head not complete within the header read timeout; closing");
                    }
                }
            })
            .await;
            drop(permit);
        });
    }
}

/// Request heads begun and completed on one connection, for
/// [`HEADER_READ_TIMEOUT`]. A head begins with the first bytes read while
/// no head is pending (the connection's first one at accept) and completes
/// when hyper calls the service. Only a pending head is timed, so a
/// keep-alive connection may wait for its next request as long as
/// [`MAX_CONNECTION_AGE`] allows, and a head that arrives whole in one read
/// (every scrape) never arms a timer.
struct Heads {
    begun: AtomicU64,
    done: AtomicU64,
    began: Notify,
    finished: Notify,
}

impl Heads {
    fn awaiting_first() -> Heads {
        Heads {
            begun: AtomicU64::new(1),
            done: AtomicU64::new(0),
            began: Notify::new(),
            finished: Notify::new(),
        }
    }

    fn pending(&self) -> Option<u64> {
        let begun = self.begun.load(Ordering::Acquire);
        (self.done.load(Ordering::Acquire) < begun).then_some(begun)
    }

    /// Bytes arrived: they begin a head unless one is pending already.
    fn read_some(&self) {
        if self.pending().is_none() {
            self.begun.fetch_add(1, Ordering::AcqRel);
            self.began.notify_one();
        }
    }

    fn completed(&self) {
        self.done
            .store(self.begun.load(Ordering::Acquire), Ordering::Release);
        self.finished.notify_one();
    }

    /// Completes when a head has been pending for [`HEADER_READ_TIMEOUT`].
    async fn overdue(&self) {
        // (head number, its deadline): a spurious wake-up keeps the deadline.
        let mut timing: Option<(u64, tokio::time::Instant)> = None;
        loop {
            let Some(head) = self.pending() else {
                timing = None;
                self.began.notified().await;
                continue;
            };
            let deadline = match timing {
                Some((h, d)) if h == head => d,
                _ => {
                    let d = tokio::time::Instant::now() + HEADER_READ_TIMEOUT;
                    timing = Some((head, d));
                    d
                }
            };
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    if self.pending() == Some(head) {
                        return;
                    }
                }
                _ = self.finished.notified() => {}
            }
        }
    }
}

/// A connection's stream, telling [`Heads`] when bytes arrive.
struct Watched<S> {
    inner: S,
    heads: Arc<Heads>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.heads.read_some();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Rate limit and basic auth from the web config (every path, health
/// checks included, as exporter-toolkit does), then the handler; the
/// config's extra headers go on every response.
async fn guarded(shared: &Shared, web: Arc<WebConfig>, req: Request<Incoming>) -> Response<Body> {
    let mut resp = if !web.allow_request() {
        respond(
            StatusCode::TOO_MANY_REQUESTS,
            "text/plain",
            "rate limit exceeded\n",
        )
    } else {
        let header = req
            .headers()
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or("").to_owned());
        match web.clone().authorize_async(header).await {
            Ok(()) => handle(shared, req),
            Err(_) => {
                let mut r = respond(StatusCode::UNAUTHORIZED, "text/plain", "unauthorized\n");
                for (k, v) in crate::webconfig::unauthorized_response_headers() {
                    r.headers_mut().insert(k, v);
                }
                r
            }
        }
    };
    for (k, v) in web.headers() {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Either::Left(Full::new(body.into())));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

/// A metric page, streamed.
fn metrics(page: Page) -> Response<Body> {
    let mut r = Response::new(Either::Right(page));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
    r
}

fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        let mut r = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET and HEAD\n",
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    let mut resp = if path == shared.config.telemetry_path {
        metrics(shared.page(None))
    } else {
        match path {
            "/" => respond(
                StatusCode::OK,
                "text/html; charset=utf-8",
                shared.landing_page(),
            ),
            "/-/healthy" => respond(StatusCode::OK, "text/plain", "OK\n"),
            "/-/ready" => {
                if shared.ready() {
                    respond(StatusCode::OK, "text/plain", "ready\n")
                } else {
                    respond(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        "not every node has been polled yet\n",
                    )
                }
            }
            "/sd" => respond(
                StatusCode::OK,
                "application/json",
                shared.service_discovery(),
            ),
            "/scrape" => scrape(shared, query),
            _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        }
    };
    if head {
        *resp.body_mut() = Either::Left(Full::new(Bytes::new()));
    }
    resp
}

/// `/scrape?target=host:port`: one known node's series. A target the
/// exporter does not already poll is refused: this endpoint must never make
/// the exporter connect somewhere new with its credentials.
fn scrape(shared: &Shared, query: &str) -> Response<Body> {
    let target = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "target")
        .map(|(_, v)| v.into_owned());
    let Some(target) = target else {
        return respond(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "missing ?target=host:port\n",
        );
    };
    // Accept the forms Prometheus relabelling produces: host:port or a URL.
    let addr = match crate::target::parse_addr(&target) {
        Ok(p) => p.addr,
        Err(_) => target.clone(),
    };
    if !shared.knows(&addr) {
        return respond(
            StatusCode::NOT_FOUND,
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

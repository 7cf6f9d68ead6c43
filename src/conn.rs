//! Opening a connection to a node: TCP or Unix socket, optional TLS, and a
//! byte budget on everything the server sends back.
//!
//! We build the stream ourselves and hand it to the redis crate's
//! multiplexed connection (which does AUTH/SELECT and RESP framing). Owning
//! the stream gives two things the crate does not: full control of TLS
//! (CA file, client certificate, server name override, an explicit insecure
//! mode), and a cap on reply size, so a hostile or broken server declaring
//! a multi-gigabyte reply cannot make the exporter buffer it.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use redis::aio::MultiplexedConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::{PollError, Reason};
use crate::target::{Endpoint, Target};

/// Most bytes a node may send during one poll. The largest legitimate reply
/// is CLUSTER NODES of a 1000-node cluster (~200 KB) or INFO with thousands
/// of commandstats lines (~1 MB); 8 MiB leaves ample room while bounding
/// what a hostile server can make us hold per node.
pub const MAX_REPLY_BYTES: usize = 8 * 1024 * 1024;

/// Bytes a node may still send in the current poll.
#[derive(Debug)]
pub struct ReplyBudget {
    remaining: AtomicUsize,
    exceeded: AtomicBool,
    /// The server closed the connection during this poll: the failure is an
    /// I/O problem even when the decoder reports a truncated frame.
    closed: AtomicBool,
}

impl ReplyBudget {
    pub fn new() -> Arc<Self> {
        Arc::new(ReplyBudget {
            remaining: AtomicUsize::new(MAX_REPLY_BYTES),
            exceeded: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        })
    }

    /// Called at the start of every poll.
    pub fn reset(&self) {
        self.remaining.store(MAX_REPLY_BYTES, Ordering::Relaxed);
        self.exceeded.store(false, Ordering::Relaxed);
        self.closed.store(false, Ordering::Relaxed);
    }

    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    pub fn closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    fn take(&self, n: usize) -> bool {
        let ok = self
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(n))
            .is_ok();
        if !ok {
            self.exceeded.store(true, Ordering::Relaxed);
        }
        ok
    }
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// A stream whose reads draw on a [`ReplyBudget`]; once it is spent, reads
/// fail and the poll ends with `reply_too_large`.
struct Capped {
    inner: Box<dyn Stream>,
    budget: Arc<ReplyBudget>,
}

impl AsyncRead for Capped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if n == 0 && buf.remaining() > 0 {
                    self.budget.closed.store(true, Ordering::Relaxed);
                }
                if self.budget.take(n) {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Ready(Err(io::Error::other("reply exceeds the size cap")))
                }
            }
            other => other,
        }
    }
}

impl AsyncWrite for Capped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Connects, negotiates TLS when the target asks for it, authenticates and
/// selects the database. The caller's deadline bounds all of it.
pub async fn open(
    target: &Target,
    budget: Arc<ReplyBudget>,
) -> Result<MultiplexedConnection, PollError> {
    let inner: Box<dyn Stream> = match &target.endpoint {
        Endpoint::Tcp { host, port } => {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(|e| PollError::new(Reason::Connect, e.to_string()))?;
            // Small request/reply exchanges: do not wait to coalesce.
            let _ = tcp.set_nodelay(true);
            match &target.tls {
                Some(tls) => {
                    let name = rustls_pki_types::ServerName::try_from(tls.server_name.clone())
                        .map_err(|_| PollError::new(Reason::Tls, "invalid TLS server name"))?;
                    let stream = tokio_rustls::TlsConnector::from(tls.config.clone())
                        .connect(name, tcp)
                        .await
                        .map_err(|e| PollError::new(Reason::Tls, format!("TLS handshake: {e}")))?;
                    Box::new(stream)
                }
                None => Box::new(tcp),
            }
        }
        Endpoint::Unix { path } => Box::new(
            tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| PollError::new(Reason::Connect, e.to_string()))?,
        ),
    };
    let stream = Capped { inner, budget };
    let (conn, driver) = MultiplexedConnection::new_with_config(
        &target.redis_settings(),
        stream,
        // The poll's deadline decides; the crate's own timeout stays off.
        redis::AsyncConnectionConfig::new().set_response_timeout(None),
    )
    .await
    .map_err(|e| PollError::from_redis(&e, true))?;
    // The driver ends when the connection is dropped.
    tokio::spawn(driver);
    Ok(conn)
}

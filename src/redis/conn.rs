//! One connection to a node: TCP or Unix socket, optional TLS, AUTH and
//! SELECT, then pipelined commands with a byte budget on every poll.
//!
//! We own the stream and the request/reply loop instead of using the redis
//! crate's multiplexed connection. The poller sends a poll's commands and
//! waits for their replies, so multiplexing bought nothing and cost the
//! most of any part of a poll: a driver task, channels and a 16 KiB read
//! buffer per node, kept for the connection's whole life (BENCHMARKS.md,
//! "Where the exporter's CPU goes" and the memory profile). Here a poll
//! borrows a buffer sized to its replies and frees it when done. Owning the
//! stream also gives full control of TLS (CA file, client certificate,
//! server name override, an explicit insecure mode) and a cap on reply
//! size, so a hostile or broken server declaring a multi-gigabyte reply
//! cannot make the exporter buffer it.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{PollError, Reason};
use crate::redis::resp::{self, Framer, Reply, RespError};
use crate::redis::target::{Endpoint, Target};

/// Most bytes a node may send during one poll. The largest legitimate reply
/// is CLUSTER NODES of a 1000-node cluster (~200 KB) or INFO with thousands
/// of commandstats lines (~1 MB); 8 MiB leaves ample room while bounding
/// what a hostile server can make us hold per node.
pub const MAX_REPLY_BYTES: usize = 8 * 1024 * 1024;

/// Bytes asked of the socket per read: one read takes a cheap INFO reply
/// (~4 KiB) whole, and stays below glibc's mmap threshold so the buffer
/// comes from (and returns to) the heap.
const READ_CHUNK: usize = 16 * 1024;

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// An open, authenticated connection.
pub struct Conn {
    stream: Box<dyn Stream>,
    /// Reply bytes read and not yet consumed; empty (no allocation)
    /// between polls.
    buf: Vec<u8>,
    /// Bytes read since [`Conn::begin_poll`].
    read_this_poll: usize,
    /// The address a TCP connection reached (discovery trusts a host-name
    /// seed's network by it); `None` for Unix sockets.
    pub peer_ip: Option<std::net::IpAddr>,
}

impl Conn {
    /// Connects, negotiates TLS when the target asks for it, authenticates
    /// and selects the database. The caller's deadline bounds all of it.
    pub async fn open(target: &Target) -> Result<Conn, PollError> {
        let mut peer_ip = None;
        let stream: Box<dyn Stream> = match &target.endpoint {
            Endpoint::Tcp { host, port } => {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| PollError::new(Reason::Connect, e.to_string()))?;
                // Small request/reply exchanges: do not wait to coalesce.
                let _ = tcp.set_nodelay(true);
                peer_ip = tcp.peer_addr().ok().map(|a| a.ip());
                match &target.tls {
                    Some(tls) => {
                        let name = rustls_pki_types::ServerName::try_from(tls.server_name.clone())
                            .map_err(|_| PollError::new(Reason::Tls, "invalid TLS server name"))?;
                        let stream = tokio_rustls::TlsConnector::from(tls.config.clone())
                            .connect(name, tcp)
                            .await
                            .map_err(|e| {
                                PollError::new(Reason::Tls, format!("TLS handshake: {e}"))
                            })?;
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
        // The handshake is AUTH and SELECT only. No `CLIENT SETINFO`: one
        // more command per connection that the metrics do not need, and an
        // error reply on servers before 7.2 that would count in their
        // `errorstat_ERR`. No HELLO: RESP2 is all the replies we read need.
        let mut conn = Conn {
            stream,
            buf: Vec::new(),
            read_this_poll: 0,
            peer_ip,
        };
        if let Some(password) = &target.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &target.user {
                args.push(user.as_bytes());
            }
            args.push(password.expose().as_bytes());
            match conn.query(&args).await? {
                Reply::Status(_) => {}
                // The server's own words ("WRONGPASS invalid username-
                // password pair..."). A real server never echoes the
                // password; a hostile one could, so it is cut out.
                Reply::Error(e) => {
                    let pw = password.expose();
                    let e = if pw.is_empty() {
                        e
                    } else {
                        e.replace(pw, "<redacted>")
                    };
                    return Err(PollError::new(Reason::Auth, e));
                }
                _ => return Err(PollError::new(Reason::Protocol, "unexpected reply to AUTH")),
            }
        }
        if target.db != 0 {
            let db = target.db.to_string();
            match conn.query(&[b"SELECT", db.as_bytes()]).await? {
                Reply::Status(_) => {}
                Reply::Error(e) => {
                    return Err(PollError::from_error_reply(&format!("SELECT: {e}")))
                }
                _ => {
                    return Err(PollError::new(
                        Reason::Protocol,
                        "unexpected reply to SELECT",
                    ))
                }
            }
        }
        conn.end_poll();
        Ok(conn)
    }

    /// Starts a poll's byte budget.
    pub fn begin_poll(&mut self) {
        self.read_this_poll = 0;
    }

    /// Frees the poll's buffer: an idle connection holds no reply memory.
    pub fn end_poll(&mut self) {
        self.buf = Vec::new();
        self.read_this_poll = 0;
    }

    /// Sends one command and reads its reply. Error replies come back as
    /// [`Reply::Error`]; only transport and protocol failures are `Err`.
    pub async fn query(&mut self, args: &[&[u8]]) -> Result<Reply, PollError> {
        let mut replies = self.query_many(&[args]).await?;
        replies
            .pop()
            .ok_or_else(|| PollError::new(Reason::Protocol, "no reply"))
    }

    /// Sends several commands in one write and reads their replies, in
    /// order, within the poll's byte budget: one round trip and one
    /// wake-up instead of one per command, for us and for the server (a
    /// steady poll's regular commands go this way). Every reply is read
    /// before returning, error replies included, so the connection stays
    /// in step whatever the caller makes of them.
    pub async fn query_many(&mut self, commands: &[&[&[u8]]]) -> Result<Vec<Reply>, PollError> {
        self.send_many(commands).await?;
        let mut replies = Vec::with_capacity(commands.len());
        for _ in commands {
            replies.push(self.read_in_budget().await?);
        }
        if !self.buf.is_empty() {
            // Nothing else is in flight: extra bytes mean the conversation
            // is out of step, and the poller drops the connection.
            return Err(PollError::new(
                Reason::Protocol,
                "unexpected bytes after the reply",
            ));
        }
        Ok(replies)
    }

    /// Reads the next reply of a poll, counted against the poll's budget,
    /// and keeps any bytes after it (the next pipelined reply's).
    async fn read_in_budget(&mut self) -> Result<Reply, PollError> {
        let mut framer = Framer::new();
        let end = loop {
            let allowed = MAX_REPLY_BYTES - self.read_this_poll + self.buf.len();
            match framer.advance(&self.buf, allowed) {
                Ok(Some(end)) => break end,
                Ok(None) => {}
                Err(RespError::TooLarge) => return Err(too_large()),
                Err(e) => return Err(PollError::new(Reason::Protocol, e.to_string())),
            }
            if self.read_this_poll >= MAX_REPLY_BYTES {
                return Err(too_large());
            }
            let want = READ_CHUNK.min(MAX_REPLY_BYTES - self.read_this_poll);
            self.buf.reserve(want);
            let n = (&mut self.stream)
                .take(want as u64)
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| PollError::new(Reason::Io, format!("read: {e}")))?;
            if n == 0 {
                return Err(PollError::new(
                    Reason::Io,
                    if self.buf.is_empty() {
                        "the server closed the connection"
                    } else {
                        "the server closed the connection in the middle of a reply"
                    },
                ));
            }
            self.read_this_poll += n;
        };
        let (reply, used) = resp::decode(&self.buf[..end])
            .map_err(|e| PollError::new(Reason::Protocol, e.to_string()))?;
        if used != end {
            return Err(PollError::new(
                Reason::Protocol,
                "a reply did not end where it was framed",
            ));
        }
        self.buf.drain(..end);
        Ok(reply)
    }

    /// Sends a command without reading its reply: for a pub/sub
    /// subscriber (Sentinel events), whose replies are read one by one
    /// with [`Conn::read_one`].
    pub async fn send(&mut self, args: &[&[u8]]) -> Result<(), PollError> {
        let mut request = Vec::with_capacity(64);
        resp::encode(args, &mut request);
        self.write_request(&request).await
    }

    async fn write_request(&mut self, request: &[u8]) -> Result<(), PollError> {
        self.stream
            .write_all(request)
            .await
            .map_err(|e| PollError::new(Reason::Io, format!("write: {e}")))?;
        self.stream
            .flush()
            .await
            .map_err(|e| PollError::new(Reason::Io, format!("write: {e}")))
    }

    /// Sends several commands in one write (a pipeline). A poll reads the
    /// replies with [`Conn::query_many`]; the keyspace analyser, which asks
    /// three questions of each of a hundred keys per round trip, one by one
    /// with [`Conn::read_one`].
    pub async fn send_many<'a, C: AsRef<[&'a [u8]]>>(
        &mut self,
        commands: &[C],
    ) -> Result<(), PollError> {
        let mut request = Vec::with_capacity(48 * commands.len());
        for args in commands {
            resp::encode(args.as_ref(), &mut request);
        }
        self.write_request(&request).await
    }

    /// Reads the next reply or push, at most `max_bytes` long, and keeps
    /// any bytes after it for the next call (pushes arrive back to back).
    /// No poll budget: a subscriber lives for hours, each message is
    /// bounded on its own.
    pub async fn read_one(&mut self, max_bytes: usize) -> Result<Reply, PollError> {
        let mut framer = Framer::new();
        let end = loop {
            match framer.advance(&self.buf, max_bytes) {
                Ok(Some(end)) => break end,
                Ok(None) => {}
                Err(RespError::TooLarge) => {
                    return Err(PollError::new(
                        Reason::ReplyTooLarge,
                        format!("a message longer than {max_bytes} bytes"),
                    ))
                }
                Err(e) => return Err(PollError::new(Reason::Protocol, e.to_string())),
            }
            if self.buf.len() >= max_bytes {
                return Err(PollError::new(
                    Reason::ReplyTooLarge,
                    format!("a message longer than {max_bytes} bytes"),
                ));
            }
            let want = READ_CHUNK.min(max_bytes - self.buf.len());
            self.buf.reserve(want);
            let n = (&mut self.stream)
                .take(want as u64)
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| PollError::new(Reason::Io, format!("read: {e}")))?;
            if n == 0 {
                return Err(PollError::new(
                    Reason::Io,
                    "the server closed the connection",
                ));
            }
        };
        let (reply, used) = resp::decode(&self.buf[..end])
            .map_err(|e| PollError::new(Reason::Protocol, e.to_string()))?;
        self.buf.drain(..used.max(end));
        if self.buf.is_empty() {
            // An idle subscriber holds no buffer.
            self.buf = Vec::new();
        }
        Ok(reply)
    }

    /// A command whose reply is text (INFO, CLUSTER INFO, CLUSTER NODES):
    /// error replies become errors with their reason.
    pub async fn query_text(&mut self, args: &[&[u8]]) -> Result<String, PollError> {
        text_reply(self.query(args).await?)
    }
}

/// The text of a reply to INFO, CLUSTER INFO or CLUSTER NODES; an error
/// reply becomes an error with its reason.
pub fn text_reply(reply: Reply) -> Result<String, PollError> {
    match reply {
        Reply::Bulk(b) => {
            String::from_utf8(b).map_err(|_| PollError::new(Reason::Protocol, "reply is not UTF-8"))
        }
        Reply::Status(s) => Ok(s),
        Reply::Error(e) => Err(PollError::from_error_reply(&e)),
        _ => Err(PollError::new(Reason::Protocol, "expected a text reply")),
    }
}

fn too_large() -> PollError {
    PollError::new(
        Reason::ReplyTooLarge,
        format!("the node sent more than {MAX_REPLY_BYTES} bytes in one poll"),
    )
}

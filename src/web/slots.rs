//! Connection slots, per-connection deadlines and who gives up a slot when
//! they run out.
//!
//! hyper serves the protocol; what it does not offer, and what an exporter
//! next to production Redis needs, is here: a short deadline on request
//! heads that does not run while a keep-alive connection idles between
//! scrapes (hyper's `header_read_timeout` also closes idle connections
//! after it, which would make every 15 s+ scrape reconnect), a deadline on
//! writes that make no progress (hyper has none), caps per source address,
//! and a choice of which connection to close when every slot is taken.
//!
//! The policy, in one place: a new connection is admitted while its source
//! holds fewer than [`MAX_CONNECTIONS_PER_SOURCE`] slots and fewer than
//! [`MAX_CONNECTIONS`] are held in all. Past either cap, the connection that
//! is doing the least for anyone gives its slot up: first an idle
//! keep-alive connection (idle longest first), then whichever has been
//! unproductive longest of those still waiting for a request head and those
//! whose response has not moved for [`EVICTABLE_STALL`]; last, the one
//! whose response has been stuck longest, however briefly. A connection
//! just accepted is thus the last of those waiting to go, and a response
//! that is moving (its last write went through) is never cut. Only if no connection qualifies is the new one closed. A
//! scraper therefore always gets a slot: silent, slow-loris and
//! non-reading clients hold theirs only until someone needs it, and for at
//! most [`HEAD_TIMEOUT`] or [`WRITE_STALL_TIMEOUT`] when nobody does.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// Most connections held at once: far above what a few Prometheus servers
/// need, low enough that a flood cannot take the file descriptors the
/// pollers need.
pub const MAX_CONNECTIONS: usize = 256;
/// Most connections one source address holds, well below the total, so no
/// single client (or host) can hold every slot even before eviction.
pub const MAX_CONNECTIONS_PER_SOURCE: usize = 32;
/// Time to complete a request head: from the accept for a connection's
/// first request (TLS handshake included), from its first byte for later
/// ones. A scraper sends its head in one packet; only slow-loris and silent
/// clients need more.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// A response whose writes make no progress for this long is abandoned: a
/// client that reads nothing for seconds is not scraping.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(5);
/// A response that has not moved for this long may give its slot to a new
/// connection when every slot is taken (a reader on a working link moves
/// within milliseconds).
pub const EVICTABLE_STALL: Duration = Duration::from_secs(1);
/// Upper bound on one connection's life: then it closes after the response
/// in flight. Above the scrape intervals people use (15 s to 2 min), so
/// Prometheus keeps reusing its connection between scrapes.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);

/// What a connection is doing, for deadlines and eviction.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for (the rest of) a request head since `since`.
    Head { since: Instant },
    /// Between requests since `since`.
    Idle { since: Instant },
    /// A request is being answered.
    Serving,
}

#[derive(Debug)]
struct TrackState {
    phase: Phase,
    /// When writes last returned Pending with no progress since.
    stalled_since: Option<Instant>,
}

/// One connection's state, shared by its IO wrapper, its request handler
/// and the slot table.
#[derive(Debug)]
pub struct Track {
    id: u64,
    pub peer: IpAddr,
    state: Mutex<TrackState>,
    /// The page (`pages::SharedPage::id`) this connection is sending, 0
    /// for none.
    sending: AtomicU64,
    /// Requests started on this connection: a response's end applies only
    /// if no later request has started (hyper may drop a finished body
    /// after it has begun the next response).
    requests: AtomicU64,
    killed: AtomicBool,
    kill: Notify,
}

impl Track {
    /// This connection now sends page `id` (0: none).
    pub fn set_sending(&self, id: u64) {
        self.sending.store(id, Ordering::Release);
    }

    pub fn sending(&self) -> u64 {
        self.sending.load(Ordering::Acquire)
    }

    /// How long its writes have made no progress, if they are stuck now.
    pub fn stalled_for(&self, now: Instant) -> Option<Duration> {
        self.state().stalled_since.map(|s| now.duration_since(s))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TrackState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request head is complete and its answer is being made; returns
    /// the request's number, for [`response_done`](Self::response_done).
    pub fn request_started(&self) -> u64 {
        let mut st = self.state();
        st.phase = Phase::Serving;
        self.requests.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Request `n`'s response has been handed over in full: unless a later
    /// request has started, the connection is idle.
    pub fn response_done(&self, n: u64) {
        let mut st = self.state();
        if self.requests.load(Ordering::Acquire) != n {
            return;
        }
        self.set_sending(0);
        if matches!(st.phase, Phase::Serving) {
            st.phase = Phase::Idle {
                since: Instant::now(),
            };
        }
    }

    fn bytes_read(&self) {
        let mut st = self.state();
        if matches!(st.phase, Phase::Idle { .. }) {
            st.phase = Phase::Head {
                since: Instant::now(),
            };
        }
    }

    fn head_deadline(&self) -> Option<Instant> {
        match self.state().phase {
            Phase::Head { since } => Some(since + HEAD_TIMEOUT),
            _ => None,
        }
    }

    fn wrote(&self) {
        self.state().stalled_since = None;
    }

    fn stalled(&self) {
        let mut st = self.state();
        if st.stalled_since.is_none() {
            st.stalled_since = Some(Instant::now());
        }
    }

    /// Closes the connection (its task ends at its next wake-up).
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.kill.notify_one();
    }

    /// Completes when [`kill`](Self::kill) was called.
    pub async fn killed(&self) {
        if self.killed.load(Ordering::Acquire) {
            return;
        }
        self.kill.notified().await;
    }

    /// How willing this connection is to give its slot up: lower first,
    /// `None` never (a response that is moving).
    fn eviction_rank(&self, now: Instant) -> Option<(u8, Instant)> {
        let st = self.state();
        match st.phase {
            Phase::Idle { since } => Some((0, since)),
            Phase::Head { since } => Some((1, since)),
            Phase::Serving => match st.stalled_since {
                Some(s) if now.duration_since(s) >= EVICTABLE_STALL => Some((1, s)),
                // Stuck only just: last resort, so that a burst of clients
                // that stop reading at once cannot refuse a scraper.
                Some(s) => Some((2, s)),
                None => None,
            },
        }
    }
}

#[derive(Default)]
struct Table {
    conns: HashMap<u64, Arc<Track>>,
    per_source: HashMap<IpAddr, usize>,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Arc<Track>> {
        let t = self.conns.remove(&id)?;
        if let Some(n) = self.per_source.get_mut(&t.peer) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&t.peer);
            }
        }
        Some(t)
    }

    /// Closes the connection most willing to give its slot up among those
    /// `from` accepts; false when none qualifies.
    fn evict(&mut self, from: impl Fn(&Track) -> bool) -> bool {
        let now = Instant::now();
        let victim = self
            .conns
            .values()
            .filter(|t| from(t))
            .filter_map(|t| t.eviction_rank(now).map(|r| (r, t.id)))
            .min()
            .map(|(_, id)| id);
        match victim.and_then(|id| self.remove(id)) {
            Some(t) => {
                tracing::debug!(peer = %t.peer, "connection slots are short; closing the least useful connection");
                t.kill();
                true
            }
            None => false,
        }
    }
}

/// The slot table of one HTTP server.
#[derive(Default)]
pub struct Slots {
    table: Mutex<Table>,
    next_id: AtomicU64,
}

/// A held slot: released when dropped.
pub struct Slot {
    slots: Arc<Slots>,
    pub track: Arc<Track>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.table().remove(self.track.id);
    }
}

impl Slots {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection from `peer`, taken from a less useful
    /// connection if need be (see the module note); `None`: close it.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        let mut table = self.table();
        if table.per_source.get(&peer).copied().unwrap_or(0) >= MAX_CONNECTIONS_PER_SOURCE
            && !table.evict(|t| t.peer == peer)
        {
            return None;
        }
        if table.conns.len() >= MAX_CONNECTIONS && !table.evict(|_| true) {
            return None;
        }
        let track = Arc::new(Track {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            peer,
            state: Mutex::new(TrackState {
                phase: Phase::Head {
                    since: Instant::now(),
                },
                stalled_since: None,
            }),
            sending: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
        });
        table.conns.insert(track.id, track.clone());
        *table.per_source.entry(peer).or_insert(0) += 1;
        Some(Slot {
            slots: self.clone(),
            track,
        })
    }

    /// Connections held now.
    pub fn held(&self) -> usize {
        self.table().conns.len()
    }
}

/// A connection's transport with the head and write deadlines applied:
/// reads fail once a head is late, writes once they have made no progress
/// for [`WRITE_STALL_TIMEOUT`]. Below TLS, so a handshake is timed as a
/// head and encrypted writes as writes.
pub struct Guarded<S> {
    io: S,
    track: Arc<Track>,
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
}

impl<S> Guarded<S> {
    pub fn new(io: S, track: Arc<Track>) -> Self {
        Guarded {
            io,
            track,
            read_timer: None,
            write_timer: None,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Pending from the transport: fails if the head deadline has passed,
    /// else waits for it as well.
    fn read_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(deadline) = self.track.head_deadline() else {
            self.read_timer = None;
            return Poll::Pending;
        };
        let timer = self
            .read_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head not complete within the head timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Maps a write's outcome: progress clears the stall timer, Pending
    /// starts it, and it firing fails the write.
    fn write_outcome<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.write_timer = None;
                self.track.wrote();
                Poll::Ready(r)
            }
            Poll::Pending => {
                self.track.stalled();
                let timer = self
                    .write_timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL_TIMEOUT)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client read nothing within the write timeout",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut me.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    me.track.bytes_read();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => me.read_pending(cx),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.io).poll_write(cx, buf);
        me.write_outcome(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.io).poll_write_vectored(cx, bufs);
        me.write_outcome(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.io).poll_flush(cx);
        me.write_outcome(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.io).poll_shutdown(cx);
        me.write_outcome(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn killed(s: &Slot) -> bool {
        s.track.killed.load(Ordering::Acquire)
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_over_its_cap_gives_up_its_own_oldest_idle_connection() {
        let slots = Arc::new(Slots::default());
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS_PER_SOURCE {
            tokio::time::advance(Duration::from_millis(1)).await;
            let s = slots.admit(ip(1)).unwrap();
            s.track.request_started();
            held.push(s);
        }
        // A moving response is never cut: with every slot serving, the
        // source is full.
        assert!(slots.admit(ip(1)).is_none());
        // Another source is unaffected.
        let other = slots.admit(ip(2)).unwrap();
        // Once two are idle, the one idle longest is given up.
        let n = held[3].track.requests.load(Ordering::Acquire);
        held[3].track.response_done(n);
        tokio::time::advance(Duration::from_millis(1)).await;
        let n = held[0].track.requests.load(Ordering::Acquire);
        held[0].track.response_done(n);
        let new = slots.admit(ip(1)).unwrap();
        assert!(killed(&held[3]) && !killed(&held[0]) && !killed(&held[1]));
        assert_eq!(slots.held(), MAX_CONNECTIONS_PER_SOURCE + 1);
        drop((new, other));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_table_evicts_idle_then_heads_then_stalled_writers() {
        let slots = Arc::new(Slots::default());
        let mut held = Vec::new();
        for i in 0..MAX_CONNECTIONS {
            tokio::time::advance(Duration::from_millis(1)).await;
            let s = slots
                .admit(ip((i / MAX_CONNECTIONS_PER_SOURCE) as u8 + 1))
                .unwrap();
            s.track.request_started();
            held.push(s);
        }
        // Every slot is serving and moving: a newcomer is refused.
        assert!(slots.admit(ip(200)).is_none());
        // A writer stalled long enough, then one waiting for a head, then
        // one idle: the idle one goes first, then the longest unproductive.
        held[5].track.stalled();
        tokio::time::advance(EVICTABLE_STALL).await;
        held[9].track.response_done(1);
        held[9].track.bytes_read();
        tokio::time::advance(Duration::from_millis(1)).await;
        held[7].track.response_done(1);
        let mut new = Vec::new();
        new.push(slots.admit(ip(200)).unwrap());
        assert!(killed(&held[7]) && !killed(&held[9]) && !killed(&held[5]));
        new.push(slots.admit(ip(201)).unwrap());
        assert!(killed(&held[5]) && !killed(&held[9]));
        new.push(slots.admit(ip(202)).unwrap());
        assert!(killed(&held[9]));
        // Now only connections just accepted wait for a head: the oldest
        // of them gives its slot up.
        tokio::time::advance(Duration::from_millis(1)).await;
        new.push(slots.admit(ip(203)).unwrap());
        assert!(killed(&new[0]) && !killed(&new[1]));
        assert_eq!(slots.held(), MAX_CONNECTIONS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_slot_is_counted_once_even_after_eviction() {
        let slots = Arc::new(Slots::default());
        let a = slots.admit(ip(1)).unwrap();
        let mut table = slots.table();
        assert!(table.evict(|_| true));
        drop(table);
        assert_eq!(slots.held(), 0);
        drop(a);
        assert_eq!(slots.held(), 0);
        assert!(slots.table().per_source.is_empty());
    }
}

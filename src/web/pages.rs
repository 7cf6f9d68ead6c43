//! Rendered metric pages, shared between the connections that send them,
//! and a bound on the bytes all connections pin together.
//!
//! A page is rendered once into one buffer; every connection answering
//! from the same snapshot of the nodes within [`REUSE_WINDOW`] sends that
//! buffer (a reference count, no copy), and its gzip form is made once,
//! when first asked for. A connection keeps its page alive until it has
//! sent it, so clients that read slowly, or not at all, could pin one page
//! each; instead, the pages alive are counted, and past [`budget`] pages
//! are revoked, oldest first: first the connections sending them that are
//! stuck (no progress for [`SLOW_READER_STALL`]) are closed, and only if
//! that is not enough, every connection still sending the oldest pages.
//! A scraper reading at network speed is thus spared while stuck clients
//! are there to close, and memory stays within a few pages whatever the
//! clients do.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::expose::topology::TopoNode;
use crate::expose::Page;
use crate::web::slots::Track;

/// Requests within this long of a render, for the same view and the same
/// node snapshot, get the same page: only the per-scrape age lines and the
/// exporter's own process series can be that much older.
pub const REUSE_WINDOW: Duration = Duration::from_secs(1);
/// Pages alive may hold this many times the newest page's bytes before
/// the oldest are revoked: a scrape in flight while two newer pages were
/// rendered still completes.
pub const BUDGET_PAGES: usize = 4;
/// ... and at least this much: below it, small pages are never revoked.
pub const BUDGET_FLOOR: usize = 16 << 20;
/// A sender whose writes have been stuck this long is closed first when
/// pages exceed the budget: far longer than a reader on a working link
/// waits for the next window (a round trip), far shorter than the write
/// timeout.
pub const SLOW_READER_STALL: Duration = Duration::from_millis(500);
/// gzip level: the fastest. A page compresses to about a tenth at level 1,
/// and higher levels cost several times the CPU for a few percent.
const GZIP_LEVEL: u32 = 1;

thread_local! {
    /// One deflate state per HTTP thread (~300 KB, kept), reset for every
    /// page. A fresh state per page (`GzEncoder::new`) allocated and
    /// cleared those 300 KB of tables every scrape, about half of what
    /// gzip costs on a one-node page: reusing it took the HTTP thread's CPU
    /// per gzip scrape at one node from 2014 to 1158 µs (`bench/ab.py
    /// --gzip --nodes 1`, BENCHMARKS.md). flate2's `GzEncoder` cannot take
    /// a reused state, so the gzip frame around the deflate stream (RFC
    /// 1952: a fixed 10-byte header, then CRC-32 and length) is written
    /// here. The backend stays flate2's default, miniz_oxide, which forbids
    /// unsafe code (zlib-rs would be about twice as fast, with unsafe
    /// code): the page holds text that nodes control.
    static DEFLATE: RefCell<Option<flate2::Compress>> = const { RefCell::new(None) };
}

/// gzip header: magic, deflate, no flags, no mtime, no extra flags, OS
/// unknown (RFC 1952 2.3).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// `plain` as a gzip member, with this thread's reused deflate state.
pub fn gzip(plain: &[u8]) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress, Status};
    DEFLATE.with_borrow_mut(|slot| {
        let c = slot.get_or_insert_with(|| Compress::new(Compression::new(GZIP_LEVEL), false));
        c.reset();
        let mut out = Vec::with_capacity(GZIP_HEADER.len() + plain.len() / 8 + 64);
        out.extend_from_slice(&GZIP_HEADER);
        loop {
            let (done, written) = (c.total_in(), c.total_out());
            let result = c.compress_vec(&plain[done as usize..], &mut out, FlushCompress::Finish);
            let progress = c.total_in() != done || c.total_out() != written;
            match result {
                Ok(Status::StreamEnd) => break,
                // The output is full: room for more.
                Ok(_) if progress || out.len() == out.capacity() => {
                    out.reserve(out.capacity().max(4096))
                }
                // An error, or no progress with room to write: not expected
                // from a reset state. The state is dropped and this page is
                // compressed with a fresh one, so the loop cannot spin or
                // grow the buffer without end.
                _ => {
                    *slot = None;
                    return gzip_fresh(plain);
                }
            }
        }
        let mut crc = flate2::Crc::new();
        crc.update(plain);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        // ISIZE is the length modulo 2^32 (RFC 1952).
        out.extend_from_slice(&(plain.len() as u32).to_le_bytes());
        out
    })
}

/// `plain` as a gzip member, with a state of its own (the fallback).
fn gzip_fresh(plain: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(GZIP_LEVEL));
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(plain);
    enc.finish().unwrap_or_default()
}

/// The most bytes the pages alive may hold, given the newest page's size.
pub fn budget(newest: usize) -> usize {
    (BUDGET_PAGES * newest).max(BUDGET_FLOOR)
}

/// One rendered page.
pub struct SharedPage {
    /// Unique, never 0 (see `Track::sending`).
    pub id: u64,
    /// The page as rendered: its sources (the node texts it was cut from)
    /// tell whether a later snapshot is the same.
    snapshot: Page,
    /// The topology it was rendered with (held, so the comparison by
    /// address cannot match a later one at a reused address).
    topology: Arc<Vec<TopoNode>>,
    made: Instant,
    pub plain: Bytes,
    gzip: OnceLock<Bytes>,
    /// Connections sending this page, closed if it is revoked.
    senders: Mutex<Vec<Weak<Track>>>,
}

impl SharedPage {
    /// The gzip form, made on first use.
    pub fn gzip(&self) -> Bytes {
        self.gzip
            .get_or_init(|| Bytes::from(gzip(&self.plain)))
            .clone()
    }

    /// Bytes this page keeps alive: its text, its gzip form, and the node
    /// texts it was cut from (about the size of the text).
    fn weight(&self) -> usize {
        2 * self.plain.len() + self.gzip.get().map_or(0, Bytes::len)
    }

    /// `conn` is sending this page (until its body is dropped).
    pub fn sent_by(&self, conn: &Arc<Track>) {
        conn.set_sending(self.id);
        let mut senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        senders.retain(|w| w.upgrade().is_some_and(|t| t.sending() == self.id));
        senders.push(Arc::downgrade(conn));
    }

    /// Closes the connections sending this page that `close` picks; true
    /// when none is left sending it.
    fn close_senders(&self, close: impl Fn(&Track) -> bool) -> bool {
        let mut senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        senders.retain(|w| match w.upgrade() {
            Some(t) if t.sending() == self.id => {
                if close(&t) {
                    t.kill();
                    false
                } else {
                    true
                }
            }
            _ => false,
        });
        senders.is_empty()
    }
}

#[derive(Default)]
struct Inner {
    /// The latest page of each view (`None`: `/metrics`; `Some(addr)`:
    /// `/scrape`), dropped once older than the reuse window.
    latest: HashMap<Option<String>, Arc<SharedPage>>,
    /// Every page rendered that may still be alive, oldest first.
    alive: VecDeque<Weak<SharedPage>>,
}

/// The pages of one HTTP server.
#[derive(Default)]
pub struct Pages {
    inner: Mutex<Inner>,
}

impl Pages {
    /// The page for `view`: the recent one if `fresh` (a page just built
    /// from the current snapshot with `topology`, not yet rendered) has the
    /// same sources and topology, else `fresh` rendered.
    pub fn get(
        &self,
        view: Option<String>,
        fresh: Page,
        topology: Arc<Vec<TopoNode>>,
    ) -> Arc<SharedPage> {
        let now = Instant::now();
        {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner
                .latest
                .retain(|_, p| now.duration_since(p.made) < REUSE_WINDOW);
            if let Some(p) = inner.latest.get(&view) {
                if Arc::ptr_eq(&p.topology, &topology) && p.snapshot.same_sources(&fresh) {
                    return p.clone();
                }
            }
        }
        // Rendering takes milliseconds on a large fleet: outside the lock.
        let mut fresh = fresh;
        let mut text = String::with_capacity(fresh.len());
        while fresh.next_chunk_into(&mut text) {}
        if view.is_some() {
            // `/scrape?target=`: the target names the node.
            text = crate::expose::without_target_labels(&text);
        }
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let page = Arc::new(SharedPage {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            snapshot: fresh,
            topology,
            made: now,
            plain: Bytes::from(text),
            gzip: OnceLock::new(),
            senders: Mutex::new(Vec::new()),
        });
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.latest.insert(view, page.clone());
        inner.alive.retain(|w| w.strong_count() > 0);
        let limit = budget(page.plain.len());
        let older: Vec<Arc<SharedPage>> = inner.alive.iter().filter_map(Weak::upgrade).collect();
        let mut total = older.iter().map(|p| p.weight()).sum::<usize>() + page.weight();
        if total > limit {
            // Stuck senders first, then whoever sends the oldest pages.
            let now = Instant::now();
            let stuck = |t: &Track| t.stalled_for(now).is_some_and(|d| d >= SLOW_READER_STALL);
            let everyone = |_: &Track| true;
            for close in [&stuck as &dyn Fn(&Track) -> bool, &everyone] {
                for p in &older {
                    if total <= limit {
                        break;
                    }
                    // True also for a page sent by nobody, kept only for
                    // reuse: leaving the cache frees it.
                    if p.close_senders(close) {
                        tracing::debug!(bytes = p.weight(), "pages held by slow clients exceed the budget; closed their connections");
                        total = total.saturating_sub(p.weight());
                        inner.latest.retain(|_, q| !Arc::ptr_eq(q, p));
                    }
                }
            }
        }
        drop(older);
        inner.alive.retain(|w| w.strong_count() > 0);
        inner.alive.push_back(Arc::downgrade(&page));
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn gunzip(z: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(z)
            .read_to_end(&mut out)
            .expect("a valid gzip member");
        out
    }

    #[test]
    fn gzip_with_a_reused_state_round_trips_every_page() {
        // Incompressible bytes (xorshift) make the output outgrow its first
        // allocation; the same thread's state is reused between pages.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let noise: Vec<u8> = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let text = "redis_up{addr=\"127.0.0.1:6379\"} 1\n".repeat(5000);
        for page in [&b""[..], b"x", text.as_bytes(), &noise, text.as_bytes()] {
            let z = gzip(page);
            assert_eq!(&z[..2], &[0x1f, 0x8b]);
            assert_eq!(gunzip(&z), page);
        }
        assert!(gzip(text.as_bytes()).len() < text.len() / 10);
        assert_eq!(gunzip(&gzip_fresh(text.as_bytes())), text.as_bytes());
    }
}

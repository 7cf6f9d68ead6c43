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

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
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
    /// The gzip form, made on first use. A fresh encoder each time: a
    /// reused one halved gzip's cost at one node and gained nothing at ten
    /// nodes and more (BENCHMARKS.md), so it did not earn its place.
    pub fn gzip(&self) -> Bytes {
        self.gzip
            .get_or_init(|| {
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(self.plain.len() / 8),
                    flate2::Compression::new(GZIP_LEVEL),
                );
                // Writing to a Vec cannot fail.
                let _ = enc.write_all(&self.plain);
                Bytes::from(enc.finish().unwrap_or_default())
            })
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

//! The `/insight` report page (docs/insight.md, "The /insight page"): one
//! self-contained HTML document per request, rendered from an
//! [`InsightView`].
//!
//! Self-contained on purpose: the page is served by an exporter that often
//! sits in a network without internet access, behind basic auth, so it
//! fetches nothing (no script, font, image or stylesheet by URL; bars are
//! inline SVG) and carries its own Content-Security-Policy
//! ([`PAGE_POLICY`]) as well as being sent with one
//! ([`CONTENT_SECURITY_POLICY`]), so even a saved copy cannot load
//! anything.
//!
//! Every value from Redis or the configuration is escaped and clipped
//! ([`MAX_TEXT`]), and the page stops adding nodes, shards and namespace
//! rows once it reaches [`PAGE_BUDGET`] bytes, so a fleet of thousands of
//! nodes with hostile key names yields a bounded page.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use crate::expose::insight::{ClusterView, InsightView, NodeView, ShardView};
use crate::signals::keyspace::{
    KeyspaceReport, NamespaceStats, PolicyVerdict, LARGEST_KEYS, OTHER, TTL_QUANTILES,
};
use crate::web::html::html_escape;

/// The policy the page states in a `<meta>` element: every fetch refused
/// (`default-src 'none'` covers scripts, fonts, frames, connections), the
/// one inline `<style>` allowed, and `data:` images for the empty favicon
/// (`<link rel="icon" href="data:,">`, which stops browsers asking for
/// `/favicon.ico`). Inline styles need `'unsafe-inline'` (a hash would need
/// a SHA-256 implementation for one constant), and cost nothing here:
/// values are escaped, and with every fetch refused even injected CSS
/// could send nothing anywhere.
pub const PAGE_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";
/// The `Content-Security-Policy` header `/insight` is sent with:
/// [`PAGE_POLICY`] plus `frame-ancestors`, which browsers ignore (with a
/// console warning) in a `<meta>` element: the page is not to be framed.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Bytes after which the page adds no more node sections, shard rows or
/// namespace rows (and says how many it left out): about what a browser
/// lays out in a second, and twenty times the page of ten nodes with the
/// default 20 namespaces each. The page ends at most one section past it
/// (a node header or the cluster-wide table, well under 256 KiB).
pub const PAGE_BUDGET: usize = 4 << 20;
/// Characters shown of a free-form value (address, cluster name, shard
/// slot ranges, policy): longer ones end in `…`. Patterns and key names
/// are already at most 128 bytes.
pub const MAX_TEXT: usize = 256;
/// Namespaces in a cluster's summed table (the rest are summed into
/// `other`): the nodes' own tables hold the detail.
pub const CLUSTER_NAMESPACES: usize = 50;
/// Distinct patterns summed over a cluster's nodes; patterns seen after
/// these go to `other`. Nodes of one cluster share their key design, so
/// real clusters have tens; this only bounds a keyspace of random names
/// (4096 nodes times 200 different patterns each).
pub const CLUSTER_PATTERNS_TRACKED: usize = 4096;
/// A shard above this multiple of the mean (keys or memory) is marked hot.
pub const IMBALANCE_HIGH: f64 = 1.5;
/// A shard below this multiple of the mean is marked cold.
pub const IMBALANCE_LOW: f64 = 0.5;

const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1f2328;--muted:#59636e;--bg:#fff;--line:#d1d9e0;--track:#eaeef2;\
--bar:#2f6fd6;--ok:#1a7f37;--okbg:#dafbe1;--warn:#9a6700;--warnbg:#fff8c5;--bad:#cf222e;--badbg:#ffebe9}\
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9198a1;--bg:#0d1117;--line:#3d444d;\
--track:#262c36;--bar:#4493f8;--ok:#3fb950;--okbg:#12261e;--warn:#d29922;--warnbg:#272115;--bad:#f85149;--badbg:#2d1214}}\
body{font:14px/1.45 system-ui,sans-serif;color:var(--fg);background:var(--bg);margin:1.5em auto;max-width:1340px;padding:0 1em}\
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.35em;margin:1.6em 0 .3em;border-bottom:2px solid var(--line)}\
h3{font-size:1.1em;margin:1.2em 0 .3em}h4{font-size:1em;margin:.8em 0 .2em}\
a{color:var(--bar)}.muted,.sub{color:var(--muted)}\
table{border-collapse:collapse;margin:.4em 0 1em}th,td{padding:3px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:middle}\
th{font-weight:600;white-space:nowrap}td.bar{white-space:nowrap}h3 code{font-size:1em}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
table.facts th{color:var(--muted);font-weight:normal}\
code{font:12px/1.3 ui-monospace,monospace;word-break:break-all}\
svg.bar{width:120px;height:10px;vertical-align:middle;margin-right:6px}\
svg.bar .track{fill:var(--track)}svg.bar .fill{fill:var(--bar)}svg.bar .ttl{fill:var(--ok)}\
svg.bar .hot{fill:var(--bad)}svg.bar .cold{fill:var(--warn)}svg.bar .mean{stroke:var(--fg);stroke-width:1.5}\
.ratio.hot{color:var(--bad);font-weight:600}.ratio.cold{color:var(--warn);font-weight:600}\
tr.imbalanced{background:var(--badbg)}\
.tag{display:inline-block;padding:0 6px;border:1px solid var(--line);border-radius:8px;font-size:12px;margin-right:4px}\
.tag.up{color:var(--ok);border-color:var(--ok)}.tag.down{color:var(--bad);border-color:var(--bad)}\
.verdict{padding:6px 10px;border-left:4px solid;border-radius:3px;margin:.4em 0;max-width:60em}\
.sev-ok{border-color:var(--ok);background:var(--okbg)}.sev-warn{border-color:var(--warn);background:var(--warnbg)}\
.sev-bad{border-color:var(--bad);background:var(--badbg)}.sev-unknown{border-color:var(--line)}\
.fail{color:var(--bad)}.off{padding:8px 12px;border:1px solid var(--line);border-radius:4px;max-width:60em}\
section.node{border-top:1px solid var(--line);margin-top:1em}tr.other td{font-style:italic}\
nav ul{margin:.3em 0;padding-left:1.2em}\
";

/// The page for `view`.
pub fn render(view: &InsightView) -> String {
    let mut p = Page::default();
    p.out
        .push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    let _ = writeln!(
        p.out,
        "<meta http-equiv=\"Content-Security-Policy\" content=\"{}\">",
        html_escape(PAGE_POLICY)
    );
    p.out.push_str(
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <link rel=\"icon\" href=\"data:,\">\n\
         <title>Cache insight · redis-vitals</title>\n<style>",
    );
    p.out.push_str(STYLE);
    p.out
        .push_str("</style></head>\n<body>\n<header><h1>Cache insight</h1>\n");
    let _ = writeln!(
        p.out,
        "<p class=\"sub\">What each node's keyspace is made of, from the last complete pass of the \
         keyspace analyser. Generated {} · <a href=\"/\">redis-vitals</a></p></header>",
        timestamp(view.generated_unix)
    );
    if !view.enabled {
        p.out.push_str(DISABLED);
    }
    if view.clusters.is_empty() {
        p.out.push_str("<p>No nodes are known yet.</p>\n");
    } else if view.clusters.len() > 1 {
        p.out.push_str("<nav><ul>\n");
        for (i, c) in view.clusters.iter().enumerate() {
            if p.full() {
                break;
            }
            let _ = writeln!(
                p.out,
                "<li><a href=\"#c{i}\">{}</a> <span class=\"muted\">({})</span></li>",
                cluster_title(&c.name),
                count(c.nodes.len(), "node")
            );
        }
        p.out.push_str("</ul></nav>\n");
    }
    for (i, c) in view.clusters.iter().enumerate() {
        cluster(&mut p, i, c, view);
    }
    if p.skipped_nodes + p.skipped_shards + p.skipped_rows > 0 {
        let _ = writeln!(
            p.out,
            "<p class=\"verdict sev-warn\">The page stopped at its size limit ({}): {} node sections, \
             {} shard rows and {} namespace rows are not shown. Every figure is also exported as \
             <code>redis_vitals_insight_*</code> series on the metrics page.</p>",
            bytes(PAGE_BUDGET as u64),
            p.skipped_nodes,
            p.skipped_shards,
            p.skipped_rows
        );
    }
    p.out.push_str("</body></html>\n");
    p.out
}

const DISABLED: &str = "<div class=\"off\"><h2>The keyspace analyser is off</h2>\n\
<p>Cache insight reads every key of the nodes it analyses (<code>SCAN</code>, then <code>TYPE</code>, \
<code>PTTL</code> and <code>MEMORY USAGE</code> per key), so it runs only when asked to. Enable it for every \
node with the flag <code>--insight.enabled</code> or, in the TOML file,</p>\n\
<pre><code>[insight]\nenabled = true</code></pre>\n\
<p>or for one target and the nodes discovered from it with <code>insight = true</code> in its \
<code>[[targets]]</code> entry.</p>\n\
<p><strong>Cost.</strong> The analyser spends at most <code>insight.budget</code> of Redis time per second \
of wall time on each node (default <code>2ms</code>, 0.2% of one core; <code>100us</code> to \
<code>500ms</code>), counted as <code>INFO commandstats</code> counts it (each round trip is charged at \
the share of it commandstats gives the analyser's commands). It uses a connection of its own, so polls stay on time, and a pass runs every \
<code>insight.pass-interval</code> (default <code>15m</code>). With <code>insight.source = \"replica\"</code> \
it reads one replica per master instead of the masters.</p></div>\n";

/// The page being written, and what the size limit left out.
#[derive(Default)]
struct Page {
    out: String,
    skipped_nodes: usize,
    skipped_shards: usize,
    skipped_rows: usize,
}

impl Page {
    fn full(&self) -> bool {
        self.out.len() >= PAGE_BUDGET
    }
}

fn cluster_title(name: &str) -> String {
    if name.is_empty() {
        "Standalone nodes".to_string()
    } else {
        format!("Cluster <q>{}</q>", text(name))
    }
}

fn cluster(p: &mut Page, i: usize, c: &ClusterView, view: &InsightView) {
    if p.full() {
        p.skipped_nodes += c.nodes.len();
        p.skipped_shards += c.shards.len();
        p.skipped_rows += c
            .nodes
            .iter()
            .filter_map(|n| n.report.as_ref())
            .map(|r| r.namespaces.len())
            .sum::<usize>();
        return;
    }
    let analysed = c.nodes.iter().filter(|n| n.analysed).count();
    // A node that is down keeps its last report on its own row, but its
    // data is not part of the cluster now (a failed master's replica has
    // taken over and reports the same keys).
    let reports: Vec<&KeyspaceReport> = c
        .nodes
        .iter()
        .filter(|n| n.up)
        .filter_map(|n| n.report.as_deref())
        .collect();
    let _ = writeln!(
        p.out,
        "<section class=\"cluster\" id=\"c{i}\">\n<h2>{}</h2>\n<p class=\"sub\">{} · {} analysed · \
         {} with a complete pass</p>",
        cluster_title(&c.name),
        count(c.nodes.len(), "node"),
        analysed,
        reports.len()
    );
    if !c.shards.is_empty() {
        shards(p, &c.shards);
    }
    if reports.len() >= 2 && !p.full() {
        let whole = if c.name.is_empty() {
            "these nodes"
        } else {
            "the cluster"
        };
        cluster_namespaces(p, &reports, whole);
    }
    for (j, n) in c.nodes.iter().enumerate() {
        node(p, i, j, n, view);
    }
    p.out.push_str("</section>\n");
}

/// Keys and memory per shard against the mean.
fn shards(p: &mut Page, shards: &[ShardView]) {
    let n = shards.len() as f64;
    let mean_keys = shards.iter().map(|s| s.keys as f64).sum::<f64>() / n;
    let mean_mem = shards.iter().map(|s| s.memory_bytes as f64).sum::<f64>() / n;
    let max_keys = shards.iter().map(|s| s.keys).max().unwrap_or(0) as f64;
    let max_mem = shards.iter().map(|s| s.memory_bytes).max().unwrap_or(0) as f64;
    let _ = writeln!(
        p.out,
        "<h3>Shard balance</h3>\n<p class=\"sub\">{} shards; mean {} keys and {} per shard (the line \
         on each bar). Shards above {IMBALANCE_HIGH}× or below {IMBALANCE_LOW}× the mean are marked: \
         a hot shard fills and evicts first, usually because of a hash tag or a few large keys.</p>\n\
         <table class=\"shards\"><thead><tr><th>Shard (slots)</th><th>Master</th><th class=\"num\">Keys</th>\
         <th></th><th class=\"num\">× mean</th><th class=\"num\">Memory</th><th></th><th class=\"num\">× mean</th>\
         </tr></thead><tbody>",
        shards.len(),
        int(mean_keys.round() as u64),
        bytes(mean_mem.round() as u64),
    );
    for s in shards {
        if p.full() {
            p.skipped_shards += 1;
            continue;
        }
        let (rk, ck) = imbalance(s.keys as f64, mean_keys);
        let (rm, cm) = imbalance(s.memory_bytes as f64, mean_mem);
        let row = if ck.is_empty() && cm.is_empty() {
            ""
        } else {
            " class=\"imbalanced\""
        };
        let _ = writeln!(
            p.out,
            "<tr{row}><td><code>{}</code></td><td><code>{}</code></td><td class=\"num\">{}</td><td>{}</td>\
             <td class=\"num ratio {ck}\">{}</td><td class=\"num\">{}</td><td>{}</td>\
             <td class=\"num ratio {cm}\">{}</td></tr>",
            text(&s.shard),
            text(&s.master),
            int(s.keys),
            mean_bar(s.keys as f64, mean_keys, max_keys, ck),
            rk,
            bytes(s.memory_bytes),
            mean_bar(s.memory_bytes as f64, mean_mem, max_mem, cm),
            rm,
        );
    }
    p.out.push_str("</tbody></table>\n");
}

/// The ratio to the mean as shown, and its class (`hot`, `cold` or none).
fn imbalance(v: f64, mean: f64) -> (String, &'static str) {
    // NaN and zero alike: no mean to compare with.
    if mean.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return ("–".to_string(), "");
    }
    let r = v / mean;
    let class = if r > IMBALANCE_HIGH {
        "hot"
    } else if r < IMBALANCE_LOW {
        "cold"
    } else {
        ""
    };
    let flag = match class {
        "hot" => " ▲",
        "cold" => " ▼",
        _ => "",
    };
    (format!("{r:.2}×{flag}"), class)
}

/// A bar of `v` on the scale of `max`, with a line at `mean`.
fn mean_bar(v: f64, mean: f64, max: f64, class: &str) -> String {
    let (w, m) = if max > 0.0 {
        (clamp01(v / max) * 100.0, clamp01(mean / max) * 100.0)
    } else {
        (0.0, 0.0)
    };
    let fill = if class.is_empty() { "fill" } else { class };
    format!(
        "<svg class=\"bar\" viewBox=\"0 0 100 10\" preserveAspectRatio=\"none\" aria-hidden=\"true\">\
         <rect class=\"track\" width=\"100\" height=\"10\"/><rect class=\"{fill}\" width=\"{w:.1}\" height=\"10\"/>\
         <line class=\"mean\" x1=\"{m:.1}\" x2=\"{m:.1}\" y1=\"0\" y2=\"10\"/></svg>"
    )
}

/// A bar filled to `frac` of its width.
fn bar(frac: f64, class: &str) -> String {
    let w = clamp01(frac) * 100.0;
    format!(
        "<svg class=\"bar\" viewBox=\"0 0 100 10\" preserveAspectRatio=\"none\" aria-hidden=\"true\">\
         <rect class=\"track\" width=\"100\" height=\"10\"/><rect class=\"{class}\" width=\"{w:.1}\" height=\"10\"/></svg>"
    )
}

fn clamp01(f: f64) -> f64 {
    if f.is_nan() {
        0.0
    } else {
        f.clamp(0.0, 1.0)
    }
}

/// One pattern summed over a cluster's nodes.
#[derive(Default)]
struct Sum {
    keys: u64,
    keys_with_ttl: u64,
    memory_bytes: u64,
    nodes: u64,
}

impl From<&NamespaceStats> for Sum {
    fn from(n: &NamespaceStats) -> Sum {
        let mut s = Sum::default();
        s.add(n);
        s
    }
}

impl Sum {
    fn add(&mut self, n: &NamespaceStats) {
        self.keys = self.keys.saturating_add(n.keys);
        self.keys_with_ttl = self.keys_with_ttl.saturating_add(n.keys_with_ttl);
        self.memory_bytes = self.memory_bytes.saturating_add(n.memory_bytes);
        self.nodes += 1;
    }

    fn merge(&mut self, o: &Sum) {
        self.keys = self.keys.saturating_add(o.keys);
        self.keys_with_ttl = self.keys_with_ttl.saturating_add(o.keys_with_ttl);
        self.memory_bytes = self.memory_bytes.saturating_add(o.memory_bytes);
    }
}

/// The cluster's namespaces: the nodes' last reports summed by pattern,
/// largest by memory first, `other` last.
fn cluster_namespaces(p: &mut Page, reports: &[&KeyspaceReport], whole: &str) {
    let mut by: HashMap<&str, Sum> = HashMap::new();
    let mut other = Sum::default();
    for r in reports {
        for ns in &r.namespaces {
            let tracked =
                by.len() < CLUSTER_PATTERNS_TRACKED || by.contains_key(ns.pattern.as_str());
            if ns.pattern != OTHER && tracked {
                by.entry(ns.pattern.as_str()).or_default().add(ns);
            } else {
                other.merge(&Sum::from(ns));
            }
        }
    }
    let mut rows: Vec<(&str, Sum)> = by.into_iter().collect();
    rows.sort_by(|(an, a), (bn, b)| {
        b.memory_bytes
            .cmp(&a.memory_bytes)
            .then(b.keys.cmp(&a.keys))
            .then(an.cmp(bn))
    });
    if rows.len() > CLUSTER_NAMESPACES {
        for (_, s) in rows.split_off(CLUSTER_NAMESPACES) {
            other.merge(&s);
        }
    }
    // A node is in `other` when any of its namespaces is not listed.
    let shown: std::collections::HashSet<&str> = rows.iter().map(|(p, _)| *p).collect();
    other.nodes = reports
        .iter()
        .filter(|r| {
            r.namespaces
                .iter()
                .any(|n| !shown.contains(n.pattern.as_str()))
        })
        .count() as u64;
    let total_mem = reports
        .iter()
        .fold(0u64, |m, r| m.saturating_add(r.memory_bytes));
    let total_keys = reports.iter().fold(0u64, |m, r| m.saturating_add(r.keys));
    let _ = writeln!(
        p.out,
        "<h3>Namespaces across {whole}</h3>\n<p class=\"sub\">The last complete pass of {} nodes summed \
         by pattern: {} keys, {}. The nodes' own tables below have the TTL and type detail.</p>\n\
         <table class=\"ns cluster-ns\"><thead><tr><th>Namespace</th><th class=\"num\">Keys</th>\
         <th class=\"num\">Memory</th><th>Share of memory</th><th>With a TTL</th><th class=\"num\">Nodes</th>\
         </tr></thead><tbody>",
        reports.len(),
        int(total_keys),
        bytes(total_mem)
    );
    let other_row = (other.keys > 0).then_some((OTHER, other));
    for (pattern, s) in rows
        .iter()
        .map(|(p, s)| (*p, s))
        .chain(other_row.as_ref().map(|(p, s)| (*p, s)))
    {
        let _ = writeln!(
            p.out,
            "<tr{}><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"bar\">{}{}</td><td class=\"bar\">{}{}</td>\
             <td class=\"num\">{}</td></tr>",
            if pattern == OTHER { " class=\"other\"" } else { "" },
            pattern_cell(pattern),
            int(s.keys),
            bytes(s.memory_bytes),
            bar(share(s.memory_bytes, total_mem), "fill"),
            percent(share(s.memory_bytes, total_mem)),
            bar(share(s.keys_with_ttl, s.keys), "ttl"),
            percent(share(s.keys_with_ttl, s.keys)),
            s.nodes
        );
    }
    p.out.push_str("</tbody></table>\n");
}

fn pattern_cell(pattern: &str) -> String {
    if pattern == OTHER {
        "other <span class=\"muted\">(everything not listed)</span>".to_string()
    } else {
        format!("<code>{}</code>", text(pattern))
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Severity class of a verdict: green, amber or red.
fn severity(v: PolicyVerdict) -> &'static str {
    match v {
        PolicyVerdict::Fit => "sev-ok",
        PolicyVerdict::NoMaxmemory => "sev-warn",
        PolicyVerdict::VolatileWithoutTtls | PolicyVerdict::NoEvictionNearFull => "sev-bad",
    }
}

fn node(p: &mut Page, i: usize, j: usize, n: &NodeView, view: &InsightView) {
    if p.full() {
        p.skipped_nodes += 1;
        p.skipped_rows += n.report.as_ref().map_or(0, |r| r.namespaces.len());
        return;
    }
    let (up_class, up) = if n.up { ("up", "up") } else { ("down", "down") };
    let _ = writeln!(
        p.out,
        "<section class=\"node\" id=\"c{i}n{j}\">\n<h3><code>{}</code></h3>\n<p><span class=\"tag\">{}</span>\
         <span class=\"tag {up_class}\">{up}</span></p>",
        text(&n.addr),
        text(&n.role),
    );
    if n.policy.is_empty() {
        // Never polled: a verdict from an empty policy and a maxmemory of 0
        // would be a guess.
        p.out.push_str(
            "<p class=\"verdict sev-unknown\"><strong>Eviction policy unknown</strong> — the node has not \
             answered a poll yet.</p>\n",
        );
    } else {
        let _ = writeln!(
            p.out,
            "<p class=\"verdict {} v-{}\"><strong><code>{}</code>: {}</strong> — {}</p>",
            severity(n.verdict),
            n.verdict.as_str(),
            text(&n.policy),
            n.verdict.as_str().replace('_', " "),
            html_escape(n.verdict.advice())
        );
    }
    p.out.push_str("<table class=\"facts\"><tbody>\n");
    let memory = if n.maxmemory > 0 {
        let f = share(n.used_memory, n.maxmemory);
        let class = if f >= 0.9 { "hot" } else { "fill" };
        format!(
            "{}{} of {} maxmemory ({})",
            bar(f, class),
            bytes(n.used_memory),
            bytes(n.maxmemory),
            percent(f)
        )
    } else {
        format!("{} used, no maxmemory", bytes(n.used_memory))
    };
    let _ = writeln!(p.out, "<tr><th>Memory</th><td>{memory}</td></tr>");
    let _ = writeln!(
        p.out,
        "<tr><th>Keys</th><td>{} <span class=\"muted\">(INFO keyspace, last poll)</span></td></tr>",
        int(n.keys)
    );
    if let Some(r) = &n.report {
        let f = r.ttl_share();
        let _ = writeln!(
            p.out,
            "<tr><th>TTL coverage</th><td>{}{} of {} keys have a TTL</td></tr>",
            bar(f, "ttl"),
            percent(f),
            int(r.keys)
        );
        let age = (view.generated_unix - r.ended_unix).max(0.0);
        let _ = writeln!(
            p.out,
            "<tr><th>Last pass</th><td>ended {} ago ({}), took {}; {} keys, {} by <code>MEMORY USAGE</code></td></tr>",
            duration(age),
            timestamp(r.ended_unix),
            duration(r.duration_seconds),
            int(r.keys),
            bytes(r.memory_bytes)
        );
    } else {
        let why = if !n.analysed {
            format!("not analysed: {}", not_analysed_why(n, view.enabled))
        } else if n.progress.is_some() {
            "no complete pass yet: the first one is running".to_string()
        } else if n.last_failure.is_some() {
            "no complete pass yet: the last one failed, and is retried at the next interval"
                .to_string()
        } else {
            "no complete pass yet: waiting for the first one".to_string()
        };
        let _ = writeln!(
            p.out,
            "<tr><th>Last pass</th><td class=\"muted\">{why}</td></tr>"
        );
    }
    if let Some(f) = n.progress {
        let _ = writeln!(
            p.out,
            "<tr><th>Pass in progress</th><td>{}{} of the keys <code>INFO keyspace</code> reported at its start</td></tr>",
            bar(f, "fill"),
            percent(f)
        );
    }
    if let Some(reason) = n.last_failure {
        let _ = writeln!(
            p.out,
            "<tr><th>Last failure</th><td class=\"fail\">pass given up: <code>{}</code></td></tr>",
            text(reason)
        );
    }
    p.out.push_str("</tbody></table>\n");
    if let Some(r) = &n.report {
        namespaces(p, r);
    }
    p.out.push_str("</section>\n");
}

/// Why a node is not analysed, as far as the view tells.
fn not_analysed_why(n: &NodeView, enabled: bool) -> &'static str {
    if !enabled {
        "the analyser is off (see above)"
    } else if n.role == "replica" {
        "replicas are read only with insight.source = \"replica\" (one per master)"
    } else if n.role == "master" {
        "insight is off for this target, or insight.source = \"replica\" reads one of its replicas instead"
    } else {
        "insight is off for this target, or its role is not known yet"
    }
}

fn namespaces(p: &mut Page, r: &KeyspaceReport) {
    let _ = writeln!(
        p.out,
        "<h4>Namespaces by memory</h4>\n<table class=\"ns\"><thead><tr><th>Namespace</th>\
         <th class=\"num\">Keys</th><th class=\"num\">Memory</th><th>Share of memory</th><th>With a TTL</th>\
         <th>Remaining TTL p10 · p50 · p90 (±10%)</th><th>Types</th><th>Largest keys</th></tr></thead><tbody>"
    );
    for ns in &r.namespaces {
        if p.full() {
            p.skipped_rows += 1;
            continue;
        }
        let mem = share(ns.memory_bytes, r.memory_bytes);
        let _ = writeln!(
            p.out,
            "<tr{}><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"bar\">{}{}</td><td class=\"bar\">{}{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            if ns.pattern == OTHER {
                " class=\"other\""
            } else {
                ""
            },
            pattern_cell(&ns.pattern),
            int(ns.keys),
            bytes(ns.memory_bytes),
            bar(mem, "fill"),
            percent(mem),
            bar(ns.ttl_share(), "ttl"),
            percent(ns.ttl_share()),
            ttl_quantiles(ns),
            types(ns),
            largest(ns)
        );
    }
    p.out.push_str("</tbody></table>\n");
}

fn ttl_quantiles(ns: &NamespaceStats) -> String {
    if ns.ttl_quantiles.is_empty() {
        return "<span class=\"muted\">no TTL</span>".to_string();
    }
    ns.ttl_quantiles
        .iter()
        .take(TTL_QUANTILES.len())
        .map(|(_, secs)| approx_duration(*secs))
        .collect::<Vec<_>>()
        .join(" · ")
}

fn types(ns: &NamespaceStats) -> String {
    let mut t: Vec<_> = ns.types.iter().take(8).collect();
    t.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    t.iter()
        .map(|(kind, n)| format!("{} {}", kind.as_str(), percent(share(*n, ns.keys))))
        .collect::<Vec<_>>()
        .join(" · ")
}

fn largest(ns: &NamespaceStats) -> String {
    ns.largest
        .iter()
        .take(LARGEST_KEYS)
        .map(|(size, name)| match name {
            Some(name) => format!("{} <code>{}</code>", bytes(*size), text(name)),
            None => bytes(*size),
        })
        .collect::<Vec<_>>()
        .join(name_separator(ns))
}

/// Names make a list; bare sizes fit on one line.
fn name_separator(ns: &NamespaceStats) -> &'static str {
    if ns.largest.iter().any(|(_, n)| n.is_some()) {
        "<br>"
    } else {
        " · "
    }
}

/// Escaped, at most [`MAX_TEXT`] characters.
fn text(s: &str) -> String {
    match s.char_indices().nth(MAX_TEXT) {
        Some((cut, _)) => format!("{}…", html_escape(&s[..cut])),
        None => html_escape(s),
    }
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `12.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A duration in seconds as people read it: `350ms`, `4.2s`, `5m 3s`,
/// `2h 5m`, `3d 4h`.
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "–".to_string();
    }
    if secs < 1.0 {
        return format!("{}ms", (secs * 1000.0).round() as u64);
    }
    if secs < 10.0 {
        return format!("{secs:.1}s");
    }
    let s = secs.round() as u64;
    let pair = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit} {small}{small_unit}")
        }
    };
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => pair(s / 60, "m", s % 60, "s"),
        3600..=86_399 => pair(s / 3600, "h", s % 3600 / 60, "m"),
        _ => pair(s / 86_400, "d", s % 86_400 / 3600, "h"),
    }
}

/// A duration known within 10% (a TTL quantile), in one unit: `42s`,
/// `56m`, `3.5h`, `12d`. Seconds would be a precision it does not have.
pub fn approx_duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "–".to_string();
    }
    let one = |v: f64, unit: &str| {
        if v < 10.0 {
            format!("{v:.1}{unit}")
        } else {
            format!("{v:.0}{unit}")
        }
    };
    if secs < 1.0 {
        "&lt;1s".to_string()
    } else if secs < 100.0 {
        format!("{secs:.0}s")
    } else if secs < 100.0 * 60.0 {
        format!("{:.0}m", secs / 60.0)
    } else if secs < 48.0 * 3600.0 {
        one(secs / 3600.0, "h")
    } else {
        one(secs / 86_400.0, "d")
    }
}

/// `1 node`, `3 nodes`.
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// A share as a percentage: whole percent, a decimal below 10%.
fn percent(f: f64) -> String {
    let pc = clamp01(f) * 100.0;
    if pc > 0.0 && pc < 0.05 {
        "&lt;0.1%".to_string()
    } else if pc > 0.0 && pc < 10.0 {
        format!("{pc:.1}%")
    } else {
        format!("{pc:.0}%")
    }
}

/// An integer with thousands separated by commas.
fn int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A Unix time as UTC RFC 3339, or `–` when it is not one.
fn timestamp(unix: f64) -> String {
    match Duration::try_from_secs_f64(unix) {
        Ok(d) if unix > 0.0 => UNIX_EPOCH
            .checked_add(d)
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
            .unwrap_or_else(|| "–".to_string()),
        _ => "–".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::keyspace::KeyType;
    use std::sync::Arc;

    fn stats(pattern: &str, keys: u64, memory: u64) -> NamespaceStats {
        NamespaceStats {
            pattern: pattern.to_string(),
            keys,
            keys_with_ttl: keys / 2,
            memory_bytes: memory,
            types: vec![
                (KeyType::Hash, keys - keys / 4),
                (KeyType::String, keys / 4),
            ],
            ttl_quantiles: vec![(0.1, 30.0), (0.5, 600.0), (0.9, 7200.0)],
            largest: vec![(memory / 10, None), (memory / 20, None)],
        }
    }

    fn report(namespaces: Vec<NamespaceStats>) -> Arc<KeyspaceReport> {
        Arc::new(KeyspaceReport {
            keys: namespaces.iter().map(|n| n.keys).sum(),
            keys_with_ttl: namespaces.iter().map(|n| n.keys_with_ttl).sum(),
            memory_bytes: namespaces.iter().map(|n| n.memory_bytes).sum(),
            namespaces,
            ended_unix: 1_700_000_000.0,
            duration_seconds: 12.5,
        })
    }

    fn node(addr: &str, report: Option<Arc<KeyspaceReport>>) -> NodeView {
        NodeView {
            addr: addr.to_string(),
            role: "master".to_string(),
            up: true,
            policy: "allkeys-lru".to_string(),
            maxmemory: 1 << 30,
            used_memory: 300 << 20,
            keys: 1000,
            analysed: true,
            verdict: PolicyVerdict::Fit,
            progress: None,
            report,
            last_failure: None,
        }
    }

    fn view(clusters: Vec<ClusterView>) -> InsightView {
        InsightView {
            enabled: true,
            generated_unix: 1_700_000_180.0,
            clusters,
        }
    }

    #[test]
    fn hostile_names_are_escaped() {
        let mut ns = stats("<script>alert(1)</script>:\"x\"", 10, 1000);
        ns.largest = vec![(100, Some("<img src=x onerror=alert(1)>'k'".to_string()))];
        let mut n = node("<b>addr</b>", Some(report(vec![ns])));
        n.policy = "\"><script>".to_string();
        n.role = "<i>".to_string();
        n.last_failure = Some("<timeout>");
        let c = ClusterView {
            name: "</q><script>x</script>".to_string(),
            nodes: vec![n],
            shards: vec![ShardView {
                shard: "<svg onload=x>".to_string(),
                master: "'m'".to_string(),
                keys: 1,
                memory_bytes: 1,
            }],
        };
        let page = render(&view(vec![c]));
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<svg onload"), "{page}");
        assert!(!page.contains("<b>addr"), "{page}");
        assert!(!page.contains("'k'") && !page.contains("\"x\""), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;:&quot;x&quot;"));
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;&#39;k&#39;"));
        assert!(page.contains("&lt;timeout&gt;"));
    }

    #[test]
    fn an_empty_view_is_a_whole_page() {
        let page = render(&InsightView {
            enabled: true,
            ..Default::default()
        });
        assert!(page.starts_with("<!doctype html>"));
        assert!(page.ends_with("</body></html>\n"));
        assert!(page.contains("No nodes are known yet."));
        assert!(!page.contains("analyser is off"));
        assert!(!page.contains("<script"));
    }

    #[test]
    fn a_disabled_view_says_how_to_enable_and_what_it_costs() {
        let mut n = node("10.0.0.1:6379", None);
        n.analysed = false;
        let page = render(&InsightView {
            enabled: false,
            generated_unix: 0.0,
            clusters: vec![ClusterView {
                name: String::new(),
                nodes: vec![n],
                shards: vec![],
            }],
        });
        for want in [
            "The keyspace analyser is off",
            "--insight.enabled",
            "[insight]\nenabled = true",
            "insight = true",
            "insight.budget",
            "2ms",
            "not analysed: the analyser is off",
            "Standalone nodes",
        ] {
            assert!(page.contains(want), "missing {want:?}");
        }
    }

    #[test]
    fn the_disabled_text_states_the_configured_defaults() {
        // The web layer cannot read config.rs; this keeps the text true.
        use crate::config::{
            DEFAULT_INSIGHT_BUDGET, DEFAULT_INSIGHT_PASS_INTERVAL, INSIGHT_BUDGET_RANGE,
        };
        for d in [
            DEFAULT_INSIGHT_BUDGET,
            INSIGHT_BUDGET_RANGE.0,
            INSIGHT_BUDGET_RANGE.1,
            DEFAULT_INSIGHT_PASS_INTERVAL,
        ] {
            let shown = format!("<code>{}</code>", humantime::format_duration(d));
            assert!(DISABLED.contains(&shown), "{shown} not in the text");
        }
    }

    #[test]
    fn an_unbalanced_cluster_marks_its_hot_and_cold_shards() {
        let shard = |name: &str, keys, memory_bytes| ShardView {
            shard: name.to_string(),
            master: format!("{name}-master"),
            keys,
            memory_bytes,
        };
        // Mean 1000 keys: 1900 is 1.9x, 100 is 0.1x; memory is even.
        let c = ClusterView {
            name: "orders".to_string(),
            nodes: vec![node("a:1", None), node("b:1", None), node("c:1", None)],
            shards: vec![
                shard("0-5460", 1000, 100 << 20),
                shard("5461-10922", 1900, 100 << 20),
                shard("10923-16383", 100, 100 << 20),
            ],
        };
        let page = render(&view(vec![c]));
        assert!(page.contains("Shard balance"));
        let row = |name: &str| {
            page.lines()
                .find(|l| l.contains(&format!("<code>{name}</code>")))
                .unwrap_or_else(|| panic!("no row for {name}"))
                .to_string()
        };
        let (even, hot, cold) = (row("0-5460"), row("5461-10922"), row("10923-16383"));
        assert!(
            !even.contains("imbalanced") && even.contains("1.00×"),
            "{even}"
        );
        assert!(
            hot.contains("imbalanced") && hot.contains("ratio hot\">1.90× ▲"),
            "{hot}"
        );
        assert!(
            cold.contains("imbalanced") && cold.contains("ratio cold\">0.10× ▼"),
            "{cold}"
        );
        // Memory is balanced on every shard.
        assert_eq!(page.matches("ratio \">1.00×").count(), 4, "{page}");
    }

    #[test]
    fn a_cluster_sums_its_nodes_namespaces_with_other_last() {
        let a = report(vec![stats("user:*", 100, 5000), stats(OTHER, 10, 9000)]);
        let b = report(vec![stats("user:*", 50, 2500), stats("cart:*", 5, 1000)]);
        let c = ClusterView {
            name: "c".to_string(),
            nodes: vec![node("a:1", Some(a)), node("b:1", Some(b))],
            shards: vec![],
        };
        let page = render(&view(vec![c]));
        let table = &page[page.find("Namespaces across the cluster").unwrap()..];
        let table = &table[..table.find("</table>").unwrap()];
        let user = table.find("<code>user:*</code>").unwrap();
        let cart = table.find("<code>cart:*</code>").unwrap();
        let other = table.find("other <span").unwrap();
        // other holds the most memory and still comes last.
        assert!(user < cart && cart < other, "{table}");
        assert!(
            table.contains("<td class=\"num\">150</td><td class=\"num\">7.3 KiB</td>"),
            "{table}"
        );
    }

    #[test]
    fn node_states_are_told_apart() {
        let mut running = node("run:1", None);
        running.progress = Some(0.42);
        let mut failed = node("fail:1", None);
        failed.last_failure = Some("timeout");
        let mut replica = node("rep:1", None);
        replica.analysed = false;
        replica.role = "replica".to_string();
        let mut done = node("done:1", Some(report(vec![stats("a:*", 4, 4096)])));
        done.verdict = PolicyVerdict::VolatileWithoutTtls;
        let c = ClusterView {
            name: String::new(),
            nodes: vec![running, failed, replica, done],
            shards: vec![],
        };
        let page = render(&view(vec![c]));
        for want in [
            "the first one is running",
            "42% of the keys",
            "the last one failed",
            "pass given up: <code>timeout</code>",
            "not analysed: replicas are read only",
            "ended 3m ago",
            "took 13s",
            "sev-bad v-volatile_without_ttls",
            PolicyVerdict::VolatileWithoutTtls.advice(),
            "30s · 10m · 2.0h",
            "hash 75% · string 25%",
        ] {
            assert!(page.contains(want), "missing {want:?}");
        }
    }

    #[test]
    fn a_maximal_view_gives_a_bounded_page() {
        // The worst the view can hold: 4096 nodes, each with 200 namespaces
        // and `other`, patterns and key names at their 128-byte cap, made of
        // the characters escaping lengthens most, and 4096 shards.
        let hostile = "\"".repeat(128);
        let mut namespaces: Vec<NamespaceStats> = (0..200)
            .map(|i| {
                let mut s = stats(&format!("{i}{}", &hostile[..125]), 10, 1000 - i);
                s.largest = vec![(100, Some(hostile.clone())); LARGEST_KEYS];
                s
            })
            .collect();
        namespaces.push(stats(OTHER, 1, 1));
        let r = report(namespaces);
        let long = "\"".repeat(10_000);
        let nodes: Vec<NodeView> = (0..4096)
            .map(|i| {
                let mut n = node(&format!("{i}{long}"), Some(r.clone()));
                n.policy = long.clone();
                n
            })
            .collect();
        let shards: Vec<ShardView> = (0..4096)
            .map(|i| ShardView {
                shard: long.clone(),
                master: long.clone(),
                keys: i,
                memory_bytes: i,
            })
            .collect();
        let c = ClusterView {
            name: long.clone(),
            nodes,
            shards,
        };
        let page = render(&view(vec![c.clone(), c]));
        assert!(
            page.len() <= PAGE_BUDGET + (256 << 10),
            "{} bytes",
            page.len()
        );
        assert!(page.ends_with("</body></html>\n"));
        assert!(page.contains("The page stopped at its size limit"));
    }

    #[test]
    fn units_are_human() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
        assert_eq!(duration(0.35), "350ms");
        assert_eq!(duration(4.25), "4.2s");
        assert_eq!(duration(59.0), "59s");
        assert_eq!(duration(303.0), "5m 3s");
        assert_eq!(duration(7200.0), "2h");
        assert_eq!(duration(3.0 * 86_400.0 + 4.0 * 3600.0), "3d 4h");
        assert_eq!(duration(f64::NAN), "–");
        assert_eq!(approx_duration(0.5), "&lt;1s");
        assert_eq!(approx_duration(42.4), "42s");
        assert_eq!(approx_duration(3339.0), "56m");
        assert_eq!(approx_duration(3.0 * 3600.0), "3.0h");
        assert_eq!(approx_duration(30.0 * 86_400.0), "30d");
        assert_eq!(approx_duration(f64::INFINITY), "–");
        assert_eq!(int(1_234_567), "1,234,567");
        assert_eq!(int(999), "999");
        assert_eq!(percent(0.004), "0.4%");
        assert_eq!(percent(0.0000001), "&lt;0.1%");
        assert_eq!(percent(f64::NAN), "0%");
        assert_eq!(timestamp(-1.0), "–");
        assert_eq!(timestamp(f64::INFINITY), "–");
        assert_eq!(timestamp(1_700_000_000.0), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn the_header_policy_extends_the_pages_own() {
        assert!(CONTENT_SECURITY_POLICY.starts_with(PAGE_POLICY));
        assert!(!PAGE_POLICY.contains("frame-ancestors"));
    }
}

//! The Grafana dashboards shipped in `dashboards/` and the PromQL inside them.
//!
//! Used by `tests/dashboards.rs` (structure, PromQL syntax through `promtool`)
//! and meant to be included by any test that evaluates the queries against a
//! live Prometheus: `mod dashboard_queries;` then [`dashboard_queries`] gives
//! every query with the dashboard variables replaced by values Prometheus
//! accepts. Depends on `serde_json` and std only.
#![allow(dead_code)]

use std::fs;
use std::path::PathBuf;

use serde_json::Value;

/// Value substituted for every template variable (`$cluster`, `$node`,
/// `$shard`...). Variables only ever appear inside `=~"..."` matchers, and
/// ".*" is what Grafana sends for "All" (the variables' `allValue`).
pub const VARIABLE_VALUE: &str = ".*";

/// Grafana's built-in variables and the value substituted for each; the
/// values are those of a 5 minute dashboard range at a 15 s scrape interval.
pub const BUILTINS: &[(&str, &str)] = &[
    ("__rate_interval", "1m"),
    ("__interval", "15s"),
    ("__interval_ms", "15000"),
    ("__range", "5m"),
    ("__range_s", "300"),
    ("__range_ms", "300000"),
    ("__all", VARIABLE_VALUE),
];

/// One dashboard file.
pub struct Dashboard {
    /// File name, e.g. `redis-vitals-node.json`.
    pub file: String,
    pub json: Value,
}

/// One PromQL query of a dashboard, as written in the JSON (variables not
/// substituted).
pub struct Query {
    /// File name of the dashboard.
    pub dashboard: String,
    /// Title of the panel, or `annotation: <name>` for annotation queries.
    pub panel: String,
    /// Type of the panel (`annotation` for annotation queries).
    pub panel_type: String,
    pub expr: String,
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn dashboards_dir() -> PathBuf {
    repo_root().join("dashboards")
}

/// Every `dashboards/*.json`, sorted by file name. Panics (naming the file)
/// when one is not valid JSON.
pub fn load_dashboards() -> Vec<Dashboard> {
    let dir = dashboards_dir();
    let entries =
        fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
            Dashboard {
                file: path.file_name().unwrap().to_string_lossy().into_owned(),
                json,
            }
        })
        .collect()
}

/// Every panel of a dashboard, rows included, and the panels nested inside
/// collapsed rows after their row.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested.iter());
        }
    }
    out
}

/// The panel's title, for messages.
pub fn title(panel: &Value) -> String {
    panel["title"].as_str().unwrap_or("<untitled>").to_string()
}

/// Every PromQL query of a dashboard: panel targets and annotation queries.
pub fn raw_queries(d: &Dashboard) -> Vec<Query> {
    let mut out = Vec::new();
    for p in panels(&d.json) {
        for t in p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(expr) = t["expr"].as_str() {
                out.push(Query {
                    dashboard: d.file.clone(),
                    panel: title(p),
                    panel_type: p["type"].as_str().unwrap_or("").to_string(),
                    expr: expr.to_string(),
                });
            }
        }
    }
    let annotations = d.json["annotations"]["list"].as_array();
    for a in annotations.map(Vec::as_slice).unwrap_or(&[]) {
        if let Some(expr) = a["expr"].as_str() {
            out.push(Query {
                dashboard: d.file.clone(),
                panel: format!("annotation: {}", a["name"].as_str().unwrap_or("")),
                panel_type: "annotation".to_string(),
                expr: expr.to_string(),
            });
        }
    }
    out
}

/// A variable reference in a query: `$name`, `${name}`, `${name:format}` or
/// `${name.field}`. `$1`-style references (label_replace) are not variables.
pub struct VarRef {
    /// Byte range of the whole reference in the query.
    pub start: usize,
    pub end: usize,
    pub name: String,
}

pub fn variable_refs(expr: &str) -> Vec<VarRef> {
    let bytes = expr.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        let start = i;
        let (name, end) = if bytes.get(i + 1) == Some(&b'{') {
            match expr[i + 2..].find('}') {
                Some(close) => {
                    let inner = &expr[i + 2..i + 2 + close];
                    let name = inner.split([':', '.']).next().unwrap_or("");
                    (name.to_string(), i + 2 + close + 1)
                }
                None => (String::new(), i + 1),
            }
        } else {
            let mut j = i + 1;
            while j < bytes.len() && is_word(bytes[j]) {
                j += 1;
            }
            (expr[i + 1..j].to_string(), j)
        };
        if !name.is_empty() && !name.as_bytes()[0].is_ascii_digit() {
            out.push(VarRef { start, end, name });
        }
        i = end.max(i + 1);
    }
    out
}

/// The query with Grafana's built-in variables replaced by the values in
/// [`BUILTINS`] and every other variable by [`VARIABLE_VALUE`].
pub fn substitute(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut last = 0;
    for r in variable_refs(expr) {
        out.push_str(&expr[last..r.start]);
        let value = BUILTINS
            .iter()
            .find(|(n, _)| *n == r.name)
            .map_or(VARIABLE_VALUE, |(_, v)| *v);
        out.push_str(value);
        last = r.end;
    }
    out.push_str(&expr[last..]);
    out
}

/// Every query of every dashboard as (dashboard file, panel title, query with
/// the variables substituted), ready to be sent to Prometheus.
pub fn dashboard_queries() -> Vec<(String, String, String)> {
    load_dashboards()
        .iter()
        .flat_map(raw_queries)
        .map(|q| {
            let expr = substitute(&q.expr);
            (q.dashboard, q.panel, expr)
        })
        .collect()
}

//! Structural checks of the Grafana dashboards in `dashboards/`, and a PromQL
//! syntax check of every query through `promtool` (which must be installed:
//! the test fails without it, it does not skip).

mod dashboard_queries;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use dashboard_queries::{load_dashboards, panels, raw_queries, substitute, title, variable_refs};
use dashboard_queries::{Dashboard, Query, BUILTINS};
use serde_json::Value;

/// The dashboards the repository promises (README, cross links).
const EXPECTED: &[&str] = &[
    "redis-vitals-cache.json",
    "redis-vitals-node.json",
    "redis-vitals-overview.json",
    "redis-vitals-shards.json",
];

const PANEL_TYPES: &[&str] = &[
    "timeseries",
    "stat",
    "table",
    "gauge",
    "bargauge",
    "row",
    "text",
];

/// Grafana built-ins a query may use besides the ones substituted in
/// `dashboard_queries::BUILTINS`.
const OTHER_BUILTINS: &[&str] = &["__dashboard", "__from", "__to", "__name", "__org", "__user"];

const CLUSTER_MATCHER: &str = r#"cluster=~"$cluster""#;

fn dashboards() -> Vec<Dashboard> {
    let all = load_dashboards();
    assert!(!all.is_empty(), "no dashboards/*.json found");
    all
}

fn all_queries() -> Vec<Query> {
    dashboards().iter().flat_map(raw_queries).collect()
}

/// Collects every failure instead of stopping at the first one.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            self.0.push(msg());
        }
    }

    fn assert_none(self, what: &str) {
        assert!(
            self.0.is_empty(),
            "{what}: {} problem(s):\n  {}",
            self.0.len(),
            self.0.join("\n  ")
        );
    }
}

fn where_(q: &Query) -> String {
    format!("{} / {:?}: {}", q.dashboard, q.panel, q.expr)
}

fn variables(d: &Dashboard) -> Vec<&Value> {
    d.json["templating"]["list"]
        .as_array()
        .map(|v| v.iter().collect())
        .unwrap_or_default()
}

fn variable<'a>(d: &'a Dashboard, name: &str) -> Option<&'a Value> {
    variables(d).into_iter().find(|v| v["name"] == name)
}

/// A variable's query text, whichever shape Grafana saved it in.
fn variable_query(v: &Value) -> String {
    match &v["query"] {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("query")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        _ => String::new(),
    }
}

fn is_builtin(name: &str) -> bool {
    BUILTINS.iter().any(|(n, _)| *n == name) || OTHER_BUILTINS.contains(&name)
}

// ---------------------------------------------------------------------------
// A small PromQL lexer: enough to find selectors, ranges, bare metric names
// and division operands. Syntax proper is promtool's job.
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Lexed {
    /// (metric name, text between the braces).
    selectors: Vec<(String, String)>,
    /// Identifiers used as metric names without a `{...}` matcher block.
    bare: Vec<String>,
    /// Range selector durations, with the function they belong to when the
    /// range directly follows `rate(`/`irate(`/`increase(`... in order.
    ranges: Vec<(String, Option<String>)>,
    /// Text of the right operand of every `/`.
    divisors: Vec<String>,
}

const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "start",
    "end",
];
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const RANGE_FUNCTIONS: &[&str] = &[
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "resets",
    "changes",
    "max_over_time",
    "min_over_time",
    "avg_over_time",
];

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':'
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// Index just past the string literal starting at `i`.
fn skip_string(s: &[u8], i: usize) -> usize {
    let quote = s[i];
    let mut j = i + 1;
    while j < s.len() && s[j] != quote {
        if s[j] == b'\\' && quote != b'`' {
            j += 1;
        }
        j += 1;
    }
    j + 1
}

/// Index just past the bracket group opening at `i` (strings respected).
fn skip_group(s: &[u8], i: usize) -> usize {
    let (open, close) = (s[i], matching(s[i]));
    let mut depth = 0;
    let mut j = i;
    while j < s.len() {
        match s[j] {
            b'"' | b'\'' | b'`' => {
                j = skip_string(s, j);
                continue;
            }
            b if b == open => depth += 1,
            b if b == close => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    s.len()
}

fn matching(b: u8) -> u8 {
    match b {
        b'(' => b')',
        b'{' => b'}',
        b'[' => b']',
        _ => unreachable!(),
    }
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && s[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

fn ident_end(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_ident(s[i]) {
        i += 1;
    }
    i
}

/// Index just past the operand starting at `i` (after a binary operator).
fn operand_end(s: &[u8], i: usize) -> usize {
    let mut i = skip_ws(s, i);
    // Vector matching modifiers: on(...) / ignoring(...) / group_x(...).
    loop {
        if i < s.len() && is_ident_start(s[i]) {
            let e = ident_end(s, i);
            let word = std::str::from_utf8(&s[i..e]).unwrap();
            if ["on", "ignoring", "group_left", "group_right", "bool"].contains(&word) {
                i = skip_ws(s, e);
                if i < s.len() && s[i] == b'(' && word != "bool" {
                    i = skip_ws(s, skip_group(s, i));
                }
                continue;
            }
        }
        break;
    }
    if i >= s.len() {
        return i;
    }
    match s[i] {
        b'(' => skip_group(s, i),
        b'-' | b'+' => operand_end(s, i + 1),
        b if is_ident_start(b) => {
            let mut e = skip_ws(s, ident_end(s, i));
            // Aggregation modifier before or after the argument list.
            let mut seen_args = false;
            loop {
                if e < s.len() && s[e] == b'(' && !seen_args {
                    e = skip_ws(s, skip_group(s, e));
                    seen_args = true;
                    continue;
                }
                if e < s.len() && s[e] == b'{' {
                    e = skip_ws(s, skip_group(s, e));
                    continue;
                }
                if e < s.len() && s[e] == b'[' {
                    e = skip_ws(s, skip_group(s, e));
                    continue;
                }
                if e < s.len() && is_ident_start(s[e]) {
                    let we = ident_end(s, e);
                    let word = std::str::from_utf8(&s[e..we]).unwrap();
                    if word == "by" || word == "without" {
                        e = skip_ws(s, we);
                        if e < s.len() && s[e] == b'(' {
                            e = skip_ws(s, skip_group(s, e));
                        }
                        continue;
                    }
                }
                break;
            }
            e
        }
        _ => {
            let mut e = i;
            while e < s.len() && (s[e].is_ascii_alphanumeric() || s[e] == b'.') {
                e += 1;
            }
            e
        }
    }
}

fn lex(expr: &str) -> Lexed {
    let s = expr.as_bytes();
    let mut out = Lexed::default();
    let mut i = 0;
    let mut pending_fn: Option<String> = None;
    while i < s.len() {
        let b = s[i];
        match b {
            b'"' | b'\'' | b'`' => i = skip_string(s, i),
            b'{' => {
                // A selector without a metric name.
                let end = skip_group(s, i);
                out.selectors
                    .push((String::new(), expr[i + 1..end - 1].to_string()));
                i = end;
            }
            b'[' => {
                let end = skip_group(s, i);
                out.ranges
                    .push((expr[i + 1..end - 1].trim().to_string(), pending_fn.take()));
                i = end;
            }
            b'/' => {
                let end = operand_end(s, i + 1);
                out.divisors.push(expr[i + 1..end].trim().to_string());
                i += 1;
            }
            b if b.is_ascii_digit()
                || (b == b'.' && s.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'.') {
                    i += 1;
                }
            }
            b if is_ident_start(b) => {
                let end = ident_end(s, i);
                let word = &expr[i..end];
                let next = skip_ws(s, end);
                let next_b = s.get(next).copied();
                let next_word = &expr[next..ident_end(s, next)];
                if LABEL_LIST_KEYWORDS.contains(&word) {
                    i = if next_b == Some(b'(') {
                        skip_group(s, next)
                    } else {
                        end
                    };
                } else if next_word == "by" || next_word == "without" {
                    // Aggregation with the modifier first: `sum by (x) (...)`.
                    i = end;
                } else if next_b == Some(b'(') {
                    if RANGE_FUNCTIONS.contains(&word) {
                        pending_fn = Some(word.to_string());
                    }
                    i = end;
                } else if next_b == Some(b'{') {
                    let close = skip_group(s, next);
                    out.selectors
                        .push((word.to_string(), expr[next + 1..close - 1].to_string()));
                    i = close;
                } else {
                    if !KEYWORDS.contains(&word) {
                        out.bare.push(word.to_string());
                    }
                    i = end;
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// Metric names the dashboards may use: the catalogue's first column and
/// the bundled recording rules.
fn known_metrics() -> BTreeSet<String> {
    let root = dashboard_queries::repo_root();
    let mut known = BTreeSet::new();
    let catalogue =
        fs::read_to_string(root.join("docs/metrics.md")).expect("docs/metrics.md is readable");
    for line in catalogue.lines().filter(|l| l.starts_with('|')) {
        let first = line.split('|').nth(1).unwrap_or("");
        for word in first.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("redis_") {
                known.insert(word.to_string());
            }
        }
    }
    let rules = fs::read_to_string(root.join("alerts/redis-vitals.recording.yml"))
        .expect("alerts/redis-vitals.recording.yml is readable");
    for line in rules.lines() {
        if let Some(name) = line.trim().strip_prefix("- record:") {
            known.insert(name.trim().to_string());
        }
    }
    assert!(known.len() > 50, "metric catalogue looks empty: {known:?}");
    known
}

// ---------------------------------------------------------------------------
// Dashboard-level checks
// ---------------------------------------------------------------------------

#[test]
fn dashboards_parse_and_are_identified() {
    let all = dashboards();
    let files: Vec<&str> = all.iter().map(|d| d.file.as_str()).collect();
    for want in EXPECTED {
        assert!(
            files.contains(want),
            "dashboards/{want} is missing (found {files:?})"
        );
    }
    let mut f = Failures::default();
    let mut uids = BTreeMap::new();
    for d in &all {
        let uid = d.json["uid"].as_str().unwrap_or("");
        let t = d.json["title"].as_str().unwrap_or("");
        f.check(!uid.is_empty() && uid.len() <= 40, || {
            format!("{}: uid missing or longer than 40 characters", d.file)
        });
        f.check(!t.is_empty(), || format!("{}: title missing", d.file));
        f.check(d.json["id"].is_null(), || {
            format!(
                "{}: numeric id must be null so imports do not clash",
                d.file
            )
        });
        f.check(d.json["schemaVersion"].as_u64().unwrap_or(0) >= 39, || {
            format!("{}: schemaVersion must be 39 or later", d.file)
        });
        if let Some(other) = uids.insert(uid.to_string(), d.file.clone()) {
            f.0.push(format!("{}: uid {uid:?} also used by {other}", d.file));
        }
        f.check(d.file == format!("{uid}.json"), || {
            format!("{}: file name should be the uid ({uid}.json)", d.file)
        });
    }
    f.assert_none("dashboard identity");
}

#[test]
fn panel_ids_are_unique() {
    let mut f = Failures::default();
    for d in dashboards() {
        let mut seen = BTreeMap::new();
        for p in panels(&d.json) {
            match p["id"].as_u64() {
                None => f.0.push(format!(
                    "{}: panel {:?} has no numeric id",
                    d.file,
                    title(p)
                )),
                Some(id) => {
                    if let Some(other) = seen.insert(id, title(p)) {
                        f.0.push(format!(
                            "{}: id {id} used by {:?} and {other:?}",
                            d.file,
                            title(p)
                        ));
                    }
                }
            }
        }
    }
    f.assert_none("panel ids");
}

#[test]
fn panels_are_known_types_with_units_and_descriptions() {
    let mut f = Failures::default();
    for d in dashboards() {
        for p in panels(&d.json) {
            let ty = p["type"].as_str().unwrap_or("");
            let name = format!("{}: {:?}", d.file, title(p));
            f.check(PANEL_TYPES.contains(&ty), || {
                format!("{name}: panel type {ty:?}")
            });
            if ty == "row" || ty == "text" {
                continue;
            }
            let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or("");
            f.check(!unit.is_empty(), || {
                format!("{name}: no fieldConfig.defaults.unit")
            });
            let desc = p["description"].as_str().unwrap_or("");
            f.check(desc.len() >= 20, || format!("{name}: no description"));
            let targets = p["targets"].as_array().map_or(0, Vec::len);
            f.check(targets > 0, || format!("{name}: no query"));
        }
    }
    f.assert_none("panel types, units and descriptions");
}

/// (x, y, w, h) of a panel, checked for sanity.
fn rect(file: &str, p: &Value, f: &mut Failures) -> Option<(u64, u64, u64, u64)> {
    let g = &p["gridPos"];
    let get = |k: &str| g[k].as_u64();
    let name = format!("{file}: {:?}", title(p));
    let (Some(x), Some(y), Some(w), Some(h)) = (get("x"), get("y"), get("w"), get("h")) else {
        f.0.push(format!("{name}: gridPos missing or incomplete: {g}"));
        return None;
    };
    f.check((1..=24).contains(&w), || {
        format!("{name}: width {w} not in 1..=24")
    });
    f.check(x + w <= 24, || format!("{name}: x {x} + w {w} > 24"));
    f.check(h >= 1, || format!("{name}: height 0"));
    Some((x, y, w, h))
}

fn overlaps(a: (u64, u64, u64, u64), b: (u64, u64, u64, u64)) -> bool {
    let (ax, ay, aw, ah) = a;
    let (bx, by, bw, bh) = b;
    ax < bx + bw && bx < ax + aw && ay < by + bh && by < ay + ah
}

fn check_no_overlap(file: &str, group: &[&Value], f: &mut Failures) {
    let rects: Vec<_> = group.iter().map(|p| (title(p), rect(file, p, f))).collect();
    for (i, (ta, a)) in rects.iter().enumerate() {
        for (tb, b) in &rects[i + 1..] {
            if let (Some(a), Some(b)) = (a, b) {
                f.check(!overlaps(*a, *b), || {
                    format!("{file}: {ta:?} overlaps {tb:?}")
                });
            }
        }
    }
}

#[test]
fn grid_positions_fit_and_do_not_overlap() {
    let mut f = Failures::default();
    for d in dashboards() {
        let top: Vec<&Value> = d.json["panels"].as_array().unwrap().iter().collect();
        check_no_overlap(&d.file, &top, &mut f);
        // Panels inside a collapsed row are laid out among themselves.
        for row in &top {
            if let Some(nested) = row["panels"].as_array().filter(|n| !n.is_empty()) {
                let nested: Vec<&Value> = nested.iter().collect();
                check_no_overlap(&d.file, &nested, &mut f);
            }
        }
    }
    f.assert_none("grid positions");
}

/// Every `datasource` reference anywhere in the JSON uses the `datasource`
/// variable, and no other object carries a hard-coded `uid`.
fn check_datasources(file: &str, v: &Value, path: &str, f: &mut Failures) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let here = format!("{path}.{k}");
                if k == "datasource" {
                    let ok = match child {
                        Value::Object(ds) => {
                            ds.get("uid") == Some(&Value::from("${datasource}"))
                                && ds.get("type") == Some(&Value::from("prometheus"))
                        }
                        Value::String(s) => s == "${datasource}",
                        _ => false,
                    };
                    f.check(ok, || {
                        format!("{file}: {here} = {child} (want {{\"type\":\"prometheus\",\"uid\":\"${{datasource}}\"}})")
                    });
                    continue;
                }
                if k == "uid" && !path.is_empty() {
                    f.0.push(format!("{file}: hard-coded uid at {here}: {child}"));
                }
                check_datasources(file, child, &here, f);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                check_datasources(file, child, &format!("{path}[{i}]"), f);
            }
        }
        _ => {}
    }
}

#[test]
fn datasources_use_the_datasource_variable() {
    let mut f = Failures::default();
    for d in dashboards() {
        check_datasources(&d.file, &d.json, "", &mut f);
        for p in panels(&d.json) {
            if p["type"] != "row" && p["type"] != "text" {
                f.check(p.get("datasource").is_some(), || {
                    format!("{}: {:?} has no datasource", d.file, title(p))
                });
            }
        }
    }
    f.assert_none("datasources");
}

#[test]
fn template_variables() {
    let mut f = Failures::default();
    for d in dashboards() {
        let file = &d.file;
        let names: Vec<&str> = variables(&d)
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        let unique: BTreeSet<&str> = names.iter().copied().collect();
        f.check(unique.len() == names.len(), || {
            format!("{file}: duplicate variables {names:?}")
        });

        let ds = variable(&d, "datasource");
        f.check(
            ds.is_some_and(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
            || {
                format!(
                    "{file}: needs a `datasource` variable of type datasource, query prometheus"
                )
            },
        );

        match variable(&d, "cluster") {
            Some(v) => {
                f.check(
                    variable_query(v) == "label_values(redis_up, cluster)",
                    || {
                        format!(
                            "{file}: cluster variable must query label_values(redis_up, cluster)"
                        )
                    },
                );
                f.check(v["multi"] == true && v["includeAll"] == true, || {
                    format!("{file}: cluster variable must be multi-value with All")
                });
            }
            None => f.0.push(format!("{file}: no `cluster` variable")),
        }

        match variable(&d, "node") {
            Some(v) => {
                f.check(
                    variable_query(v) == r#"label_values(redis_up{cluster=~"$cluster"}, addr)"#,
                    || format!("{file}: node variable must list addr of redis_up in $cluster"),
                );
                let single = file == "redis-vitals-node.json";
                f.check(v["multi"] == !single && v["includeAll"] == !single, || {
                    format!(
                        "{file}: node variable must be {}",
                        if single {
                            "single-value"
                        } else {
                            "multi-value with All"
                        }
                    )
                });
            }
            None => f.0.push(format!("{file}: no `node` variable")),
        }

        for v in variables(&d) {
            let name = v["name"].as_str().unwrap_or("");
            if v["type"] == "query" {
                f.check(v["datasource"].is_object(), || {
                    format!("{file}: variable {name} has no datasource")
                });
                f.check(!variable_query(v).is_empty(), || {
                    format!("{file}: variable {name} has no query")
                });
                for r in variable_refs(&variable_query(v)) {
                    f.check(
                        unique.contains(r.name.as_str()) || is_builtin(&r.name),
                        || format!("{file}: variable {name} uses undefined ${}", r.name),
                    );
                }
            }
            if v["includeAll"] == true {
                // The queries use the variables as regexes; ".*" keeps All cheap
                // and also covers nodes whose cluster label is empty.
                f.check(v["allValue"] == ".*", || {
                    format!("{file}: variable {name} needs allValue \".*\"")
                });
            }
        }

        for p in panels(&d.json) {
            if let Some(rep) = p["repeat"].as_str() {
                f.check(unique.contains(rep), || {
                    format!(
                        "{file}: {:?} repeats over undefined variable {rep}",
                        title(p)
                    )
                });
            }
        }
    }
    f.assert_none("template variables");
}

#[test]
fn dashboards_link_to_each_other() {
    let all = dashboards();
    let uids: Vec<String> = all
        .iter()
        .map(|d| d.json["uid"].as_str().unwrap_or("").to_string())
        .collect();
    let mut f = Failures::default();
    for d in &all {
        let links = d.json["links"].as_array().cloned().unwrap_or_default();
        for uid in &uids {
            if Some(uid.as_str()) == d.json["uid"].as_str() {
                continue;
            }
            let linked = links.iter().any(|l| {
                l["url"]
                    .as_str()
                    .is_some_and(|u| u.contains(&format!("/d/{uid}/")))
            });
            f.check(linked, || format!("{}: no dashboard link to {uid}", d.file));
        }
        // Every /d/<uid> link anywhere (data links in tables too) points to a
        // shipped dashboard.
        let text = d.json.to_string();
        for (pos, _) in text.match_indices("/d/") {
            let rest = &text[pos + 3..];
            let uid: String = rest
                .chars()
                .take_while(|c| *c != '/' && *c != '?' && *c != '"')
                .collect();
            f.check(uids.contains(&uid), || {
                format!("{}: link to unknown dashboard {uid:?}", d.file)
            });
        }
    }
    f.assert_none("links");
}

#[test]
fn readme_describes_every_dashboard() {
    let readme = fs::read_to_string(dashboard_queries::dashboards_dir().join("README.md"))
        .expect("dashboards/README.md exists");
    for d in dashboards() {
        assert!(
            readme.contains(&d.file),
            "dashboards/README.md does not mention {}",
            d.file
        );
    }
    for var in ["datasource", "cluster", "node"] {
        assert!(
            readme.contains(&format!("`{var}`")),
            "dashboards/README.md does not describe `{var}`"
        );
    }
}

// ---------------------------------------------------------------------------
// Query checks
// ---------------------------------------------------------------------------

#[test]
fn queries_use_only_defined_variables() {
    let mut f = Failures::default();
    for d in dashboards() {
        let defined: BTreeSet<String> = variables(&d)
            .iter()
            .filter_map(|v| v["name"].as_str().map(str::to_string))
            .collect();
        for q in raw_queries(&d) {
            for r in variable_refs(&q.expr) {
                f.check(defined.contains(&r.name) || is_builtin(&r.name), || {
                    format!("${} is not defined: {}", r.name, where_(&q))
                });
                if !r.name.starts_with("__") {
                    // Template variables are regexes: only inside =~"..." / !~"...".
                    let before = &q.expr[..r.start];
                    f.check(before.ends_with("=~\"") || before.ends_with("!~\""), || {
                        format!(
                            "${} used outside a =~\"...\" matcher: {}",
                            r.name,
                            where_(&q)
                        )
                    });
                }
            }
        }
    }
    f.assert_none("query variables");
}

#[test]
fn every_selector_filters_by_cluster_and_names_a_known_metric() {
    let known = known_metrics();
    let mut f = Failures::default();
    let queries = all_queries();
    assert!(
        queries.len() > 50,
        "suspiciously few queries: {}",
        queries.len()
    );
    for q in &queries {
        let lexed = lex(&q.expr);
        f.check(!lexed.selectors.is_empty(), || {
            format!("no selector: {}", where_(q))
        });
        for bare in &lexed.bare {
            f.0.push(format!(
                "{bare} has no {{...}} matcher block: {}",
                where_(q)
            ));
        }
        for (metric, matchers) in &lexed.selectors {
            f.check(matchers.contains(CLUSTER_MATCHER), || {
                format!(
                    "{metric}{{{matchers}}} does not filter with {CLUSTER_MATCHER}: {}",
                    where_(q)
                )
            });
            f.check(known.contains(metric), || {
                format!(
                    "{metric:?} is neither in docs/metrics.md nor a recording rule: {}",
                    where_(q)
                )
            });
            // The node drill-down shows one node: every per-node selector
            // names it (as the node itself, or as the master of a replica).
            let cluster_level =
                metric.starts_with("cluster:") || metric.starts_with("cluster_shard:");
            if q.dashboard == "redis-vitals-node.json" && !cluster_level {
                f.check(
                    matchers.contains(r#"addr=~"$node""#)
                        || matchers.contains(r#"master_addr=~"$node""#),
                    || {
                        format!(
                            "{metric}{{{matchers}}} does not filter by $node: {}",
                            where_(q)
                        )
                    },
                );
            }
        }
    }
    f.assert_none("selectors");
}

#[test]
fn ranges_follow_the_dashboard_interval() {
    let mut f = Failures::default();
    for q in all_queries() {
        for (range, func) in lex(&q.expr).ranges {
            f.check(
                ["$__rate_interval", "$__range", "$__interval"].contains(&range.as_str()),
                || format!("hard-coded range [{range}]: {}", where_(&q)),
            );
            if matches!(func.as_deref(), Some("rate" | "irate")) {
                f.check(range == "$__rate_interval", || {
                    format!(
                        "rate() must use [$__rate_interval], not [{range}]: {}",
                        where_(&q)
                    )
                });
            }
        }
    }
    f.assert_none("range selectors");
}

#[test]
fn every_denominator_is_guarded() {
    // maxmemory and maxclients are 0 when unlimited, and an idle node has no
    // lookups: every denominator is filtered with `> 0` so the ratio is
    // absent instead of +Inf or NaN.
    let mut f = Failures::default();
    let mut divisions = 0;
    for q in all_queries() {
        for d in lex(&q.expr).divisors {
            divisions += 1;
            let compact: String = d.chars().filter(|c| !c.is_whitespace()).collect();
            f.check(compact.contains(">0)"), || {
                format!(
                    "denominator `{d}` is not guarded with `> 0`: {}",
                    where_(&q)
                )
            });
        }
    }
    assert!(divisions > 0, "the lexer found no division at all");
    f.assert_none("denominators");
}

#[test]
fn lexer_sanity() {
    let l = lex(
        r#"sum by (cluster) (rate(redis_x_total{cluster=~"$cluster"}[$__rate_interval])) / (cluster:y{cluster=~"$cluster"} > 0) and on(cluster, addr) z"#,
    );
    assert_eq!(l.selectors.len(), 2);
    assert_eq!(l.selectors[0].0, "redis_x_total");
    assert_eq!(l.bare, vec!["z".to_string()]);
    assert_eq!(
        l.ranges,
        vec![("$__rate_interval".to_string(), Some("rate".to_string()))]
    );
    assert_eq!(
        l.divisors,
        vec![r#"(cluster:y{cluster=~"$cluster"} > 0)"#.to_string()]
    );
    let l = lex(r#"a{x="1/2"} / on(c) group_left() max by (c) (b{c="2"})"#);
    assert_eq!(
        l.divisors,
        vec![r#"on(c) group_left() max by (c) (b{c="2"})"#.to_string()]
    );
    assert_eq!(
        substitute(
            r#"rate(m{cluster=~"$cluster", addr=~"${node}"}[$__rate_interval]) @ end() "$1""#
        ),
        r#"rate(m{cluster=~".*", addr=~".*"}[1m]) @ end() "$1""#
    );
}

// ---------------------------------------------------------------------------
// PromQL syntax, checked by promtool
// ---------------------------------------------------------------------------

fn promtool() -> String {
    std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_string())
}

/// A unique scratch directory under the system temp dir.
fn scratch_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "redis-vitals-dashboards-{}-{nanos}",
        std::process::id()
    ));
    fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

#[test]
fn queries_parse_as_promql() {
    // promtool 2.42 has no `check query`: every query becomes a recording rule
    // and `promtool check rules` parses them all.
    let queries = dashboard_queries::dashboard_queries();
    assert!(!queries.is_empty());
    let mut yaml = String::from("groups:\n  - name: dashboards\n    rules:\n");
    for (n, (dash, panel, expr)) in queries.iter().enumerate() {
        let panel = panel.replace(['\n', '\r'], " ");
        yaml.push_str(&format!("      # q{n}: {dash} / {panel}\n"));
        yaml.push_str(&format!(
            "      - record: dashboard:q{n}\n        expr: |-\n"
        ));
        for line in expr.lines() {
            yaml.push_str(&format!("          {line}\n"));
        }
    }
    let dir = scratch_dir();
    let file = dir.join("dashboard-queries.rules.yml");
    fs::write(&file, &yaml).expect("write rules file");

    let output = Command::new(promtool())
        .arg("check")
        .arg("rules")
        .arg(&file)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{}` ({e}): install promtool (Debian package `prometheus`, see \
                 scripts/test.sh) or set PROMTOOL; this test does not skip",
                promtool()
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let index: Vec<String> = queries
        .iter()
        .enumerate()
        .map(|(n, (d, p, e))| format!("q{n}: {d} / {p:?}: {e}"))
        .collect();
    assert!(
        output.status.success(),
        "promtool check rules rejected dashboard queries ({}):\n{stdout}\n{stderr}\nqueries:\n{}",
        file.display(),
        index.join("\n")
    );
    let want = format!("SUCCESS: {} rules found", queries.len());
    assert!(
        stdout.contains(&want),
        "expected `{want}` from promtool, got:\n{stdout}\n{stderr}"
    );
    fs::remove_dir_all(&dir).ok();
}

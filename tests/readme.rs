//! Keeps the documentation true: every metric family the exporter can emit
//! is in docs/metrics.md, every command-line flag is in
//! docs/configuration.md, and every relative link in README.md and docs/
//! points at a file (and heading) that exists.

use std::path::{Path, PathBuf};

use clap::CommandFactory;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn every_metric_is_documented() {
    let doc = read("docs/metrics.md");
    let missing: Vec<&str> = redis_vitals::expose::FAMILIES
        .iter()
        .map(|f| f.name)
        .filter(|n| !doc.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/metrics.md lacks these metrics: {missing:?}"
    );
}

#[test]
fn every_flag_is_documented() {
    let doc = read("docs/configuration.md");
    let cmd = redis_vitals::config::Flags::command();
    let missing: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| !["help", "version"].contains(l))
        .map(|l| format!("--{l}"))
        .filter(|f| !doc.contains(&format!("`{f}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md lacks these flags: {missing:?}"
    );
}

/// README.md and every Markdown file directly under docs/.
fn documents() -> Vec<PathBuf> {
    let mut out = vec![root().join("README.md")];
    for e in std::fs::read_dir(root().join("docs")).expect("docs/") {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The lines of a Markdown text outside fenced code blocks, with inline
/// code spans removed (neither holds links). A code span may go on over a
/// line break; a blank line ends it.
fn prose(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            in_code = false;
            continue;
        }
        if fenced {
            continue;
        }
        if line.trim().is_empty() {
            in_code = false;
        }
        let mut kept = String::new();
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            } else if !in_code {
                kept.push(c);
            }
        }
        out.push(kept);
    }
    out
}

/// The targets of the inline links `[text](target)` of a Markdown text.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(text) {
        let mut rest = line.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or("");
            out.push(target.to_string());
            rest = &after[end..];
        }
    }
    out
}

/// The anchors GitHub gives the headings of a Markdown text: lower case,
/// punctuation dropped, spaces as hyphens, `-1`, `-2`... for repeats.
fn anchors(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for line in text.lines().scan(false, |fenced, l| {
        if l.trim_start().starts_with("```") {
            *fenced = !*fenced;
            return Some(None);
        }
        Some((!*fenced).then_some(l))
    }) {
        let Some(line) = line else { continue };
        let Some(title) = line.strip_prefix('#') else {
            continue;
        };
        let title = title.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let slug: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.iter().filter(|s| **s == slug).count();
        out.push(if n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        seen.push(slug);
    }
    out
}

#[test]
fn every_relative_link_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        let name = doc.strip_prefix(root()).unwrap().display().to_string();
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(path)
            };
            if !file.exists() {
                broken.push(format!("{name}: {target} (no such file)"));
                continue;
            }
            if let Some(anchor) = anchor {
                if file.extension().is_some_and(|x| x == "md") {
                    let there = std::fs::read_to_string(&file).unwrap();
                    if !anchors(&there).iter().any(|a| a == anchor) {
                        broken.push(format!("{name}: {target} (no such heading)"));
                    }
                }
            }
        }
    }
    assert!(checked > 20, "found only {checked} relative links");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn anchors_follow_github() {
    let text = "# Redis Cluster\n```\n# not a heading\n```\n## Redis Cluster, from INFO\n## `--web.config.file` and HTTPS\n## The exporter's own series\n## Redis Cluster\n";
    assert_eq!(
        anchors(text),
        [
            "redis-cluster",
            "redis-cluster-from-info",
            "--webconfigfile-and-https",
            "the-exporters-own-series",
            "redis-cluster-1"
        ]
    );
    assert_eq!(
        links("see [a](docs/a.md#x) and `[b](no.md)` and [c](<https://e.org>)\n`x\n[d](no.md)` [e](e.md)"),
        ["docs/a.md#x", "<https://e.org>", "e.md"]
    );
}

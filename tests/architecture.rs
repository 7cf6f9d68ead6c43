//! The shape of `src/`: layers are folders, and no import goes in a circle,
//! between files or between layers (lib.rs names the layers).
//!
//! It reads every `crate::…` path in the code (comments left out), maps it
//! to the file that defines it, and looks for a cycle. Run it alone with
//! `cargo test --test architecture`; it prints the cycle it finds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under src/ except the binaries, as a module path
/// (`collect::poller`, `web`, `config`).
fn modules() -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src(), &mut files);
    let mut out = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src()).unwrap().with_extension("");
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts[0] == "bin" || parts == ["main"] || parts == ["lib"] {
            continue;
        }
        let module = match parts.last().map(String::as_str) {
            Some("mod") => parts[..parts.len() - 1].join("::"),
            _ => parts.join("::"),
        };
        out.insert(module, f);
    }
    out
}

/// The code of a file without comments and without its `#[cfg(test)]`
/// module (tests may reach anywhere).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules a file imports: each `crate::a::b::…` path, cut to the
/// longest prefix that is a module.
fn imports(code: &str, modules: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        for n in (1..=segs.len()).rev() {
            let m = segs[..n].join("::");
            if modules.contains_key(&m) {
                out.insert(m);
                break;
            }
        }
    }
    out
}

/// A cycle in `graph`, if any, as the list of its nodes.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|s| s == m).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(n, graph, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

fn file_graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    modules
        .iter()
        .map(|(m, path)| {
            let mut deps = imports(&code(path), &modules);
            deps.remove(m);
            (m.clone(), deps)
        })
        .collect()
}

/// The layer of a module: its top folder (or file).
fn layer(m: &str) -> String {
    m.split("::").next().unwrap_or(m).to_string()
}

#[test]
fn no_module_imports_in_a_circle() {
    let graph = file_graph();
    assert!(graph.len() > 20, "found only {} modules", graph.len());
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "modules import each other in a circle: {}",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn layers_depend_one_way() {
    let mut layers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, deps) in file_graph() {
        let from = layer(&m);
        let entry = layers.entry(from.clone()).or_default();
        for d in deps {
            let to = layer(&d);
            if to != from {
                entry.insert(to);
            }
        }
    }
    if let Some(cycle) = find_cycle(&layers) {
        panic!(
            "layers depend on each other in a circle: {}",
            cycle.join(" -> ")
        );
    }
    // The web layer sees the daemon only through `web::Site`, and rendering
    // knows nothing of collection.
    assert!(!layers["web"].contains("daemon"), "{:?}", layers["web"]);
    assert!(
        !layers["expose"].contains("collect"),
        "{:?}",
        layers["expose"]
    );
}

#[test]
fn the_checker_finds_a_cycle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.insert("a".into(), ["b".to_string()].into());
    g.insert("b".into(), ["c".to_string()].into());
    g.insert("c".into(), ["a".to_string()].into());
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);
    g.get_mut("c").unwrap().clear();
    assert_eq!(find_cycle(&g), None);
    let modules = modules();
    let found = imports(
        "use crate::collect::poller::Seat; crate::web::config::X",
        &modules,
    );
    assert_eq!(
        found,
        ["collect::poller", "web::config"].map(String::from).into()
    );
}

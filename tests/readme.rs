//! Keeps README.md true: every metric family the exporter can emit and every
//! command-line flag is documented there.

use clap::CommandFactory;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md")
}

#[test]
fn every_metric_is_documented() {
    let readme = readme();
    let missing: Vec<&str> = redis_vitals::exposition::FAMILIES
        .iter()
        .map(|f| f.name)
        .filter(|n| !readme.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md lacks these metrics: {missing:?}"
    );
}

#[test]
fn every_flag_is_documented() {
    let readme = readme();
    let cmd = redis_vitals::config::Flags::command();
    let missing: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| !["help", "version"].contains(l))
        .map(|l| format!("--{l}"))
        .filter(|f| !readme.contains(&format!("`{f}`")) && !readme.contains(&format!("`{f}` ")))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md lacks these flags: {missing:?}"
    );
}

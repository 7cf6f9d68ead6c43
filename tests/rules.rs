//! The bundled Prometheus rules (`alerts/`) are valid, their promtool unit
//! tests pass, and they stay consistent with the runbook.
//!
//! Runs `promtool check rules` on the rule files and `promtool test rules` on
//! every `alerts/tests/*.yml`. promtool is required: when it cannot be found
//! these tests fail (they never skip), because a rule bundle that was not
//! checked must not look green. Set `PROMTOOL=/path/to/promtool` to use a
//! promtool that is not on `PATH`.
//!
//! The consistency checks read the YAML line by line (std only); they rely on
//! the layout of the bundled files (`- alert: Name`, `runbook_url: ...`,
//! `alertname: Name` followed by `- exp_labels:` for firing cases).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::process::{Command, Output};

/// The rule files shipped to users, relative to the crate root.
const RULE_FILES: [&str; 2] = [
    "alerts/redis-vitals.rules.yml",
    "alerts/redis-vitals.recording.yml",
];
/// Rule files only used by the unit tests (examples of user overrides).
const FIXTURE_DIR: &str = "alerts/tests/fixtures";
const TEST_DIR: &str = "alerts/tests";
const ALERT_FILE: &str = "alerts/redis-vitals.rules.yml";
const RUNBOOK: &str = "docs/runbook.md";
const RUNBOOK_URL_PREFIX: &str =
    "https://github.com/redis-vitals/redis-vitals/blob/main/docs/runbook.md#";
const SEVERITIES: [&str; 3] = ["critical", "warning", "info"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn promtool() -> OsString {
    std::env::var_os("PROMTOOL").unwrap_or_else(|| OsString::from("promtool"))
}

/// Runs promtool from the crate root; a missing promtool is a test failure.
fn run_promtool(args: &[&str]) -> Output {
    let tool = promtool();
    match Command::new(&tool).args(args).current_dir(root()).output() {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "promtool not found (tried {tool:?}). The alert rules cannot be checked without \
             it, so this test fails instead of skipping. Install it (Debian/Ubuntu: \
             `apt-get install prometheus`, which ships /usr/bin/promtool; or the promtool \
             binary from a Prometheus release tarball) or point PROMTOOL at it."
        ),
        Err(e) => panic!("cannot run {tool:?}: {e}"),
    }
}

/// promtool's command line and output, for failure messages.
fn describe(args: &[&str], output: &Output) -> String {
    format!(
        "$ promtool {}\nexit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    )
}

/// `*.yml` / `*.yaml` files directly in `dir` (relative to the crate root),
/// sorted, as paths relative to the crate root.
fn yaml_files(dir: &str) -> Vec<String> {
    let entries =
        fs::read_dir(root().join(dir)).unwrap_or_else(|e| panic!("cannot list {dir}: {e}"));
    let mut files: Vec<String> = entries
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
                .path()
        })
        .filter(|path| path.is_file())
        .filter(|path| {
            matches!(
                path.extension().and_then(|ext| ext.to_str()),
                Some("yml" | "yaml")
            )
        })
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            format!("{dir}/{name}")
        })
        .collect();
    files.sort();
    files
}

fn read(path: &str) -> String {
    fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

#[test]
fn promtool_check_rules_accepts_the_rule_files() {
    let mut files: Vec<String> = RULE_FILES.iter().map(ToString::to_string).collect();
    files.extend(yaml_files(FIXTURE_DIR));
    for file in &files {
        assert!(root().join(file).is_file(), "missing rule file {file}");
    }
    let mut args = vec!["check", "rules"];
    args.extend(files.iter().map(String::as_str));
    let output = run_promtool(&args);
    assert!(
        output.status.success(),
        "promtool rejected the rule files:\n{}",
        describe(&args, &output)
    );
}

#[test]
fn promtool_unit_tests_pass() {
    let tests = yaml_files(TEST_DIR);
    assert!(
        !tests.is_empty(),
        "no promtool unit tests found in {TEST_DIR}"
    );
    // One promtool run per file, so that a failure names its file; all files
    // run before reporting.
    let mut failures = Vec::new();
    for test in &tests {
        let args = ["test", "rules", test.as_str()];
        let output = run_promtool(&args);
        if !output.status.success() {
            failures.push(describe(&args, &output));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} promtool unit test files failed:\n\n{}",
        failures.len(),
        tests.len(),
        failures.join("\n\n")
    );
}

/// One `- alert:` rule of the alert file, as the lines of its block.
struct AlertRule {
    name: String,
    line: usize,
    body: Vec<String>,
}

fn alert_rules() -> Vec<AlertRule> {
    let text = read(ALERT_FILE);
    // Blocks start at `- alert:`, `- record:` or `- name:` (a group); only
    // alert blocks are kept.
    let mut blocks: Vec<AlertRule> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix("- alert:") {
            blocks.push(AlertRule {
                name: name.trim().to_string(),
                line: index + 1,
                body: Vec::new(),
            });
        } else if trimmed.starts_with("- record:") || trimmed.starts_with("- name:") {
            blocks.push(AlertRule {
                name: String::new(),
                line: index + 1,
                body: Vec::new(),
            });
        } else if let Some(block) = blocks.last_mut() {
            block.body.push(line.to_string());
        }
    }
    blocks.retain(|block| !block.name.is_empty());
    assert!(!blocks.is_empty(), "no alerts found in {ALERT_FILE}");
    blocks
}

/// The value of `key:` in a rule body (first occurrence), unquoted.
fn field<'a>(body: &'a [String], key: &str) -> Option<&'a str> {
    body.iter().find_map(|line| {
        line.trim_start()
            .strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|value| value.trim().trim_matches('"').trim_matches('\''))
    })
}

/// GitHub's heading anchors: lower case, spaces to hyphens, punctuation other
/// than hyphens and underscores dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn runbook_anchors() -> BTreeSet<String> {
    let mut in_code = false;
    let mut anchors = BTreeSet::new();
    for line in read(RUNBOOK).lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code && line.starts_with('#') {
            anchors.insert(anchor(line.trim_start_matches('#')));
        }
    }
    anchors
}

#[test]
fn every_alert_has_severity_annotations_and_a_runbook_section() {
    let anchors = runbook_anchors();
    let mut problems = Vec::new();
    for rule in alert_rules() {
        let at = format!("{ALERT_FILE}:{} ({})", rule.line, rule.name);
        match field(&rule.body, "severity") {
            Some(severity) if SEVERITIES.contains(&severity) => {}
            other => problems.push(format!(
                "{at}: severity {other:?}, want one of {SEVERITIES:?}"
            )),
        }
        for key in ["summary", "description"] {
            if field(&rule.body, key).is_none() {
                problems.push(format!("{at}: no {key} annotation"));
            }
        }
        match field(&rule.body, "runbook_url") {
            None => problems.push(format!("{at}: no runbook_url annotation")),
            Some(url) => match url.strip_prefix(RUNBOOK_URL_PREFIX) {
                None => problems.push(format!(
                    "{at}: runbook_url {url} is not under {RUNBOOK_URL_PREFIX}"
                )),
                Some(section) => {
                    if section != rule.name.to_lowercase() {
                        problems.push(format!(
                            "{at}: runbook_url anchor #{section}, want #{}",
                            rule.name.to_lowercase()
                        ));
                    }
                    if !anchors.contains(section) {
                        problems.push(format!("{at}: {RUNBOOK} has no section #{section}"));
                    }
                }
            },
        }
    }
    assert!(
        problems.is_empty(),
        "alert rule problems:\n{}",
        problems.join("\n")
    );
}

/// Alert names that some unit test expects to fire (an `alertname:` case
/// with at least one `- exp_labels:` entry), with the files they are in.
fn alerts_with_firing_tests() -> BTreeMap<String, BTreeSet<String>> {
    let mut firing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in yaml_files(TEST_DIR) {
        let mut current: Option<String> = None;
        for line in read(&file).lines() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("- eval_time:") || trimmed.starts_with("- expr:") {
                current = None;
            } else if let Some(name) = trimmed.strip_prefix("alertname:") {
                current = Some(name.trim().to_string());
            } else if trimmed.starts_with("- exp_labels:") {
                if let Some(name) = &current {
                    firing.entry(name.clone()).or_default().insert(file.clone());
                }
            }
        }
    }
    firing
}

#[test]
fn every_alert_has_a_unit_test_where_it_fires() {
    let firing = alerts_with_firing_tests();
    let names: BTreeSet<String> = alert_rules().into_iter().map(|rule| rule.name).collect();
    let untested: Vec<&String> = names
        .iter()
        .filter(|name| !firing.contains_key(*name))
        .collect();
    assert!(
        untested.is_empty(),
        "alerts without a promtool test case in which they fire: {untested:?}"
    );
    let unknown: Vec<&String> = firing
        .keys()
        .filter(|name| !names.contains(*name))
        .collect();
    assert!(
        unknown.is_empty(),
        "tests expect alerts that do not exist: {unknown:?}"
    );
}

#[test]
fn runbook_anchors_follow_github() {
    assert_eq!(anchor(" RedisDown"), "redisdown");
    assert_eq!(anchor(" Overriding thresholds"), "overriding-thresholds");
    assert_eq!(anchor(" Redis Cluster"), "redis-cluster");
}

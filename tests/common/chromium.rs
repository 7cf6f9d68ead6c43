//! Headless Chromium for page tests: [`load`] opens one URL in a fresh
//! profile and returns the DOM after the load event, every console message,
//! every request the page itself made, and optionally a screenshot.
//!
//! What Chromium 156 (Debian's `chromium`) tells, found with deliberately
//! broken pages (tests/insight_page.rs keeps one to prove the detector):
//! with `--enable-logging=stderr --v=0`, every console message — a
//! `console.*` call, an uncaught exception (`"Uncaught ReferenceError: …"`),
//! a Content-Security-Policy violation (`"… violates the following Content
//! Security Policy directive …"`; older versions say `"Refused to …"`) — is
//! one stderr line `[pid:tid:time:INFO:CONSOLE:LINE] "message", source: URL
//! (LINE)` (older versions: `CONSOLE(LINE)`), all at level INFO whatever the
//! console level. A subresource that fails to load (404, connection
//! refused, missing file) prints nothing there; the network log
//! (`--log-net-log`) lists every request, and the page's own are those with
//! an initiator (the browser's background requests have `"not an
//! origin"`). A self-contained page makes none.
#![allow(dead_code)]

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one page load may take, browser start included: a cold start
/// takes about a second here, and a loaded 2-core CI machine many times
/// that.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(90);
/// Width and height of the window, and so of the screenshot.
pub const WINDOW: &str = "1400,2000";

/// The browser: `$CHROMIUM_BIN`, else `chromium` on the PATH.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM_BIN") {
        return Some(PathBuf::from(p));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
}

/// One page load.
#[derive(Debug)]
pub struct Loaded {
    /// The DOM after the load event, serialised (`--dump-dom`).
    pub dom: String,
    /// Every console message, as Chromium quotes it, with its source.
    pub console: Vec<String>,
    /// Other stderr lines that tell of a page error in older formats
    /// (`Uncaught`, `Refused to`) and were not console lines.
    pub page_errors: Vec<String>,
    /// URLs the page itself asked for after its document (subresources,
    /// favicon), whether they loaded or not.
    pub requests: Vec<String>,
    /// Where the screenshot was written, when one was asked for.
    pub screenshot: Option<PathBuf>,
    /// Chromium's whole stderr, for failure messages.
    pub stderr: String,
}

impl Loaded {
    /// What a page that runs no script and fetches nothing must not
    /// produce: console messages, page errors, requests of its own.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .console
            .iter()
            .map(|m| format!("console: {m}"))
            .collect();
        out.extend(self.page_errors.iter().map(|m| format!("page error: {m}")));
        out.extend(self.requests.iter().map(|u| format!("request: {u}")));
        out
    }
}

/// Loads `url` in a new headless browser with a temporary profile, waits
/// for it to exit (it does after the load event) at most [`LOAD_TIMEOUT`],
/// and reads what it reported. `screenshot`: where to write a PNG of the
/// window.
pub fn load(url: &str, screenshot: Option<&Path>) -> Result<Loaded, String> {
    let bin = binary().ok_or("chromium not found (set CHROMIUM_BIN or install chromium)")?;
    let profile = tempfile::tempdir().map_err(|e| format!("temporary profile: {e}"))?;
    let net_log = profile.path().join("net-log.json");
    let mut cmd = Command::new(&bin);
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-logging=stderr",
        "--v=0",
        // Fewer background requests in the network log, and no first-run
        // work on a fresh profile.
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
    ])
    .arg(format!("--window-size={WINDOW}"))
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(format!("--log-net-log={}", net_log.display()))
    .arg("--dump-dom");
    if let Some(path) = screenshot {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        cmd.arg(format!("--screenshot={}", path.display()));
    }
    cmd.arg(url);
    let out = run_group(cmd, LOAD_TIMEOUT)?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{} exited with {}: {stderr}",
            bin.display(),
            out.status
        ));
    }
    let (console, page_errors) = console_messages(&stderr);
    let log = std::fs::read_to_string(&net_log)
        .map_err(|e| format!("network log {}: {e}", net_log.display()))?;
    let requests = page_requests(&log)?;
    if let Some(path) = screenshot {
        let png = std::fs::read(path).map_err(|e| format!("screenshot {}: {e}", path.display()))?;
        if !png.starts_with(b"\x89PNG") {
            return Err(format!("{} is not a PNG", path.display()));
        }
    }
    Ok(Loaded {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        console,
        page_errors,
        requests,
        screenshot: screenshot.map(Path::to_path_buf),
        stderr,
    })
}

/// The console messages in Chromium's stderr, and the other lines that
/// name a page error.
pub fn console_messages(stderr: &str) -> (Vec<String>, Vec<String>) {
    let mut console = Vec::new();
    let mut errors = Vec::new();
    for line in stderr.lines() {
        // `[…:INFO:CONSOLE:4] "msg", source: …` or `[…:INFO:CONSOLE(4)] …`.
        let head_end = line.find("] ");
        let head = head_end.map_or("", |i| &line[..i]);
        if head.starts_with('[') && head.contains(":CONSOLE") {
            console.push(line[head_end.unwrap() + 2..].to_string());
        } else if line.contains("Uncaught") || line.contains("Refused to") {
            errors.push(line.to_string());
        }
    }
    (console, errors)
}

/// The URLs of the requests a page made itself, from a network log:
/// `URL_REQUEST_START_JOB` events with an initiator.
pub fn page_requests(net_log: &str) -> Result<Vec<String>, String> {
    let v: serde_json::Value =
        serde_json::from_str(net_log).map_err(|e| format!("network log is not JSON: {e}"))?;
    let start_job = v["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        .as_u64()
        .ok_or("network log without URL_REQUEST_START_JOB")?;
    let events = v["events"].as_array().ok_or("network log without events")?;
    Ok(events
        .iter()
        .filter(|e| e["type"].as_u64() == Some(start_job))
        .filter_map(|e| {
            let p = &e["params"];
            let initiator = p["initiator"].as_str()?;
            (initiator != "not an origin").then(|| p["url"].as_str().unwrap_or("?").to_string())
        })
        .collect())
}

/// Runs `cmd` in a process group of its own and kills the whole group at
/// the deadline: the browser's helper processes hold its pipes open.
fn run_group(mut cmd: Command, timeout: Duration) -> Result<std::process::Output, String> {
    let desc = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot spawn {desc}: {e}"))?;
    let pgid = child.id();
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + timeout;
    let kill_group = || {
        // Our own group, by its id: the browser and its helpers.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => {
                // A helper left behind would hold the pipes open.
                kill_group();
                break Ok(s);
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            other => {
                kill_group();
                let _ = child.wait();
                break Err(match other {
                    Err(e) => format!("waiting for {desc}: {e}"),
                    _ => format!("{desc} did not exit within {timeout:?}"),
                });
            }
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    match status {
        Ok(status) => Ok(std::process::Output {
            status,
            stdout,
            stderr,
        }),
        Err(e) => Err(format!(
            "{e}; stderr so far: {}",
            String::from_utf8_lossy(&stderr)
        )),
    }
}

//! Shared synchronous harness for the integration tests: real `redis-server`
//! processes on free loopback ports, a strict Prometheus text parser and a
//! tiny HTTP client. Every wait has a deadline and every failure names what
//! it was waiting for, so a red test explains itself.
//!
//! Included by many test crates via `mod common;`, each of which uses only a
//! part of it.
#![allow(dead_code)]

/// Headless Chromium, for the page tests.
pub mod chromium;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// How often `wait_until` re-checks its condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// Deadline for a freshly spawned server to answer.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for a replica's link to come up.
pub const REPLICA_LINK_TIMEOUT: Duration = Duration::from_secs(15);
/// Deadline for a cluster to settle after create / add / forget.
pub const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline for one `redis-cli` invocation, so a wedged server cannot hang a
/// test forever.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// Read/connect timeout of the harness's own RESP connections.
const RESP_TIMEOUT: Duration = Duration::from_secs(5);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

fn redis_server_bin() -> String {
    std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_string())
}

fn redis_cli_bin() -> String {
    std::env::var("REDIS_CLI_BIN").unwrap_or_else(|_| "redis-cli".to_string())
}

// ---------------------------------------------------------------------------
// Ports and waiting
// ---------------------------------------------------------------------------

/// Ports already handed out in this process. The kernel may give the same
/// ephemeral port to two `bind(0)` calls once the first listener is closed,
/// and parallel tests would then fight over it.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn handed_out() -> std::sync::MutexGuard<'static, BTreeSet<u16>> {
    // A panicking test must not poison port allocation for all the others.
    HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner())
}

/// A loopback port that was free a moment ago and has not been handed out
/// before by this process.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"));
        let port = listener.local_addr().expect("local_addr").port();
        if handed_out().insert(port) {
            return port;
        }
    }
    panic!("could not find a free loopback port not already handed out");
}

/// A free port P for a cluster node whose bus port P+10000 is free too (and
/// below 65536).
pub fn free_cluster_port() -> u16 {
    for _ in 0..1000 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"));
        let port = listener.local_addr().expect("local_addr").port();
        let Some(bus) = port.checked_add(10000) else {
            continue;
        };
        // Holding both listeners while checking keeps the pair honest.
        let Ok(_bus_listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, bus)) else {
            continue;
        };
        let mut taken = handed_out();
        if taken.contains(&port) || taken.contains(&bus) {
            continue;
        }
        taken.insert(port);
        taken.insert(bus);
        return port;
    }
    panic!("could not find a free loopback port P with P+10000 free as well");
}

/// Polls `f` every 25 ms until it returns `Some`, or panics with
/// "timed out after {timeout:?} waiting for {what}".
pub fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Like [`wait_until`], but `f` explains why it is not done yet, and the last
/// explanation goes into the panic message.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match f() {
            Ok(v) => return v,
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last state: {last}");
        }
        thread::sleep(POLL_INTERVAL);
    }
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// Runs a command to completion, killing it at the deadline. Output is
/// drained on threads so a chatty child cannot block on a full pipe.
pub fn run_with_deadline(mut cmd: Command, timeout: Duration) -> Result<Output, String> {
    let desc = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot spawn {desc}: {e}"))?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("{desc} did not exit within {timeout:?}"));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("waiting for {desc}: {e}"));
            }
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    match status {
        Ok(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        Err(e) => Err(format!(
            "{e}; stdout so far: {}; stderr so far: {}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        )),
    }
}

/// Sends a signal by name via `kill(1)`, since the tests avoid the libc crate.
fn signal(pid: u32, sig: &str) -> Result<(), String> {
    let out = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run kill -{sig} {pid}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "kill -{sig} {pid} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            _ => return None,
        }
    }
}

// ---------------------------------------------------------------------------
// Minimal RESP2 client, so that polling loops need not spawn redis-cli 40
// times a second per node.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// The reply as text for simple and bulk strings and integers.
    pub fn text(&self) -> Option<String> {
        match self {
            Resp::Simple(s) => Some(s.clone()),
            Resp::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Resp::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Resp::Error(_))
    }
}

pub fn write_resp_command(w: &mut impl Write, args: &[&str]) -> io::Result<()> {
    let mut buf = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        buf.extend_from_slice(a.as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    w.write_all(&buf)
}

fn read_crlf_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut buf = Vec::new();
    r.read_until(b'\n', &mut buf)?;
    if buf.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn bad_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

pub fn read_resp(r: &mut impl BufRead) -> io::Result<Resp> {
    let line = read_crlf_line(r)?;
    let mut chars = line.chars();
    let kind = chars
        .next()
        .ok_or_else(|| bad_data("empty RESP line".into()))?;
    let rest = chars.as_str();
    let int = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| bad_data(format!("bad RESP integer {s:?}")))
    };
    Ok(match kind {
        '+' => Resp::Simple(rest.to_string()),
        '-' => Resp::Error(rest.to_string()),
        ':' => Resp::Int(int(rest)?),
        '$' => {
            let n = int(rest)?;
            if n < 0 {
                Resp::Bulk(None)
            } else {
                let mut data = vec![0; n as usize + 2];
                r.read_exact(&mut data)?;
                data.truncate(n as usize);
                Resp::Bulk(Some(data))
            }
        }
        '*' => {
            let n = int(rest)?;
            if n < 0 {
                Resp::Array(None)
            } else {
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(read_resp(r)?);
                }
                Resp::Array(Some(items))
            }
        }
        _ => return Err(bad_data(format!("unexpected RESP line {line:?}"))),
    })
}

/// Credentials the harness uses for its own connections to a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliAuth {
    pub user: Option<String>,
    pub pass: String,
}

/// One connection: optional AUTH, then `commands` pipelined. A failed AUTH is
/// an `Err`; error replies to the commands themselves are returned as
/// `Resp::Error`.
pub fn resp_exchange(
    port: u16,
    auth: Option<&CliAuth>,
    commands: &[&[&str]],
    timeout: Duration,
) -> Result<Vec<Resp>, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|_| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("set timeouts on {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let io_err = |e: io::Error| format!("{addr}: {e}");
    if let Some(a) = auth {
        match &a.user {
            Some(u) => write_resp_command(&mut writer, &["AUTH", u, &a.pass]),
            None => write_resp_command(&mut writer, &["AUTH", &a.pass]),
        }
        .map_err(io_err)?;
    }
    for c in commands {
        write_resp_command(&mut writer, c).map_err(io_err)?;
    }
    if auth.is_some() {
        if let Resp::Error(e) = read_resp(&mut reader).map_err(io_err)? {
            return Err(format!("AUTH on {addr} failed: {e}"));
        }
    }
    commands
        .iter()
        .map(|_| read_resp(&mut reader).map_err(io_err))
        .collect()
}

// ---------------------------------------------------------------------------
// RedisServer
// ---------------------------------------------------------------------------

enum SpawnError {
    PortInUse(String),
    Fatal(String),
}

/// A `redis-server` child process on 127.0.0.1 with its own temporary
/// directory (`--dir`), which also holds `redis.log` and the captured
/// stdout/stderr. Killed on drop.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    extra_args: Vec<String>,
    auth: Option<CliAuth>,
    paused: AtomicBool,
}

impl RedisServer {
    /// Starts a server on a free port with `extra_args` appended to the
    /// harness defaults (later arguments win in redis-server), and waits
    /// until it answers. `--requirepass X` and `--user` directives are noted
    /// so that `cli()` authenticates; see [`RedisServer::set_cli_auth`].
    pub fn start(extra_args: &[&str]) -> RedisServer {
        Self::start_with_port_picker(free_port, extra_args)
    }

    /// As [`RedisServer::start`] on a given port (no retry if it is taken).
    pub fn start_on_port(port: u16, extra_args: &[&str]) -> RedisServer {
        let mut server = Self::new(port, extra_args);
        match server.spawn_and_wait() {
            Ok(()) => server,
            Err(SpawnError::PortInUse(m) | SpawnError::Fatal(m)) => {
                // Its log is in the message already; Drop would repeat it.
                drop(server);
                panic!("{m}")
            }
        }
    }

    fn start_with_port_picker(pick: fn() -> u16, extra_args: &[&str]) -> RedisServer {
        // Another process may grab the port between our probe and
        // redis-server's bind; pick a new one rather than fail the test.
        let mut last = String::new();
        for _ in 0..5 {
            let mut server = Self::new(pick(), extra_args);
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(SpawnError::PortInUse(m)) => last = m,
                Err(SpawnError::Fatal(m)) => {
                    drop(server);
                    panic!("{m}")
                }
            }
        }
        panic!("redis-server kept finding its port in use; last attempt: {last}");
    }

    fn new(port: u16, extra_args: &[&str]) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("redis-vitals-test-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir for redis-server: {e}"));
        // The harness would probe the wrong port and time out obscurely.
        assert!(
            !extra_args.iter().any(|a| a.eq_ignore_ascii_case("--port")),
            "pass the port to RedisServer::start_on_port, not as --port in {extra_args:?}"
        );
        let extra_args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let auth = auth_from_args(&extra_args);
        RedisServer {
            port,
            dir,
            child: None,
            extra_args,
            auth,
            paused: AtomicBool::new(false),
        }
    }

    /// The full argument list given to redis-server (without the binary).
    pub fn args(&self) -> Vec<String> {
        let dir = self.dir().display().to_string();
        let mut args: Vec<String> = [
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir,
            "--daemonize",
            "no",
            "--logfile",
            &self.log_path().display().to_string(),
            // The 7.0 default of 5 s would make every full sync (replica
            // start, cluster create) wait 5 s for more replicas to join.
            "--repl-diskless-sync-delay",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// The extra arguments given to `start`.
    pub fn extra_args(&self) -> &[String] {
        &self.extra_args
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir().join("redis.log")
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir().join("stderr.log")
    }

    fn spawn_and_wait(&mut self) -> Result<(), SpawnError> {
        // Appending keeps the output of earlier runs for post-mortems.
        let open = |p: PathBuf| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", p.display()))
        };
        let stderr: File = open(self.stderr_path());
        let stdout: File = open(self.dir().join("stdout.log"));
        let args = self.args();
        let child = Command::new(redis_server_bin())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {} {args:?}: {e}", redis_server_bin()));
        let pid = child.id();
        self.child = Some(child);
        self.paused.store(false, Ordering::SeqCst);

        let deadline = Instant::now() + START_TIMEOUT;
        let mut last;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                let log = self.log();
                let msg = format!(
                    "redis-server on port {} exited during startup with {status}; args {args:?}\n--- log ---\n{log}",
                    self.port
                );
                return Err(if log.contains("Address already in use") {
                    SpawnError::PortInUse(msg)
                } else {
                    SpawnError::Fatal(msg)
                });
            }
            match self.probe_ready(pid) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                if let Some(mut c) = self.child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(SpawnError::Fatal(format!(
                    "timed out after {START_TIMEOUT:?} waiting for redis-server on port {} to answer; last: {last}; args {args:?}\n--- log ---\n{}",
                    self.port,
                    self.log()
                )));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Ready means our own process answers: a foreign server that already
    /// owns the port would also answer PING, so compare process ids.
    fn probe_ready(&self, pid: u32) -> Result<(), String> {
        let reply = resp_exchange(
            self.port,
            self.auth.as_ref(),
            &[&["INFO", "server"]],
            Duration::from_secs(1),
        )?;
        match &reply[0] {
            Resp::Error(e) if e.starts_with("NOAUTH") && self.auth.is_none() => Ok(()),
            Resp::Error(e) => Err(e.clone()),
            r => {
                let text = r.text().unwrap_or_default();
                let answered = parse_info(&text).remove("process_id").unwrap_or_default();
                if answered == pid.to_string() {
                    Ok(())
                } else {
                    Err(format!(
                        "port {} answered by process {answered:?}, not ours ({pid})",
                        self.port
                    ))
                }
            }
        }
    }

    /// "127.0.0.1:P"
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// "redis://127.0.0.1:P" (no credentials).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The credentials `cli()` and the harness use, if any.
    pub fn cli_auth(&self) -> Option<&CliAuth> {
        self.auth.as_ref()
    }

    /// Overrides the credentials used by `cli()` and the harness, e.g. after
    /// `CONFIG SET requirepass` or `ACL SETUSER`. `pass: None` means no AUTH.
    pub fn set_cli_auth(&mut self, user: Option<&str>, pass: Option<&str>) {
        self.auth = pass.map(|p| CliAuth {
            user: user.map(str::to_string),
            pass: p.to_string(),
        });
    }

    fn cli_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(redis_cli_bin());
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(a) = &self.auth {
            if let Some(u) = &a.user {
                cmd.args(["--user", u]);
            }
            cmd.args(["--pass", &a.pass, "--no-auth-warning"]);
        }
        // -e: an error reply becomes a non-zero exit (message on stderr);
        // without it redis-cli exits 0 and prints the error on stdout.
        cmd.arg("-e");
        cmd.args(args);
        cmd
    }

    /// Runs `redis-cli -h 127.0.0.1 -p P [auth] -e args...`; the exit status
    /// is non-zero for error replies and connection failures.
    pub fn cli_raw(&self, args: &[&str]) -> Output {
        run_with_deadline(self.cli_command(args), CLI_TIMEOUT)
            .unwrap_or_else(|e| panic!("redis-cli on port {}: {e}", self.port))
    }

    /// Trimmed stdout of `redis-cli ... args` (raw format: nil is an empty
    /// line, arrays are one element per line). Panics on error replies.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_raw(args);
        if !out.status.success() {
            panic!(
                "redis-cli -p {} {args:?} failed ({}): stderr: {} stdout: {}",
                self.port,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// One command over a fresh connection (authenticated like `cli`);
    /// error replies come back as `Ok(Resp::Error)`.
    pub fn try_command(&self, args: &[&str], timeout: Duration) -> Result<Resp, String> {
        resp_exchange(self.port, self.auth.as_ref(), &[args], timeout)
            .map(|mut v| v.remove(0))
            .map_err(|e| format!("{args:?} on redis-server port {}: {e}", self.port))
    }

    /// As `try_command`, panicking on I/O failure and on error replies.
    pub fn command(&self, args: &[&str]) -> Resp {
        match self.try_command(args, RESP_TIMEOUT) {
            Ok(Resp::Error(e)) => panic!(
                "{args:?} on redis-server port {} returned error: {e}",
                self.port
            ),
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    /// PING with a deadline; `Err` on timeout, refusal or a non-PONG reply.
    pub fn ping(&self, timeout: Duration) -> Result<(), String> {
        match self.try_command(&["PING"], timeout)? {
            Resp::Simple(s) if s == "PONG" => Ok(()),
            r => Err(format!("PING on port {} answered {r:?}", self.port)),
        }
    }

    /// `INFO <section>` as a field map (section headers and blanks dropped).
    pub fn info(&self, section: &str) -> BTreeMap<String, String> {
        let reply = self.command(&["INFO", section]);
        parse_info(&reply.text().unwrap_or_default())
    }

    pub fn info_field(&self, section: &str, field: &str) -> Option<String> {
        self.info(section).remove(field)
    }

    /// Waits until `INFO <section>` has `field` equal to `want`.
    pub fn wait_info_field(&self, section: &str, field: &str, want: &str, timeout: Duration) {
        let what = format!("INFO {section} {field}:{want} on port {}", self.port);
        wait_for(timeout, &what, || {
            let got = self
                .try_command(&["INFO", section], RESP_TIMEOUT)?
                .text()
                .and_then(|t| parse_info(&t).remove(field));
            if got.as_deref() == Some(want) {
                Ok(())
            } else {
                Err(format!("{field} is {got:?}"))
            }
        })
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Graceful stop: `SHUTDOWN NOSAVE NOW` (NOW: a 7.x master would
    /// otherwise wait up to 10 s for lagging replicas), then wait for exit,
    /// killing it if it has not gone within 10 s. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            // A stopped process cannot process SHUTDOWN.
            let _ = signal(child.id(), "CONT");
            self.paused.store(false, Ordering::SeqCst);
            let _ = self.try_command(&["SHUTDOWN", "NOSAVE", "NOW"], RESP_TIMEOUT);
            if wait_exit(&mut child, Duration::from_secs(10)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        } else {
            let _ = child.wait();
        }
    }

    /// Starts the server again with the same port, dir and arguments (stops
    /// it first if running) and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(SpawnError::PortInUse(m) | SpawnError::Fatal(m)) = self.spawn_and_wait() {
            panic!("restart failed: {m}");
        }
    }

    /// SIGSTOP: the kernel still accepts connections, nothing answers.
    pub fn pause(&self) {
        signal(self.pid(), "STOP").unwrap_or_else(|e| panic!("pause: {e}"));
        self.paused.store(true, Ordering::SeqCst);
    }

    /// SIGCONT.
    pub fn resume(&self) {
        signal(self.pid(), "CONT").unwrap_or_else(|e| panic!("resume: {e}"));
        self.paused.store(false, Ordering::SeqCst);
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .unwrap_or_else(|| panic!("redis-server on port {} is not running", self.port))
            .id()
    }

    /// The server log, plus anything it wrote to stderr (config errors are
    /// reported there before the logfile is opened).
    pub fn log(&self) -> String {
        let mut log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let stderr = fs::read_to_string(self.stderr_path()).unwrap_or_default();
        if !stderr.trim().is_empty() {
            log.push_str("\n--- stderr ---\n");
            log.push_str(&stderr);
        }
        log
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            eprintln!(
                "--- last lines of redis-server log, port {} ---\n{tail}",
                self.port
            );
        }
        if let Some(mut child) = self.child.take() {
            let _ = signal(child.id(), "CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Picks the harness's own credentials from redis-server arguments: a
/// password set for the `default` user, else `--requirepass`, else the
/// first enabled `--user` with a password and all commands.
fn auth_from_args(args: &[String]) -> Option<CliAuth> {
    let mut directives: Vec<(String, Vec<String>)> = Vec::new();
    for a in args {
        if let Some(name) = a.strip_prefix("--") {
            directives.push((name.to_ascii_lowercase(), Vec::new()));
        } else if let Some((_, values)) = directives.last_mut() {
            values.extend(a.split_whitespace().map(str::to_string));
        }
    }
    let mut default_user = None;
    let mut requirepass = None;
    let mut admin = None;
    for (name, values) in &directives {
        match name.as_str() {
            "requirepass" => {
                requirepass = values.first().filter(|p| !p.is_empty()).cloned();
            }
            "user" if values.len() > 1 => {
                let rules = &values[1..];
                let pass = rules.iter().rev().find_map(|r| r.strip_prefix('>'));
                let on = rules.iter().any(|r| r == "on");
                let all = rules.iter().any(|r| r == "+@all" || r == "allcommands");
                match (pass, values[0].as_str()) {
                    (Some(p), "default") if on => default_user = Some(p.to_string()),
                    (Some(p), user) if on && all && admin.is_none() => {
                        admin = Some(CliAuth {
                            user: Some(user.to_string()),
                            pass: p.to_string(),
                        })
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    default_user
        .or(requirepass)
        .map(|pass| CliAuth { user: None, pass })
        .or(admin)
}

/// `field:value` lines of an INFO reply; section headers and blanks dropped.
pub fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Starts a replica of `master` (with `--masterauth`/`--masteruser` from the
/// master's credentials) and waits until `master_link_status:up`.
/// `INFO replication` of `server`, parsed; an error if it does not answer.
fn replication_info(server: &RedisServer) -> Result<BTreeMap<String, String>, String> {
    Ok(server
        .try_command(&["INFO", "replication"], RESP_TIMEOUT)?
        .text()
        .map(|t| parse_info(&t))
        .unwrap_or_default())
}

pub fn start_replica_of(master: &RedisServer, extra_args: &[&str]) -> RedisServer {
    let port = master.port.to_string();
    let mut args: Vec<&str> = vec!["--replicaof", "127.0.0.1", &port];
    if let Some(a) = master.cli_auth() {
        if let Some(u) = &a.user {
            args.extend(["--masteruser", u.as_str()]);
        }
        args.extend(["--masterauth", a.pass.as_str()]);
    }
    args.extend_from_slice(extra_args);
    let replica = RedisServer::start(&args);
    let what = format!(
        "replica on port {} to link up with master on port {}",
        replica.port, master.port
    );
    wait_for(REPLICA_LINK_TIMEOUT, &what, || {
        let info = replication_info(&replica)?;
        match info.get("master_link_status").map(String::as_str) {
            Some("up") => Ok(()),
            s => Err(format!("master_link_status is {s:?}")),
        }
    });
    // The replica says "up" as soon as it has loaded the RDB, but the master
    // lists it as wait_bgsave until the first REPLCONF ACK arrives; tests read
    // the master's view, so both sides must agree before the replica is handed out.
    let what = format!(
        "master on port {} to list replica on port {} as online",
        master.port, replica.port
    );
    let want_port = format!("port={}", replica.port);
    wait_for(REPLICA_LINK_TIMEOUT, &what, || {
        let info = replication_info(master)?;
        let line = info
            .iter()
            .find(|(k, v)| k.starts_with("slave") && v.split(',').any(|f| f == want_port))
            .map(|(_, v)| v.clone());
        match line {
            Some(v) if v.split(',').any(|f| f == "state=online") => Ok(()),
            other => Err(format!("master's line for the replica is {other:?}")),
        }
    });
    replica
}

// ---------------------------------------------------------------------------
// RedisCluster
// ---------------------------------------------------------------------------

/// One line of CLUSTER NODES, reduced to what the nodes must agree on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClusterNodeLine {
    pub id: String,
    /// "127.0.0.1:P" (the cluster bus suffix and hostname are dropped).
    pub addr: String,
    /// Flags without "myself", e.g. ["master"], ["slave"], ["master","fail"].
    pub flags: Vec<String>,
    /// The master's id for replicas, None for masters.
    pub master_id: Option<String>,
    /// Slot ranges / migration markers as printed, e.g. ["0-5460"].
    pub slots: Vec<String>,
}

/// Parses CLUSTER NODES output.
pub fn parse_cluster_nodes(text: &str) -> Vec<ClusterNodeLine> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() >= 8, "malformed CLUSTER NODES line {l:?}");
            let addr = f[1].split('@').next().unwrap_or("");
            let addr = addr.split(',').next().unwrap_or("").to_string();
            ClusterNodeLine {
                id: f[0].to_string(),
                addr,
                flags: f[2]
                    .split(',')
                    .filter(|x| *x != "myself")
                    .map(str::to_string)
                    .collect(),
                master_id: (f[3] != "-").then(|| f[3].to_string()),
                slots: f[8..].iter().map(|s| s.to_string()).collect(),
            }
        })
        .collect()
}

/// A cluster of `RedisServer`s on 127.0.0.1 with a 1 s node timeout, so
/// failures are detected and failovers happen within a few seconds.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    extra_args: Vec<String>,
}

impl RedisCluster {
    /// `masters` (at least 3, a redis-cli requirement) with
    /// `replicas_per_master` each, settled (see [`RedisCluster::wait_settled`]).
    pub fn start(masters: usize, replicas_per_master: usize) -> RedisCluster {
        Self::start_with_args(masters, replicas_per_master, &[])
    }

    /// As `start`, with `extra_args` for every node (e.g. `--requirepass X
    /// --masterauth X` for a password-protected cluster).
    pub fn start_with_args(
        masters: usize,
        replicas_per_master: usize,
        extra_args: &[&str],
    ) -> RedisCluster {
        assert!(
            masters >= 3,
            "redis-cli --cluster create needs at least 3 masters"
        );
        let total = masters * (1 + replicas_per_master);
        let mut cluster = RedisCluster {
            nodes: Vec::with_capacity(total),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        for _ in 0..total {
            let node = cluster.start_node();
            cluster.nodes.push(node);
        }
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(cluster.nodes.iter().map(|n| n.addr()));
        args.extend([
            "--cluster-replicas".into(),
            replicas_per_master.to_string(),
            "--cluster-yes".into(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // Goes through node 0's cli so the same credentials are used.
        let out = run_with_deadline(cluster.nodes[0].cli_command(&args), Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("redis-cli --cluster create: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !stdout.contains("All 16384 slots covered") {
            panic!(
                "redis-cli {args:?} failed ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        cluster.wait_settled(CLUSTER_TIMEOUT);
        let roles = cluster.role_counts();
        assert_eq!(
            roles,
            (masters, masters * replicas_per_master),
            "(masters, replicas) after cluster create"
        );
        cluster
    }

    fn start_node(&self) -> RedisServer {
        let mut args: Vec<&str> = vec![
            "--cluster-enabled",
            "yes",
            // Relative to --dir, i.e. <dir>/nodes.conf.
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "1000",
        ];
        args.extend(self.extra_args.iter().map(String::as_str));
        RedisServer::start_with_port_picker(free_cluster_port, &args)
    }

    fn role_counts(&self) -> (usize, usize) {
        (self.masters().len(), self.replicas().len())
    }

    fn role(node: &RedisServer) -> Option<String> {
        if !node.is_running() || node.is_paused() {
            return None;
        }
        node.info_field("replication", "role")
    }

    /// Running, unpaused nodes whose INFO says role:master.
    pub fn masters(&self) -> Vec<&RedisServer> {
        self.nodes
            .iter()
            .filter(|n| Self::role(n).as_deref() == Some("master"))
            .collect()
    }

    /// Running, unpaused nodes whose INFO says role:slave.
    pub fn replicas(&self) -> Vec<&RedisServer> {
        self.nodes
            .iter()
            .filter(|n| Self::role(n).as_deref() == Some("slave"))
            .collect()
    }

    /// CLUSTER MYID.
    /// For a stopped or paused node, read from the `myself` line of its
    /// nodes.conf instead, so ids stay known across failover tests.
    pub fn node_id(&self, node: &RedisServer) -> String {
        if node.is_running() && !node.is_paused() {
            return node
                .command(&["CLUSTER", "MYID"])
                .text()
                .unwrap_or_else(|| panic!("CLUSTER MYID on port {} gave no text", node.port));
        }
        let path = node.dir().join("nodes.conf");
        let conf = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        conf.lines()
            .find(|l| {
                l.split_whitespace()
                    .nth(2)
                    .is_some_and(|f| f.split(',').any(|f| f == "myself"))
            })
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no myself line in {}:\n{conf}", path.display()))
            .to_string()
    }

    /// Index in `nodes` of the node listening on `port`.
    pub fn index_of_port(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    /// The nodes' CLUSTER NODES view, sorted by id.
    pub fn view(node: &RedisServer) -> Result<Vec<ClusterNodeLine>, String> {
        let text = node
            .try_command(&["CLUSTER", "NODES"], RESP_TIMEOUT)?
            .text()
            .ok_or_else(|| format!("CLUSTER NODES on port {} gave no text", node.port))?;
        let mut v = parse_cluster_nodes(&text);
        v.sort();
        Ok(v)
    }

    /// Why the running, unpaused nodes are not (yet) settled, or Ok.
    pub fn settled_state(&self) -> Result<(), String> {
        let (live, down): (Vec<&RedisServer>, Vec<&RedisServer>) = self
            .nodes
            .iter()
            .partition(|n| n.is_running() && !n.is_paused());
        let down_ids: Vec<String> = down.iter().map(|n| self.node_id(n)).collect();
        // A node that is down is still a member until it is forgotten.
        let total = self.nodes.len().to_string();
        let mut first_view: Option<(u16, Vec<ClusterNodeLine>)> = None;
        for n in &live {
            let port = n.port;
            let cinfo = parse_info(
                &n.try_command(&["CLUSTER", "INFO"], RESP_TIMEOUT)?
                    .text()
                    .unwrap_or_default(),
            );
            let state = cinfo.get("cluster_state").map(String::as_str);
            if state != Some("ok") {
                return Err(format!("port {port}: cluster_state is {state:?}"));
            }
            let known = cinfo.get("cluster_known_nodes");
            if known != Some(&total) {
                return Err(format!(
                    "port {port}: cluster_known_nodes is {known:?}, want {total}"
                ));
            }
            let rinfo = parse_info(
                &n.try_command(&["INFO", "replication"], RESP_TIMEOUT)?
                    .text()
                    .unwrap_or_default(),
            );
            if rinfo.get("role").map(String::as_str) == Some("slave") {
                let link = rinfo.get("master_link_status").map(String::as_str);
                if link != Some("up") {
                    return Err(format!(
                        "replica port {port}: master_link_status is {link:?}"
                    ));
                }
            }
            let view = Self::view(n)?;
            for l in &view {
                let has = |flag: &str| l.flags.iter().any(|f| f == flag);
                let is_down = down_ids.contains(&l.id);
                if has("handshake") || has("noaddr") || has("fail?") || has("fail") != is_down {
                    let want = if is_down { "fail" } else { "no failure flags" };
                    return Err(format!("port {port} sees {l:?}; want {want}"));
                }
            }
            match &first_view {
                None => first_view = Some((port, view)),
                Some((p0, v0)) if *v0 != view => {
                    return Err(format!(
                        "views differ: port {p0} sees {v0:?}, port {port} sees {view:?}"
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Waits until every running, unpaused node reports cluster_state:ok,
    /// knows all `nodes` and no others, has its replication link up
    /// (replicas), sees exactly the stopped or paused nodes flagged `fail`
    /// and no node in handshake, and all of them agree on ids, roles,
    /// masters and slot ranges. With a master down this means its replica
    /// has taken over.
    pub fn wait_settled(&self, timeout: Duration) {
        wait_for(timeout, "the cluster to settle", || self.settled_state());
    }

    /// Starts an empty cluster-enabled node, CLUSTER MEETs it from node 0,
    /// waits until the cluster is settled with it, and returns its index.
    pub fn add_node(&mut self) -> usize {
        let node = self.start_node();
        let id = self.node_id(&node);
        let port = node.port.to_string();
        self.nodes[0].command(&["CLUSTER", "MEET", "127.0.0.1", &port]);
        self.nodes.push(node);
        let what = format!("every node to know new node {id} (port {port})");
        wait_for(CLUSTER_TIMEOUT, &what, || {
            for n in &self.nodes {
                let view = Self::view(n)?;
                if !view
                    .iter()
                    .any(|l| l.id == id && !l.flags.iter().any(|f| f == "handshake"))
                {
                    return Err(format!("port {} does not know it yet", n.port));
                }
            }
            Ok(())
        });
        self.wait_settled(CLUSTER_TIMEOUT);
        self.nodes.len() - 1
    }

    /// CLUSTER FORGETs node `idx` on every other running node, stops it,
    /// removes it from `nodes` (later indices shift down by one) and waits
    /// until no remaining node lists its id. Returns the stopped server, for
    /// its log or a restart. The node must not be the master of a replica
    /// ("Can't forget my master!").
    pub fn forget_node(&mut self, idx: usize) -> RedisServer {
        let id = self.node_id(&self.nodes[idx]);
        for (j, n) in self.nodes.iter().enumerate() {
            if j == idx || !n.is_running() {
                continue;
            }
            let what = format!("CLUSTER FORGET {id} to succeed on port {}", n.port);
            wait_for(Duration::from_secs(10), &what, || {
                match n.try_command(&["CLUSTER", "FORGET", &id], RESP_TIMEOUT)? {
                    Resp::Simple(_) => Ok(()),
                    // Already gone from this node's table: that is the goal.
                    Resp::Error(e) if e.contains("Unknown node") => Ok(()),
                    r => Err(format!("{r:?}")),
                }
            });
        }
        let mut gone = self.nodes.remove(idx);
        gone.stop();
        let what = format!("no remaining node to list forgotten node {id}");
        wait_for(CLUSTER_TIMEOUT, &what, || {
            for n in self.nodes.iter().filter(|n| n.is_running()) {
                if Self::view(n)?.iter().any(|l| l.id == id) {
                    return Err(format!("port {} still lists it", n.port));
                }
            }
            Ok(())
        });
        gone
    }
}

// ---------------------------------------------------------------------------
// Prometheus text exposition
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// A parsed exposition: samples in order, plus HELP and TYPE per family.
#[derive(Debug, Clone, Default)]
pub struct MetricsText {
    pub samples: Vec<Sample>,
    pub help: BTreeMap<String, String>,
    pub types: BTreeMap<String, String>,
}

impl MetricsText {
    /// Parses strictly: panics, quoting the line, on a malformed sample, an
    /// unknown TYPE, or a family with two HELP or TYPE lines (Prometheus
    /// rejects all of these).
    pub fn parse(text: &str) -> MetricsText {
        let mut m = MetricsText::default();
        for (i, line) in text.lines().enumerate() {
            let fail =
                |why: &str| -> ! { panic!("malformed metrics line {}: {line:?}: {why}", i + 1) };
            let trimmed = line.trim_matches(|c| c == ' ' || c == '\t');
            if trimmed.is_empty() {
                continue;
            }
            if let Some(comment) = trimmed.strip_prefix('#') {
                let mut parts = comment
                    .trim_start_matches([' ', '\t'])
                    .splitn(3, [' ', '\t']);
                let keyword = parts.next().unwrap_or("");
                if keyword != "HELP" && keyword != "TYPE" {
                    continue;
                }
                let name = parts.next().unwrap_or("");
                if !is_metric_name(name) {
                    fail("bad metric name in HELP/TYPE");
                }
                let rest = parts.next().unwrap_or("").to_string();
                if keyword == "HELP" {
                    let help = unescape_help(&rest).unwrap_or_else(|e| fail(&e));
                    if m.help.insert(name.to_string(), help).is_some() {
                        fail("second HELP for the same family");
                    }
                } else {
                    let t = rest.trim();
                    if !matches!(t, "counter" | "gauge" | "histogram" | "summary" | "untyped") {
                        fail("unknown TYPE");
                    }
                    if m.types.insert(name.to_string(), t.to_string()).is_some() {
                        fail("second TYPE for the same family");
                    }
                }
                continue;
            }
            m.samples
                .push(parse_sample_line(trimmed).unwrap_or_else(|e| fail(&e)));
        }
        m
    }

    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        find_value(&self.samples, name, labels)
    }

    /// The value, or a panic listing the samples of that name that exist.
    pub fn require(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or_else(|| {
            let have: Vec<String> = self
                .samples
                .iter()
                .filter(|s| s.name == name)
                .map(|s| format!("{:?} {}", s.labels, s.value))
                .collect();
            panic!("no sample {name} with labels {labels:?}; samples of that name: {have:#?}")
        })
    }

    pub fn all(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        find_all(&self.samples, name, labels)
    }

    pub fn type_of(&self, family: &str) -> Option<&str> {
        self.types.get(family).map(String::as_str)
    }

    /// Distinct sample names.
    pub fn names(&self) -> BTreeSet<&str> {
        self.samples.iter().map(|s| s.name.as_str()).collect()
    }
}

/// The samples of a text exposition, in order; comments, HELP and TYPE lines
/// skipped. Panics with the offending line on a malformed sample.
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    MetricsText::parse(text).samples
}

fn matches_labels(s: &Sample, labels: &[(&str, &str)]) -> bool {
    labels
        .iter()
        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
}

/// Value of the first sample named `name` whose labels include all `labels`.
pub fn find_value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && matches_labels(s, labels))
        .map(|s| s.value)
}

pub fn find_all<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name && matches_labels(s, labels))
        .collect()
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn unescape_help(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            other => return Err(format!("bad escape \\{other:?} in HELP")),
        }
    }
    Ok(out)
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) => s.parse().ok(),
        _ => None,
    }
}

fn parse_sample_line(line: &str) -> Result<Sample, String> {
    let is_ws = |c: char| c == ' ' || c == '\t';
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.trim_start_matches(is_ws).strip_prefix('{') {
        rest = after;
        loop {
            rest = rest.trim_start_matches(is_ws);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let lend = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .ok_or("unterminated label set")?;
            let lname = &rest[..lend];
            if !is_label_name(lname) {
                return Err(format!("bad label name {lname:?}"));
            }
            rest = rest[lend..].trim_start_matches(is_ws);
            rest = rest
                .strip_prefix('=')
                .ok_or_else(|| format!("expected = after label {lname}"))?
                .trim_start_matches(is_ws);
            rest = rest
                .strip_prefix('"')
                .ok_or_else(|| format!("expected \" to open the value of label {lname}"))?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let close = loop {
                match chars.next() {
                    None => return Err(format!("unterminated value of label {lname}")),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => {
                            return Err(format!(
                                "bad escape {:?} in value of label {lname}",
                                other.map(|(_, c)| c)
                            ))
                        }
                    },
                    Some((_, c)) => value.push(c),
                }
            };
            rest = &rest[close + 1..];
            if labels.insert(lname.to_string(), value).is_some() {
                return Err(format!("duplicate label {lname}"));
            }
            rest = rest.trim_start_matches(is_ws);
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
            } else if !rest.starts_with('}') {
                return Err(format!("expected , or }} after label {lname}"));
            }
        }
    }
    if !rest.starts_with(is_ws) {
        return Err("expected whitespace before the value".into());
    }
    let mut fields = rest.split(is_ws).filter(|s| !s.is_empty());
    let raw_value = fields.next().ok_or("missing value")?;
    let value = parse_float(raw_value).ok_or_else(|| format!("bad value {raw_value:?}"))?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if let Some(extra) = fields.next() {
        return Err(format!("trailing garbage {extra:?}"));
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

// ---------------------------------------------------------------------------
// HTTP/1.1 client
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, in order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// GET `path`: (status, body). Panics if the request fails.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = http_request(addr, "GET", path, &[]);
    (status, body)
}

/// (status, lower-cased headers, body). Panics if the request fails.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, String) {
    let r = try_http_request(addr, method, path, headers, b"")
        .unwrap_or_else(|e| panic!("HTTP {method} http://{addr}{path} failed: {e}"));
    let body = r.text();
    (r.status, r.headers, body)
}

/// The non-panicking request, e.g. for waiting until a listener is up:
/// `wait_until(t, "exporter", || try_http_request(a, "GET", "/", &[], b"").ok())`.
/// `Host`, `Connection: close` and (for a body) `Content-Length` are added
/// unless given in `headers`.
pub fn try_http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, String> {
    let stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .and_then(|_| stream.set_write_timeout(Some(HTTP_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !has("host") {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    if !has("connection") {
        req.push_str("Connection: close\r\n");
    }
    if !body.is_empty() && !has("content-length") {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut req = req.into_bytes();
    req.extend_from_slice(body);
    (&stream)
        .write_all(&req)
        .map_err(|e| format!("write request: {e}"))?;

    let mut r = BufReader::new(stream);
    let line_err = |e: io::Error| format!("read response: {e}");
    // Interim 1xx responses (100 Continue) precede the real one.
    let (status, headers) = loop {
        let status_line = read_crlf_line(&mut r).map_err(line_err)?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .filter(|_| version.starts_with("HTTP/1."))
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let mut headers = Vec::new();
        loop {
            let line = read_crlf_line(&mut r).map_err(line_err)?;
            if line.is_empty() {
                break;
            }
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| format!("bad header line {line:?}"))?;
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        if !(100..200).contains(&status) {
            break (status, headers);
        }
    };
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let mut body = Vec::new();
    if method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304 {
        // No body by definition.
    } else if header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            let size_line = read_crlf_line(&mut r).map_err(line_err)?;
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| format!("bad chunk size line {size_line:?}"))?;
            if size == 0 {
                // Trailers, up to the blank line.
                while !read_crlf_line(&mut r).map_err(line_err)?.is_empty() {}
                break;
            }
            let start = body.len();
            body.resize(start + size + 2, 0);
            r.read_exact(&mut body[start..])
                .map_err(|e| format!("read chunk: {e}"))?;
            if &body[start + size..] != b"\r\n" {
                return Err("chunk not followed by CRLF".into());
            }
            body.truncate(start + size);
        }
    } else if let Some(len) = header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("bad Content-Length {len:?}"))?;
        body.resize(len, 0);
        r.read_exact(&mut body)
            .map_err(|e| format!("read {len}-byte body: {e}"))?;
    } else {
        r.read_to_end(&mut body)
            .map_err(|e| format!("read body to EOF: {e}"))?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// Whether this runs under CI (`CI=true`), where scripts/test.sh has
/// installed every tool the tests use.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Prints why a check cannot run here, or fails under CI (a missing tool
/// there is a broken setup, not a reason to check less).
pub fn skip(why: &str) {
    assert!(
        !in_ci(),
        "CI=true: {why}; scripts/test.sh should have made this possible"
    );
    eprintln!("SKIPPED: {why}");
}

//! Real Redis Sentinel setups for the integration tests: a master with
//! replicas (`common::RedisServer`) and Sentinel processes (`redis-server
//! <conf> --sentinel`) on free loopback ports, each with its own writable
//! config file (Sentinel rewrites it). Low `down-after-milliseconds` and
//! `failover-timeout` make failovers take a few seconds. Killed on drop.
#![allow(dead_code)]

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{self, resp_exchange, wait_for, CliAuth, RedisServer, Resp};

pub const MASTER_NAME: &str = "mymaster";
/// How long a Sentinel waits before it calls a silent node subjectively
/// down.
pub const DOWN_AFTER_MS: u64 = 1000;
const FAILOVER_TIMEOUT_MS: u64 = 3000;
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// One Sentinel process.
pub struct Sentinel {
    pub port: u16,
    /// `requirepass` of this Sentinel, used by the harness's own commands.
    auth: Option<CliAuth>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Sentinel {
    /// Starts a Sentinel monitoring `master_port` as [`MASTER_NAME`] with
    /// `quorum`, and waits until it answers PING.
    pub fn start(master_port: u16, quorum: u32) -> Sentinel {
        Self::start_with(master_port, quorum, None, None)
    }

    /// As [`Sentinel::start`], with a password of its own (`requirepass`)
    /// and the data nodes' password (`sentinel auth-pass`).
    pub fn start_with(
        master_port: u16,
        quorum: u32,
        own_pass: Option<&str>,
        data_pass: Option<&str>,
    ) -> Sentinel {
        let port = common::free_port();
        let dir = tempfile::Builder::new()
            .prefix("redis-vitals-sentinel-")
            .tempdir()
            .expect("temp dir");
        let conf = format!(
            "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\nlogfile {dir}/sentinel.log\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} {quorum}\n\
             sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
             sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n\
             sentinel parallel-syncs {MASTER_NAME} 2\n",
            dir = dir.path().display()
        );
        let mut conf = conf;
        if let Some(p) = own_pass {
            conf.push_str(&format!("requirepass {p}\n"));
        }
        if let Some(p) = data_pass {
            conf.push_str(&format!("sentinel auth-pass {MASTER_NAME} {p}\n"));
        }
        let mut s = Sentinel {
            port,
            auth: own_pass.map(|p| CliAuth {
                user: None,
                pass: p.to_string(),
            }),
            dir,
            child: None,
        };
        fs::write(s.conf_path(), conf).expect("write sentinel.conf");
        s.spawn();
        s
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.path().join("sentinel.conf")
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .arg(self.conf_path())
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server --sentinel");
        self.child = Some(child);
        let port = self.port;
        let auth = self.auth.clone();
        wait_for(
            START_TIMEOUT,
            &format!("Sentinel on {port} to answer"),
            || match resp_exchange(port, auth.as_ref(), &[&["PING"]], Duration::from_secs(1)) {
                Ok(r) if matches!(r.first(), Some(Resp::Simple(_))) => Ok(()),
                Ok(r) => Err(format!("{r:?}")),
                Err(e) => Err(e),
            },
        );
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// One command; the reply.
    pub fn command(&self, args: &[&str]) -> Result<Resp, String> {
        resp_exchange(
            self.port,
            self.auth.as_ref(),
            &[args],
            Duration::from_secs(2),
        )
        .map(|mut r| r.remove(0))
    }

    /// The master address this Sentinel reports.
    pub fn master_addr(&self) -> Option<String> {
        match self.command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME]) {
            Ok(Resp::Array(Some(items))) if items.len() == 2 => {
                let ip = items[0].text()?;
                let port = items[1].text()?;
                Some(format!("{ip}:{port}"))
            }
            _ => None,
        }
    }

    /// Kills the process (SIGKILL); idempotent.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sentinel.log")).unwrap_or_default()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- last lines of Sentinel log, port {} ---\n{}",
                self.port,
                lines[lines.len().saturating_sub(30)..].join("\n")
            );
        }
        self.kill();
    }
}

/// A master, its replicas and the Sentinels watching it.
pub struct SentinelSetup {
    /// `nodes[0]` is the initial master.
    pub nodes: Vec<RedisServer>,
    pub sentinels: Vec<Sentinel>,
}

impl SentinelSetup {
    /// A master with `replicas` replicas and `sentinels` Sentinels (quorum
    /// 2), waiting until every Sentinel knows every replica and the other
    /// Sentinels.
    pub fn start(replicas: usize, sentinels: usize) -> SentinelSetup {
        Self::start_with(replicas, sentinels, None, None)
    }

    /// As [`SentinelSetup::start`], with a password on the data nodes and
    /// another one on the Sentinels.
    pub fn start_with(
        replicas: usize,
        sentinels: usize,
        data_pass: Option<&str>,
        sentinel_pass: Option<&str>,
    ) -> SentinelSetup {
        let args: Vec<&str> = match data_pass {
            Some(p) => vec!["--requirepass", p],
            None => vec![],
        };
        let master = RedisServer::start(&args);
        let mut nodes = vec![];
        let reps: Vec<RedisServer> = (0..replicas)
            .map(|_| common::start_replica_of(&master, &args))
            .collect();
        let master_port = master.port;
        nodes.push(master);
        nodes.extend(reps);
        let sentinels: Vec<Sentinel> = (0..sentinels)
            .map(|_| Sentinel::start_with(master_port, 2, sentinel_pass, data_pass))
            .collect();
        let setup = SentinelSetup { nodes, sentinels };
        setup.wait_settled(Duration::from_secs(20));
        setup
    }

    /// Every live Sentinel lists every replica and every other Sentinel.
    pub fn wait_settled(&self, timeout: Duration) {
        let want_replicas = self.nodes.len() - 1;
        let want_others = self.sentinels.len() - 1;
        wait_for(
            timeout,
            "the Sentinels to know each other and the replicas",
            || {
                for s in &self.sentinels {
                    let m = s.command(&["SENTINEL", "MASTER", MASTER_NAME])?;
                    let f = flat(&m);
                    let reps: usize = field(&f, "num-slaves").parse().unwrap_or(0);
                    let others: usize = field(&f, "num-other-sentinels").parse().unwrap_or(0);
                    if reps < want_replicas || others < want_others {
                        return Err(format!(
                            "Sentinel {} knows {reps} replicas, {others} other Sentinels",
                            s.port
                        ));
                    }
                }
                Ok(())
            },
        );
    }

    pub fn node_by_addr(&self, addr: &str) -> Option<&RedisServer> {
        self.nodes.iter().find(|n| n.addr() == addr)
    }
}

/// A flat field/value reply as pairs.
pub fn flat(r: &Resp) -> Vec<(String, String)> {
    match r {
        Resp::Array(Some(items)) => items
            .chunks(2)
            .filter_map(|c| Some((c.first()?.text()?, c.get(1)?.text()?)))
            .collect(),
        _ => vec![],
    }
}

pub fn field(f: &[(String, String)], key: &str) -> String {
    f.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

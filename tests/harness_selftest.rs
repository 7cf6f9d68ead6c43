//! Proves the shared test harness in `tests/common` against real
//! redis-server processes, so that a failure elsewhere can be trusted to be
//! about the exporter and not about the harness.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn server_starts_answers_stops_and_restarts_empty_on_same_port() {
    let mut s = RedisServer::start(&[]);
    assert_eq!(s.cli(&["PING"]), "PONG");
    assert_eq!(s.addr(), format!("127.0.0.1:{}", s.port));
    assert_eq!(s.url(), format!("redis://127.0.0.1:{}", s.port));
    assert_eq!(s.info_field("server", "tcp_port"), Some(s.port.to_string()));
    assert_eq!(s.info_field("server", "no_such_field"), None);
    assert_eq!(s.cli(&["CONFIG", "GET", "save"]), "save");
    s.cli(&["SET", "k", "v"]);
    assert_eq!(s.cli(&["GET", "k"]), "v");

    let port = s.port;
    let old_pid = s.pid();
    s.stop();
    assert!(!s.is_running());
    assert!(s.ping(Duration::from_millis(500)).is_err());
    s.stop(); // idempotent

    s.restart();
    assert_eq!(s.port, port);
    assert_ne!(s.pid(), old_pid);
    assert_eq!(s.cli(&["DBSIZE"]), "0", "no save: data must be gone");
    assert_eq!(s.cli(&["GET", "k"]), "");
    assert!(s.log().contains("Ready to accept connections"));
}

#[test]
fn cli_panics_on_error_reply_and_cli_raw_reports_it() {
    let s = RedisServer::start(&[]);
    let out = s.cli_raw(&["NOSUCHCOMMAND"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown command"));
    let err = std::panic::catch_unwind(|| s.cli(&["NOSUCHCOMMAND"])).unwrap_err();
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("unknown command"), "{msg}");
}

#[test]
fn requirepass_and_acl_users_are_used_by_cli() {
    let mut s = RedisServer::start(&["--requirepass", "s3cret"]);
    assert_eq!(s.cli(&["PING"]), "PONG");
    assert!(s.ping(Duration::from_secs(1)).is_ok());
    s.set_cli_auth(None, None);
    let out = s.cli_raw(&["PING"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOAUTH"));
    s.set_cli_auth(None, Some("s3cret"));
    assert_eq!(s.cli(&["PING"]), "PONG");
    s.stop();

    let a = RedisServer::start(&[
        "--user", "default", "off", "--user", "admin", "on", ">pw", "~*", "&*", "+@all",
    ]);
    assert_eq!(
        a.cli_auth(),
        Some(&CliAuth {
            user: Some("admin".into()),
            pass: "pw".into()
        })
    );
    assert_eq!(a.cli(&["ACL", "WHOAMI"]), "admin");
}

#[test]
fn pause_makes_ping_time_out_and_resume_restores_it() {
    let s = RedisServer::start(&[]);
    s.ping(Duration::from_millis(500)).unwrap();
    s.pause();
    assert!(s.is_paused());
    let t = Instant::now();
    let err = s.ping(Duration::from_millis(300)).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2), "{err}");
    // The same through redis-cli under timeout(1), as scripts would see it.
    let out = std::process::Command::new("timeout")
        .args(["1", "redis-cli", "-p", &s.port.to_string(), "PING"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(124), "timeout(1) should fire");
    s.resume();
    assert!(!s.is_paused());
    s.ping(Duration::from_secs(1)).unwrap();
    assert_eq!(s.cli(&["PING"]), "PONG");
}

#[test]
fn replica_links_up_and_replicates() {
    let master = RedisServer::start(&["--requirepass", "mpw"]);
    let replica = start_replica_of(&master, &[]);
    assert_eq!(
        replica.info_field("replication", "role").as_deref(),
        Some("slave")
    );
    assert_eq!(
        master
            .info_field("replication", "connected_slaves")
            .as_deref(),
        Some("1")
    );
    // Handed out only once the master, too, lists the replica as online.
    let slave0 = master.info_field("replication", "slave0").unwrap();
    assert!(slave0.contains("state=online"), "{slave0}");
    master.cli(&["SET", "rk", "rv"]);
    wait_until(Duration::from_secs(5), "rk to reach the replica", || {
        (replica.cli(&["GET", "rk"]) == "rv").then_some(())
    });
}

#[test]
fn cluster_forms_and_nodes_can_be_added_and_forgotten() {
    let t = Instant::now();
    let mut c = RedisCluster::start(3, 1);
    let formed = t.elapsed();
    assert_eq!(c.nodes.len(), 6);
    assert_eq!(c.masters().len(), 3);
    assert_eq!(c.replicas().len(), 3);
    for n in &c.nodes {
        assert_eq!(
            n.info_field("cluster", "cluster_enabled").as_deref(),
            Some("1")
        );
        assert!(n.dir().join("nodes.conf").exists());
    }
    let ids: std::collections::BTreeSet<String> = c.nodes.iter().map(|n| c.node_id(n)).collect();
    assert_eq!(ids.len(), 6);
    let info = c.nodes[0].cli(&["CLUSTER", "INFO"]);
    assert!(info.contains("cluster_slots_assigned:16384"), "{info}");

    let idx = c.add_node();
    assert_eq!(idx, 6);
    let new_id = c.node_id(&c.nodes[idx]);
    for n in &c.nodes {
        assert!(n.cli(&["CLUSTER", "NODES"]).contains(&new_id));
    }
    let gone = c.forget_node(idx);
    assert!(!gone.is_running());
    assert_eq!(c.nodes.len(), 6);
    for n in &c.nodes {
        assert!(!n.cli(&["CLUSTER", "NODES"]).contains(&new_id));
    }
    c.wait_settled(CLUSTER_TIMEOUT);
    eprintln!("cluster formed in {formed:?}, whole test {:?}", t.elapsed());
}

#[test]
fn free_ports_are_distinct_and_cluster_ports_leave_room_for_the_bus() {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..50 {
        assert!(seen.insert(free_port()));
    }
    for _ in 0..20 {
        let p = free_cluster_port();
        assert!(p < 55536);
        assert!(seen.insert(p) && seen.insert(p + 10000));
    }
}

#[test]
#[should_panic(expected = "timed out after 100ms waiting for the impossible")]
fn wait_until_panics_naming_what_it_waited_for() {
    wait_until(Duration::from_millis(100), "the impossible", || None::<()>);
}

#[test]
fn parse_metrics_handles_escapes_special_values_and_comments() {
    let text = concat!(
        "# HELP redis_up Whether the \\\\ node\\nanswers.\n",
        "# TYPE redis_up gauge\n",
        "# a free-form comment\n",
        "\n",
        "redis_up{addr=\"127.0.0.1:6379\",alias=\"a\\\"b\\\\c\\nd\"} 1\n",
        "redis_up{addr=\"x\",} 0 1700000000000\n",
        "plain_metric 3.5e2\n",
        "spaced { a = \"1\" , b=\"}{,\" }\t-2\n",
        "inf_metric{s=\"+\"} +Inf\n",
        "inf_metric{s=\"-\"} -Inf\n",
        "nan_metric NaN\n",
        "empty_labels{} 7\n",
    );
    let m = MetricsText::parse(text);
    assert_eq!(m.help["redis_up"], "Whether the \\ node\nanswers.");
    assert_eq!(m.type_of("redis_up"), Some("gauge"));
    let s = &m.samples;
    assert_eq!(s.len(), 8);
    assert_eq!(s[0].label("alias"), Some("a\"b\\c\nd"));
    assert_eq!(
        find_value(s, "redis_up", &[("addr", "127.0.0.1:6379")]),
        Some(1.0)
    );
    assert_eq!(find_value(s, "redis_up", &[("addr", "x")]), Some(0.0));
    assert_eq!(find_value(s, "redis_up", &[("addr", "nope")]), None);
    assert_eq!(find_all(s, "redis_up", &[]).len(), 2);
    assert_eq!(m.require("plain_metric", &[]), 350.0);
    assert_eq!(
        find_value(s, "spaced", &[("a", "1"), ("b", "}{,")]),
        Some(-2.0)
    );
    assert_eq!(m.value("inf_metric", &[("s", "+")]), Some(f64::INFINITY));
    assert_eq!(
        m.value("inf_metric", &[("s", "-")]),
        Some(f64::NEG_INFINITY)
    );
    assert!(m.value("nan_metric", &[]).unwrap().is_nan());
    assert_eq!(m.value("empty_labels", &[]), Some(7.0));
    assert_eq!(parse_metrics(text).len(), 8);
}

#[test]
fn parse_metrics_rejects_malformed_lines() {
    for bad in [
        "no_value",
        "m{a=\"unterminated} 1",
        "m{a=\"1\" b=\"2\"} 1",
        "m{a=\"bad\\t escape\"} 1",
        "m{a=\"1\",a=\"2\"} 1",
        "m{0a=\"1\"} 1",
        "m 1 2 3",
        "m one",
        "m{a=\"1\"}1",
        "# TYPE m gauge\n# TYPE m counter",
        "# TYPE m nonsense",
    ] {
        let r = std::panic::catch_unwind(|| parse_metrics(bad));
        let msg = r
            .expect_err(bad)
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(msg.contains("malformed metrics line"), "{bad:?}: {msg}");
    }
}

/// Serves one canned response per connection, returning the request head.
fn one_shot_server(response: &'static [u8]) -> (std::net::SocketAddr, thread::JoinHandle<String>) {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = l.local_addr().unwrap();
    let h = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut head = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        s.write_all(response).unwrap();
        head
    });
    (addr, h)
}

#[test]
fn http_client_handles_content_length_chunked_and_eof_bodies() {
    let (addr, h) = one_shot_server(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!(http_get(addr, "/metrics"), (200, "hello".to_string()));
    let head = h.join().unwrap();
    assert!(head.starts_with("GET /metrics HTTP/1.1\r\n"), "{head}");
    assert!(head.contains(&format!("Host: {addr}\r\n")), "{head}");
    assert!(head.contains("Connection: close\r\n"), "{head}");

    let (addr, h) = one_shot_server(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n4;ext=1\r\nWiki\r\n6\r\npedia \r\n0\r\nTrailer: x\r\n\r\n",
    );
    let (status, headers, body) = http_request(addr, "POST", "/-/reload", &[("X-Test", "1")]);
    assert_eq!((status, body.as_str()), (404, "Wikipedia "));
    assert!(headers.contains(&("x-a".to_string(), "b".to_string())));
    assert!(h.join().unwrap().contains("X-Test: 1\r\n"));

    let (addr, h) = one_shot_server(b"HTTP/1.0 503 Service Unavailable\r\n\r\ndown");
    assert_eq!(http_get(addr, "/"), (503, "down".to_string()));
    h.join().unwrap();

    let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap();
    assert!(try_http_request(closed, "GET", "/", &[], b"").is_err());
}

#[test]
fn cluster_settles_after_master_failover_and_rejoin() {
    let t = Instant::now();
    let mut c = RedisCluster::start(3, 1);
    let idx = c.index_of_port(c.masters()[0].port);
    let old_id = c.node_id(&c.nodes[idx]);
    c.nodes[idx].stop();
    assert_eq!(c.node_id(&c.nodes[idx]), old_id, "id read from nodes.conf");
    c.wait_settled(CLUSTER_TIMEOUT);
    assert_eq!(c.masters().len(), 3, "a replica took over");
    assert_eq!(c.replicas().len(), 2);
    let failed_over = t.elapsed();

    c.nodes[idx].restart();
    c.wait_settled(CLUSTER_TIMEOUT);
    assert_eq!(
        c.nodes[idx].info_field("replication", "role").as_deref(),
        Some("slave"),
        "the old master rejoins as a replica"
    );
    assert_eq!(c.node_id(&c.nodes[idx]), old_id);
    eprintln!(
        "failover settled at {failed_over:?}, rejoin settled at {:?}",
        t.elapsed()
    );
}

#[test]
fn password_protected_cluster_forms() {
    let c = RedisCluster::start_with_args(3, 1, &["--requirepass", "cpw", "--masterauth", "cpw"]);
    assert_eq!(c.replicas().len(), 3);
    let out = c.nodes[0].cli(&["-c", "SET", "{a}k", "v"]);
    assert_eq!(out, "OK");
    assert_eq!(c.nodes[1].cli(&["-c", "GET", "{a}k"]), "v");
}

#[test]
fn a_bad_argument_fails_fast_with_redis_own_explanation() {
    let t = Instant::now();
    let err = std::panic::catch_unwind(|| RedisServer::start(&["--no-such-option", "x"]))
        .err()
        .expect("start must panic");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("exited during startup"), "{msg}");
    assert!(msg.contains("no-such-option"), "{msg}");
    assert!(t.elapsed() < Duration::from_secs(5));
}

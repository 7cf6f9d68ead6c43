//! Parsers of Redis Sentinel replies (issue 19): the flat field/value lists
//! of `SENTINEL MASTERS`, `SENTINEL REPLICAS <name>` and `SENTINEL SENTINELS
//! <name>`, the `# Sentinel` section of `INFO`, `SENTINEL CKQUORUM`, and the
//! pub/sub event messages.
//!
//! Pure and total like the INFO parser: a malformed entry is skipped (or a
//! field left at its default), never a panic, never an error that would hide
//! the rest of the reply.

use crate::redis::resp::Reply;

/// One entry of a Sentinel reply: its fields in reply order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    fn u64(&self, key: &str) -> u64 {
        self.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

fn text(r: &Reply) -> Option<String> {
    match r {
        Reply::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Reply::Status(s) => Some(s.clone()),
        Reply::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// A flat `field value field value ...` array; `None` if it is not one.
pub fn fields(reply: &Reply) -> Option<Fields> {
    let Reply::Array(items) = reply else {
        return None;
    };
    if items.len() % 2 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    for pair in items.chunks(2) {
        out.push((text(&pair[0])?, text(&pair[1])?));
    }
    Some(Fields(out))
}

/// An array of flat lists (MASTERS, REPLICAS, SENTINELS); entries that are
/// not flat lists are skipped. `None` if the reply is not an array.
pub fn field_lists(reply: &Reply) -> Option<Vec<Fields>> {
    let Reply::Array(items) = reply else {
        return None;
    };
    Some(items.iter().filter_map(fields).collect())
}

/// The `flags` field, as far as the exporter uses it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub master: bool,
    pub s_down: bool,
    pub o_down: bool,
    pub disconnected: bool,
    pub failover_in_progress: bool,
}

impl Flags {
    pub fn parse(s: &str) -> Flags {
        let mut f = Flags::default();
        for flag in s.split(',') {
            match flag {
                "master" => f.master = true,
                "s_down" => f.s_down = true,
                "o_down" => f.o_down = true,
                "disconnected" => f.disconnected = true,
                "failover_in_progress" => f.failover_in_progress = true,
                _ => {}
            }
        }
        f
    }
}

/// One monitored master as a Sentinel sees it (`SENTINEL MASTERS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MasterEntry {
    pub name: String,
    pub ip: String,
    pub port: u16,
    pub flags: Flags,
    pub num_slaves: u64,
    pub num_other_sentinels: u64,
    pub quorum: u64,
    pub config_epoch: u64,
}

impl MasterEntry {
    /// `None` without a name (nothing to label it with).
    pub fn from_fields(f: &Fields) -> Option<MasterEntry> {
        let name = f.get("name")?.to_string();
        if name.is_empty() {
            return None;
        }
        Some(MasterEntry {
            name,
            ip: f.get("ip").unwrap_or("").to_string(),
            port: f.get("port").and_then(|p| p.parse().ok()).unwrap_or(0),
            flags: Flags::parse(f.get("flags").unwrap_or("")),
            num_slaves: f.u64("num-slaves"),
            num_other_sentinels: f.u64("num-other-sentinels"),
            quorum: f.u64("quorum"),
            config_epoch: f.u64("config-epoch"),
        })
    }
}

/// A replica or a Sentinel listed by `SENTINEL REPLICAS` / `SENTINELS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceEntry {
    pub ip: String,
    pub port: u16,
    pub flags: Flags,
}

impl InstanceEntry {
    /// `None` without an address.
    pub fn from_fields(f: &Fields) -> Option<InstanceEntry> {
        let ip = f.get("ip")?.to_string();
        let port: u16 = f.get("port")?.parse().ok()?;
        if ip.is_empty() || port == 0 {
            return None;
        }
        Some(InstanceEntry {
            ip,
            port,
            flags: Flags::parse(f.get("flags").unwrap_or("")),
        })
    }
}

/// The masters of a `SENTINEL MASTERS` reply.
pub fn masters(reply: &Reply) -> Option<Vec<MasterEntry>> {
    field_lists(reply).map(|l| l.iter().filter_map(MasterEntry::from_fields).collect())
}

/// The instances of a `SENTINEL REPLICAS` / `SENTINELS` reply.
pub fn instances(reply: &Reply) -> Option<Vec<InstanceEntry>> {
    field_lists(reply).map(|l| l.iter().filter_map(InstanceEntry::from_fields).collect())
}

/// `SENTINEL CKQUORUM`: `+OK 3 usable Sentinels...` or `-NOQUORUM ...`.
/// `None` for anything else (an unknown master, a refused command).
pub fn ckquorum(reply: &Reply) -> Option<bool> {
    match reply {
        Reply::Status(s) if s.starts_with("OK") => Some(true),
        Reply::Error(e) if e.starts_with("NOQUORUM") => Some(false),
        _ => None,
    }
}

/// One `masterN:` line of INFO's `# Sentinel` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InfoMaster {
    pub name: String,
    pub status: String,
    pub address: String,
    pub slaves: u64,
    pub sentinels: u64,
}

/// INFO's `# Sentinel` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentinelInfo {
    pub masters: u64,
    pub tilt: bool,
    pub running_scripts: u64,
    pub master_lines: Vec<InfoMaster>,
}

/// Parses the `# Sentinel` section of an INFO reply (other sections are
/// ignored). Unknown or malformed lines are skipped.
pub fn info(text: &str) -> SentinelInfo {
    let mut out = SentinelInfo::default();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            "sentinel_masters" => out.masters = value.parse().unwrap_or(0),
            "sentinel_tilt" => out.tilt = value == "1",
            "sentinel_running_scripts" => out.running_scripts = value.parse().unwrap_or(0),
            k if k.starts_with("master") && k[6..].bytes().all(|b| b.is_ascii_digit()) => {
                let mut m = InfoMaster::default();
                for kv in value.split(',') {
                    match kv.split_once('=') {
                        Some(("name", v)) => m.name = v.to_string(),
                        Some(("status", v)) => m.status = v.to_string(),
                        Some(("address", v)) => m.address = v.to_string(),
                        Some(("slaves", v)) => m.slaves = v.parse().unwrap_or(0),
                        Some(("sentinels", v)) => m.sentinels = v.parse().unwrap_or(0),
                        _ => {}
                    }
                }
                if !m.name.is_empty() {
                    out.master_lines.push(m);
                }
            }
            _ => {}
        }
    }
    out
}

/// The event channels the exporter subscribes to on every Sentinel: each
/// one can change a group's membership, its master or its health.
pub const EVENT_CHANNELS: &[&str] = &[
    "+switch-master",
    "+sdown",
    "-sdown",
    "+odown",
    "-odown",
    "+failover-end",
    "+failover-end-for-timeout",
    "+try-failover",
    "+slave",
    "+sentinel",
    "+reset-master",
    "+convert-to-slave",
    "+slave-reconf-done",
    "+monitor",
    "-monitor",
    "+tilt",
    "-tilt",
];

/// What an event means to the exporter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Something changed in this master's group.
    Group(String),
    /// `+switch-master`: the group's master moved to `new_addr` (host:port).
    SwitchMaster { name: String, new_addr: String },
    /// An event not tied to one group (`+tilt`): refresh everything.
    All,
}

/// Reads an event from a pub/sub `message` push: `[message, channel,
/// payload]`. `None` for anything else (subscribe confirmations).
pub fn push_event(reply: &Reply) -> Option<Event> {
    let Reply::Array(items) = reply else {
        return None;
    };
    if items.len() != 3 || text(&items[0]).as_deref() != Some("message") {
        return None;
    }
    event(&text(&items[1])?, &text(&items[2])?)
}

/// Parses one event. Payloads are `<type> <name> <ip> <port> [@ <master>
/// <ip> <port>]` for instance events and `<master> <old ip> <old port>
/// <new ip> <new port>` for `+switch-master`.
pub fn event(channel: &str, payload: &str) -> Option<Event> {
    let words: Vec<&str> = payload.split_whitespace().collect();
    if channel == "+switch-master" {
        return match words.as_slice() {
            [name, _, _, ip, port, ..] => Some(Event::SwitchMaster {
                name: name.to_string(),
                new_addr: crate::redis::target::format_host_port(ip, port.parse().ok()?),
            }),
            [name, ..] => Some(Event::Group(name.to_string())),
            [] => Some(Event::All),
        };
    }
    if let Some(at) = words.iter().position(|w| *w == "@") {
        if let Some(name) = words.get(at + 1) {
            return Some(Event::Group(name.to_string()));
        }
    }
    match words.as_slice() {
        ["master", name, ..] => Some(Event::Group(name.to_string())),
        _ => Some(Event::All),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(s.as_bytes().to_vec())
    }

    fn flat(kv: &[(&str, &str)]) -> Reply {
        Reply::Array(kv.iter().flat_map(|(k, v)| [bulk(k), bulk(v)]).collect())
    }

    #[test]
    fn masters_reply() {
        let r = Reply::Array(vec![
            flat(&[
                ("name", "mymaster"),
                ("ip", "127.0.0.1"),
                ("port", "6380"),
                ("flags", "master,s_down,o_down"),
                ("num-slaves", "2"),
                ("num-other-sentinels", "2"),
                ("quorum", "2"),
                ("config-epoch", "3"),
            ]),
            // Odd length: skipped, the rest kept.
            Reply::Array(vec![bulk("name")]),
            flat(&[("ip", "10.0.0.1")]),
        ]);
        let m = masters(&r).unwrap();
        assert_eq!(m.len(), 1);
        let m = &m[0];
        assert_eq!(
            (m.name.as_str(), m.ip.as_str(), m.port),
            ("mymaster", "127.0.0.1", 6380)
        );
        assert!(m.flags.master && m.flags.s_down && m.flags.o_down);
        assert!(!m.flags.failover_in_progress);
        assert_eq!(
            (
                m.num_slaves,
                m.num_other_sentinels,
                m.quorum,
                m.config_epoch
            ),
            (2, 2, 2, 3)
        );
        assert_eq!(masters(&bulk("x")), None);
    }

    #[test]
    fn instances_reply() {
        let r = Reply::Array(vec![
            flat(&[
                ("ip", "127.0.0.1"),
                ("port", "6381"),
                ("flags", "slave,s_down,disconnected"),
            ]),
            flat(&[("ip", "127.0.0.1"), ("port", "0")]),
            flat(&[("ip", ""), ("port", "1")]),
        ]);
        let i = instances(&r).unwrap();
        assert_eq!(i.len(), 1);
        assert!(i[0].flags.s_down && i[0].flags.disconnected && !i[0].flags.master);
    }

    #[test]
    fn info_section() {
        let text = "# Server\r\nredis_version:7.0.15\r\n\r\n# Sentinel\r\nsentinel_masters:2\r\nsentinel_tilt:0\r\n\
                    sentinel_running_scripts:1\r\nmaster0:name=mymaster,status=ok,address=127.0.0.1:6379,slaves=2,sentinels=3\r\n\
                    master1:name=other,status=odown,address=10.0.0.1:6379,slaves=0,sentinels=1\r\nmasterx:name=bad\r\n";
        let i = info(text);
        assert_eq!((i.masters, i.tilt, i.running_scripts), (2, false, 1));
        assert_eq!(i.master_lines.len(), 2);
        assert_eq!(i.master_lines[1].status, "odown");
        assert_eq!(i.master_lines[0].address, "127.0.0.1:6379");
        assert_eq!(
            (i.master_lines[0].slaves, i.master_lines[0].sentinels),
            (2, 3)
        );
        assert!(info("sentinel_tilt:1").tilt);
    }

    #[test]
    fn events() {
        assert_eq!(
            event("+switch-master", "mymaster 127.0.0.1 6379 127.0.0.1 6380"),
            Some(Event::SwitchMaster {
                name: "mymaster".into(),
                new_addr: "127.0.0.1:6380".into()
            })
        );
        assert_eq!(
            event(
                "+sdown",
                "slave 127.0.0.1:6381 127.0.0.1 6381 @ mymaster 127.0.0.1 6379"
            ),
            Some(Event::Group("mymaster".into()))
        );
        assert_eq!(
            event("+odown", "master mymaster 127.0.0.1 6379 #quorum 2/2"),
            Some(Event::Group("mymaster".into()))
        );
        assert_eq!(event("+tilt", "#tilt mode entered"), Some(Event::All));
        let push = Reply::Array(vec![
            bulk("message"),
            bulk("+failover-end"),
            bulk("master m 1.2.3.4 1"),
        ]);
        assert_eq!(push_event(&push), Some(Event::Group("m".into())));
        let sub = Reply::Array(vec![bulk("subscribe"), bulk("+sdown"), Reply::Int(1)]);
        assert_eq!(push_event(&sub), None);
    }

    #[test]
    fn ckquorum_replies() {
        assert_eq!(
            ckquorum(&Reply::Status(
                "OK 3 usable Sentinels. Quorum and failover authorization can be reached".into()
            )),
            Some(true)
        );
        assert_eq!(
            ckquorum(&Reply::Error("NOQUORUM 1 usable Sentinels.".into())),
            Some(false)
        );
        assert_eq!(
            ckquorum(&Reply::Error("ERR No such master with that name".into())),
            None
        );
    }
}

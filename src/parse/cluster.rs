//! Pure parsers for Redis Cluster replies: `CLUSTER INFO`, `CLUSTER NODES`
//! and `CLUSTER SHARDS`.
//!
//! Nothing here does I/O, so every parser can be fed fixtures, truncated
//! captures and garbage in tests. Replies come from servers we do not
//! control (other engines, other versions, a proxy in between), so no input
//! may panic: errors are typed, carry a bounded `&'static str` reason and
//! never echo the input (it can hold hostnames that must not end up in
//! metric labels or logs at high volume).

use redis::Value;

/// Number of hash slots in a Redis Cluster.
pub const CLUSTER_SLOTS: u32 = 16384;

/// Highest valid hash slot.
pub const MAX_SLOT: u16 = 16383;

/// Longest message type name kept from `cluster_stats_messages_*`. Real
/// names are short (`auth-req`, `publishshard`); the bound keeps a hostile
/// reply from minting arbitrarily long label values.
const MAX_MESSAGE_TYPE_LEN: usize = 32;

/// Why a reply could not be parsed.
///
/// Messages are fixed strings on purpose: they end up in logs and the
/// [`ParseError::reason`] label must stay low-cardinality.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// A field the reply must always carry is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field is present but its value has the wrong shape or range.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A `CLUSTER NODES` line could not be parsed. `line` is 1-based and
    /// counts blank lines, so it points at the raw reply.
    #[error("cluster nodes line {line}: {reason}")]
    NodeLine {
        /// 1-based line number in the reply.
        line: usize,
        /// What was wrong with it.
        reason: &'static str,
    },
}

impl ParseError {
    /// Bounded label for an error counter metric.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::MissingField(_) => "missing_field",
            ParseError::Malformed(_) => "malformed",
            ParseError::NodeLine { .. } => "bad_node_line",
        }
    }
}

// ---------------------------------------------------------------------------
// CLUSTER INFO
// ---------------------------------------------------------------------------

/// CLUSTER INFO (CRLF `key:value` lines).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterInfo {
    /// `cluster_state:ok`. Any other value (normally `fail`) is not ok.
    pub state_ok: bool,
    /// `cluster_slots_assigned`
    pub slots_assigned: u64,
    /// `cluster_slots_ok`
    pub slots_ok: u64,
    /// `cluster_slots_pfail`
    pub slots_pfail: u64,
    /// `cluster_slots_fail`
    pub slots_fail: u64,
    /// `cluster_known_nodes` (includes nodes still in handshake)
    pub known_nodes: u64,
    /// `cluster_size` (masters serving at least one slot)
    pub size: u64,
    /// `cluster_current_epoch`
    pub current_epoch: u64,
    /// `cluster_my_epoch`
    pub my_epoch: u64,
    /// cluster_stats_messages_<type>_sent, by type (e.g. "ping", "pong", "meet", "fail", "auth-req"); only those present.
    pub messages_sent: Vec<(String, u64)>,
    /// cluster_stats_messages_<type>_received, by type; only those present.
    pub messages_received: Vec<(String, u64)>,
    /// Known fields whose value did not parse (lenient parse only): they
    /// read 0 here and must not be exported.
    pub dropped: Vec<&'static str>,
}

/// Parses a `CLUSTER INFO` reply.
///
/// Unknown keys are ignored so newer servers keep working; a known numeric
/// key with a non-numeric value is an error, because exporting a silently
/// defaulted 0 would look like a real reading. Errors if `cluster_state` is
/// missing: without it the text is not a CLUSTER INFO reply at all.
pub fn parse_cluster_info(text: &str) -> Result<ClusterInfo, ParseError> {
    let (info, errors) = parse_cluster_info_lenient(text)?;
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(info),
    }
}

/// Parses a `CLUSTER INFO` reply, keeping what is good: a known field whose
/// value does not parse is left out (named in [`ClusterInfo::dropped`], so
/// it is not exported as a made-up 0) and returned as an error beside the
/// result. Only a reply without `cluster_state` is an error as a whole.
pub fn parse_cluster_info_lenient(
    text: &str,
) -> Result<(ClusterInfo, Vec<ParseError>), ParseError> {
    let mut info = ClusterInfo::default();
    let mut errors = Vec::new();
    let mut saw_state = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim();
        let value = value.trim();
        let (name, field) = match key {
            "cluster_state" => {
                saw_state = true;
                info.state_ok = value == "ok";
                continue;
            }
            "cluster_slots_assigned" => ("cluster_slots_assigned", &mut info.slots_assigned),
            "cluster_slots_ok" => ("cluster_slots_ok", &mut info.slots_ok),
            "cluster_slots_pfail" => ("cluster_slots_pfail", &mut info.slots_pfail),
            "cluster_slots_fail" => ("cluster_slots_fail", &mut info.slots_fail),
            "cluster_known_nodes" => ("cluster_known_nodes", &mut info.known_nodes),
            "cluster_size" => ("cluster_size", &mut info.size),
            "cluster_current_epoch" => ("cluster_current_epoch", &mut info.current_epoch),
            "cluster_my_epoch" => ("cluster_my_epoch", &mut info.my_epoch),
            _ => {
                if let Err(e) = record_message_counter(&mut info, key, value) {
                    errors.push(e);
                }
                continue;
            }
        };
        match parse_u64(value) {
            Some(n) => {
                *field = n;
                info.dropped.retain(|d| *d != name);
            }
            None => {
                *field = 0;
                if !info.dropped.contains(&name) {
                    info.dropped.push(name);
                }
                errors.push(ParseError::Malformed("cluster info value"));
            }
        }
    }
    if !saw_state {
        return Err(ParseError::MissingField("cluster_state"));
    }
    Ok((info, errors))
}

fn record_message_counter(
    info: &mut ClusterInfo,
    key: &str,
    value: &str,
) -> Result<(), ParseError> {
    let Some(rest) = key.strip_prefix("cluster_stats_messages_") else {
        return Ok(());
    };
    // The untyped totals (`cluster_stats_messages_sent`) do not match the
    // `_sent` suffix with a non-empty type, so they fall through here; they
    // equal the sum of the typed counters anyway.
    let (list, kind) = if let Some(kind) = rest.strip_suffix("_sent") {
        (&mut info.messages_sent, kind)
    } else if let Some(kind) = rest.strip_suffix("_received") {
        (&mut info.messages_received, kind)
    } else {
        return Ok(());
    };
    if !is_message_type(kind) {
        return Ok(());
    }
    let n = parse_u64(value).ok_or(ParseError::Malformed("cluster info message counter"))?;
    match list.iter_mut().find(|(k, _)| k == kind) {
        Some(entry) => entry.1 = n,
        None => list.push((kind.to_owned(), n)),
    }
    Ok(())
}

fn is_message_type(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= MAX_MESSAGE_TYPE_LEN
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

// ---------------------------------------------------------------------------
// CLUSTER NODES
// ---------------------------------------------------------------------------

/// Flags column of a `CLUSTER NODES` line. Unknown flags are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFlags {
    /// `myself`: the node that answered.
    pub myself: bool,
    /// `master`
    pub master: bool,
    /// `slave` (or `replica`, should a server ever spell it that way).
    pub replica: bool,
    /// `fail?`: this node suspects the peer is down; not yet agreed.
    pub pfail: bool,
    /// `fail`: a majority of masters agreed the node is down.
    pub fail: bool,
    /// `handshake`: not yet a trusted member.
    pub handshake: bool,
    /// `noaddr`: address unknown (shown as `:0@0`).
    pub noaddr: bool,
    /// `nofailover`: replica configured never to fail over.
    pub nofailover: bool,
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLine {
    /// Node id (40 hex characters on real servers; not enforced).
    pub id: String,
    /// May be empty for noaddr nodes (":0@0"). IPv6 addresses are unbracketed,
    /// as Redis prints them.
    pub ip: String,
    /// Client port; 0 for noaddr nodes.
    pub port: u16,
    /// Cluster bus port; 0 when absent (pre-4.0 `ip:port` form) or unknown.
    pub cport: u16,
    /// The ",hostname" suffix (7.0+), None when absent or empty.
    pub hostname: Option<String>,
    /// Parsed flags column.
    pub flags: NodeFlags,
    /// None for "-".
    pub master_id: Option<String>,
    /// Milliseconds timestamp of the unanswered ping, 0 if none pending.
    pub ping_sent: u64,
    /// Milliseconds timestamp of the last pong.
    pub pong_recv: u64,
    /// Config epoch of the node (or of its master, for a replica).
    pub config_epoch: u64,
    /// Link state: `connected` vs `disconnected`.
    pub link_connected: bool,
    /// Owned slot ranges, inclusive; single slot "5" -> (5,5). Ranges are
    /// validated (start <= end <= 16383, no overlap).
    pub slots: Vec<(u16, u16)>,
    /// "[slot->-id]" entries: slot being moved from this node to `id`.
    pub migrating: Vec<(u16, String)>,
    /// "[slot-<-id]" entries: slot being moved from `id` to this node.
    pub importing: Vec<(u16, String)>,
}

impl NodeLine {
    /// Number of distinct valid slots in `slots`; never above 16384, even
    /// for a hand-built value with invalid or overlapping ranges.
    pub fn slot_count(&self) -> u32 {
        count_slots(&self.slots)
    }

    /// "ip:port" (IPv6 as "[ip]:port"), None for noaddr/empty ip or port 0.
    pub fn addr(&self) -> Option<String> {
        if self.flags.noaddr || self.ip.is_empty() || self.port == 0 {
            return None;
        }
        if self.ip.contains(':') {
            Some(format!("[{}]:{}", self.ip, self.port))
        } else {
            Some(format!("{}:{}", self.ip, self.port))
        }
    }
}

/// CLUSTER NODES (LF lines). Skip blank lines. A malformed line is an error naming its 1-based line number (not its content).
///
/// The strict form, for callers that want the whole reply or nothing
/// (fixtures, fuzzing); the poller uses [`parse_cluster_nodes_lenient`].
pub fn parse_cluster_nodes(text: &str) -> Result<Vec<NodeLine>, ParseError> {
    let (nodes, errors) = parse_cluster_nodes_lenient(text);
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(nodes),
    }
}

/// CLUSTER NODES, keeping every line that parses: a malformed line is
/// dropped and reported beside the result (line number and a fixed
/// reason, never its content). One bad line from a buggy proxy or a newer
/// server should cost that node's entry, not the whole view and the node's
/// INFO; the drop is counted so it is not silent.
pub fn parse_cluster_nodes_lenient(text: &str) -> (Vec<NodeLine>, Vec<ParseError>) {
    let mut nodes = Vec::new();
    let mut errors = Vec::new();
    for (idx, line) in text.split('\n').enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_node_line(line) {
            Ok(node) => nodes.push(node),
            Err(reason) => errors.push(ParseError::NodeLine {
                line: idx.saturating_add(1),
                reason,
            }),
        }
    }
    (nodes, errors)
}

fn parse_node_line(line: &str) -> Result<NodeLine, &'static str> {
    let mut fields = line.split_ascii_whitespace();
    let id = fields.next().ok_or("missing id")?;
    let address = fields.next().ok_or("missing address")?;
    let flags = fields.next().ok_or("missing flags")?;
    let master = fields.next().ok_or("missing master id")?;
    let ping_sent = fields.next().ok_or("missing ping-sent")?;
    let pong_recv = fields.next().ok_or("missing pong-recv")?;
    let config_epoch = fields.next().ok_or("missing config-epoch")?;
    let link = fields.next().ok_or("missing link-state")?;

    let (ip, port, cport, hostname) = parse_node_address(address)?;
    let link_connected = match link {
        "connected" => true,
        "disconnected" => false,
        _ => return Err("bad link-state"),
    };

    let mut node = NodeLine {
        id: id.to_owned(),
        ip,
        port,
        cport,
        hostname,
        flags: parse_flags(flags),
        master_id: (master != "-").then(|| master.to_owned()),
        ping_sent: parse_u64(ping_sent).ok_or("bad ping-sent")?,
        pong_recv: parse_u64(pong_recv).ok_or("bad pong-recv")?,
        config_epoch: parse_u64(config_epoch).ok_or("bad config-epoch")?,
        link_connected,
        slots: Vec::new(),
        migrating: Vec::new(),
        importing: Vec::new(),
    };

    let mut seen = SlotSet::new();
    for token in fields {
        if let Some(inner) = token.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or("bad migration entry")?;
            if let Some((slot, peer)) = inner.split_once("->-") {
                node.migrating.push(parse_migration(slot, peer)?);
            } else if let Some((slot, peer)) = inner.split_once("-<-") {
                node.importing.push(parse_migration(slot, peer)?);
            } else {
                return Err("bad migration entry");
            }
        } else {
            let range = match token.split_once('-') {
                Some((start, end)) => (parse_slot(start)?, parse_slot(end)?),
                None => {
                    let slot = parse_slot(token)?;
                    (slot, slot)
                }
            };
            if range.0 > range.1 {
                return Err("reversed slot range");
            }
            if !seen.insert_range(range) {
                return Err("overlapping slot ranges");
            }
            node.slots.push(range);
        }
    }
    Ok(node)
}

/// Splits `ip:port@cport[,hostname[,aux=...]]`. The port is taken after the
/// last `:` because Redis prints IPv6 addresses without brackets.
fn parse_node_address(address: &str) -> Result<(String, u16, u16, Option<String>), &'static str> {
    let (endpoint, extra) = match address.split_once(',') {
        Some((endpoint, extra)) => (endpoint, Some(extra)),
        None => (address, None),
    };
    // Only the first extra field is the hostname; later ones are `key=value`
    // aux fields (nodes.conf format, 7.2+), which a hostname cannot contain.
    let hostname = extra
        .and_then(|e| e.split(',').next())
        .filter(|h| !h.is_empty() && !h.contains('='))
        .map(str::to_owned);
    let (ip_port, cport) = match endpoint.split_once('@') {
        Some((ip_port, cport)) => (ip_port, parse_port(cport).ok_or("bad cluster bus port")?),
        None => (endpoint, 0),
    };
    let (ip, port) = ip_port.rsplit_once(':').ok_or("bad address")?;
    let port = parse_port(port).ok_or("bad port")?;
    Ok((ip.to_owned(), port, cport, hostname))
}

fn parse_flags(flags: &str) -> NodeFlags {
    let mut out = NodeFlags::default();
    for flag in flags.split(',') {
        match flag {
            "myself" => out.myself = true,
            "master" => out.master = true,
            "slave" | "replica" => out.replica = true,
            "fail?" => out.pfail = true,
            "fail" => out.fail = true,
            "handshake" => out.handshake = true,
            "noaddr" => out.noaddr = true,
            "nofailover" => out.nofailover = true,
            _ => {}
        }
    }
    out
}

fn parse_migration(slot: &str, peer: &str) -> Result<(u16, String), &'static str> {
    let slot = parse_slot(slot)?;
    if peer.is_empty() {
        return Err("bad migration entry");
    }
    Ok((slot, peer.to_owned()))
}

fn parse_slot(s: &str) -> Result<u16, &'static str> {
    parse_u64(s)
        .filter(|&n| n <= u64::from(MAX_SLOT))
        .and_then(|n| u16::try_from(n).ok())
        .ok_or("bad slot")
}

// ---------------------------------------------------------------------------
// CLUSTER SHARDS
// ---------------------------------------------------------------------------

/// Role of a node within its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardRole {
    /// `master` (or `primary`)
    Master,
    /// `replica` (or `slave`)
    Replica,
}

/// `health` of a node in `CLUSTER SHARDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// `online`
    Online,
    /// `fail` (what 7.0 actually sends) or `failed` (what the docs say).
    Failed,
    /// `loading`: replica still syncing.
    Loading,
    /// Absent or a value this parser does not know.
    Unknown,
}

/// One node of a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardNode {
    /// Node id.
    pub id: String,
    /// `ip`; empty when the server did not send it.
    pub ip: String,
    /// Preferred endpoint; None when absent, empty or `?` (unknown).
    pub endpoint: Option<String>,
    /// Announced hostname; None when absent or empty.
    pub hostname: Option<String>,
    /// Plain-text client port, when the node listens on one.
    pub port: Option<u16>,
    /// TLS client port, when the node listens on one.
    pub tls_port: Option<u16>,
    /// Master or replica.
    pub role: ShardRole,
    /// `replication-offset`; 0 when absent.
    pub replication_offset: u64,
    /// Reported health.
    pub health: Health,
}

/// One shard of `CLUSTER SHARDS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// 7.2+/valkey shard "id" field.
    pub id: Option<String>,
    /// Inclusive slot ranges; validated like [`NodeLine::slots`].
    pub slots: Vec<(u16, u16)>,
    /// Nodes serving this shard.
    pub nodes: Vec<ShardNode>,
}

impl Shard {
    /// Number of distinct valid slots in `slots`; never above 16384.
    pub fn slot_count(&self) -> u32 {
        count_slots(&self.slots)
    }
}

/// CLUSTER SHARDS reply as decoded by the redis crate: RESP2 (flat arrays of alternating key/value) or RESP3 (redis::Value::Map). Unknown keys ignored. "slots" is a flat list of integers start,end,start,end...
pub fn parse_cluster_shards(reply: &Value) -> Result<Vec<Shard>, ParseError> {
    let items = list(reply).ok_or(ParseError::Malformed("shards reply"))?;
    items.iter().map(parse_shard).collect()
}

fn parse_shard(value: &Value) -> Result<Shard, ParseError> {
    let mut shard = Shard {
        id: None,
        slots: Vec::new(),
        nodes: Vec::new(),
    };
    for (key, value) in pairs(value, "shard")? {
        match key {
            "slots" => shard.slots = parse_shard_slots(value)?,
            "nodes" => {
                let nodes = list(value).ok_or(ParseError::Malformed("shard nodes"))?;
                shard.nodes = nodes
                    .iter()
                    .map(parse_shard_node)
                    .collect::<Result<_, _>>()?;
            }
            "id" => shard.id = non_empty(text(value).ok_or(ParseError::Malformed("shard id"))?),
            _ => {}
        }
    }
    Ok(shard)
}

fn parse_shard_slots(value: &Value) -> Result<Vec<(u16, u16)>, ParseError> {
    const BAD: ParseError = ParseError::Malformed("shard slots");
    let items = list(value).ok_or(BAD)?;
    let mut seen = SlotSet::new();
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut bounds = items.chunks_exact(2);
    for pair in &mut bounds {
        let [start, end] = pair else { return Err(BAD) };
        let start = slot_value(start).ok_or(BAD)?;
        let end = slot_value(end).ok_or(BAD)?;
        if start > end || !seen.insert_range((start, end)) {
            return Err(BAD);
        }
        out.push((start, end));
    }
    if !bounds.remainder().is_empty() {
        return Err(BAD);
    }
    Ok(out)
}

fn parse_shard_node(value: &Value) -> Result<ShardNode, ParseError> {
    let mut id = None;
    let mut role = None;
    let mut node_ip = String::new();
    let mut endpoint = None;
    let mut hostname = None;
    let mut port = None;
    let mut tls_port = None;
    let mut replication_offset = 0;
    let mut health = Health::Unknown;
    for (key, value) in pairs(value, "shard node")? {
        match key {
            "id" => id = Some(text(value).ok_or(ParseError::Malformed("node id"))?),
            "ip" => {
                node_ip = text(value)
                    .ok_or(ParseError::Malformed("node ip"))?
                    .to_owned()
            }
            "endpoint" => {
                let e = text(value).ok_or(ParseError::Malformed("node endpoint"))?;
                endpoint = non_empty(e).filter(|e| e != "?");
            }
            "hostname" => {
                hostname = non_empty(text(value).ok_or(ParseError::Malformed("node hostname"))?)
            }
            "port" => port = Some(port_value(value).ok_or(ParseError::Malformed("node port"))?),
            "tls-port" => {
                tls_port = Some(port_value(value).ok_or(ParseError::Malformed("node tls-port"))?)
            }
            "role" => {
                role = Some(match text(value) {
                    Some("master" | "primary") => ShardRole::Master,
                    Some("replica" | "slave") => ShardRole::Replica,
                    _ => return Err(ParseError::Malformed("node role")),
                })
            }
            "replication-offset" => {
                replication_offset =
                    number(value).ok_or(ParseError::Malformed("node replication-offset"))?
            }
            "health" => {
                health = match text(value) {
                    Some("online") => Health::Online,
                    Some("fail" | "failed") => Health::Failed,
                    Some("loading") => Health::Loading,
                    _ => Health::Unknown,
                }
            }
            _ => {}
        }
    }
    let id = id
        .filter(|id| !id.is_empty())
        .ok_or(ParseError::MissingField("node id"))?;
    Ok(ShardNode {
        id: id.to_owned(),
        ip: node_ip,
        endpoint,
        hostname,
        port,
        tls_port,
        role: role.ok_or(ParseError::MissingField("node role"))?,
        replication_offset,
        health,
    })
}

/// Strips RESP3 attributes, which a proxy or future server may wrap around
/// any value. A loop, not recursion, so nesting depth cannot blow the stack.
fn unwrap_attr(mut value: &Value) -> &Value {
    while let Value::Attribute { data, .. } = value {
        value = data;
    }
    value
}

fn list(value: &Value) -> Option<&[Value]> {
    match unwrap_attr(value) {
        Value::Array(items) | Value::Set(items) => Some(items),
        _ => None,
    }
}

/// Key/value pairs of a RESP3 map or a RESP2 flat array. Entries whose key
/// is not text are skipped like any other unknown key.
fn pairs<'a>(
    value: &'a Value,
    what: &'static str,
) -> Result<Vec<(&'a str, &'a Value)>, ParseError> {
    let mut out = Vec::new();
    match unwrap_attr(value) {
        Value::Map(entries) => {
            for (k, v) in entries {
                if let Some(k) = text(k) {
                    out.push((k, v));
                }
            }
        }
        Value::Array(items) => {
            let mut chunks = items.chunks_exact(2);
            for pair in &mut chunks {
                if let [k, v] = pair {
                    if let Some(k) = text(k) {
                        out.push((k, v));
                    }
                }
            }
            if !chunks.remainder().is_empty() {
                return Err(ParseError::Malformed(what));
            }
        }
        _ => return Err(ParseError::Malformed(what)),
    }
    Ok(out)
}

fn text(value: &Value) -> Option<&str> {
    match unwrap_attr(value) {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(s) => Some(s),
        Value::VerbatimString { text, .. } => Some(text),
        _ => None,
    }
}

fn number(value: &Value) -> Option<u64> {
    match unwrap_attr(value) {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => text(other).and_then(parse_u64),
    }
}

fn port_value(value: &Value) -> Option<u16> {
    number(value).and_then(|n| u16::try_from(n).ok())
}

fn slot_value(value: &Value) -> Option<u16> {
    number(value)
        .filter(|&n| n <= u64::from(MAX_SLOT))
        .and_then(|n| u16::try_from(n).ok())
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

/// Plain decimal only: `u64::from_str` would also take a leading `+`, which
/// no Redis reply contains and which would hide a misaligned column.
fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_port(s: &str) -> Option<u16> {
    parse_u64(s).and_then(|n| u16::try_from(n).ok())
}

/// Bitmap of the 16384 slots (2 KiB). Lets us reject overlapping ranges and
/// count slots without trusting that ranges are disjoint.
struct SlotSet([u64; 256]);

impl SlotSet {
    fn new() -> Self {
        SlotSet([0; 256])
    }

    /// Marks every slot of an inclusive range. Returns false if the range is
    /// invalid or overlaps one already inserted; callers then reject the
    /// whole reply, so the partially marked set is never looked at again.
    fn insert_range(&mut self, (start, end): (u16, u16)) -> bool {
        if start > end || end > MAX_SLOT {
            return false;
        }
        let mut fresh = true;
        for slot in start..=end {
            fresh &= self.insert(slot);
        }
        fresh
    }

    /// Returns true if the slot was not yet present.
    fn insert(&mut self, slot: u16) -> bool {
        let bit = 1u64 << (slot % 64);
        match self.0.get_mut(usize::from(slot / 64)) {
            Some(word) if *word & bit == 0 => {
                *word |= bit;
                true
            }
            _ => false,
        }
    }
}

fn count_slots(ranges: &[(u16, u16)]) -> u32 {
    let mut set = SlotSet::new();
    let mut count = 0u32;
    for &(start, end) in ranges {
        if start > end || end > MAX_SLOT {
            continue;
        }
        for slot in start..=end {
            if set.insert(slot) {
                count += 1;
            }
        }
        if count >= CLUSTER_SLOTS {
            break;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    const ID_27101: &str = "6ca10f22032b8a40697ba58cef637475009ae082";
    const ID_27102: &str = "c82b905c1ea818a2c33a0d10554b19c4e08116b1";
    const ID_27103: &str = "a0e8e553f81e36b80b1345389277d575835aa487";
    const ID_27104: &str = "2bfe33ad7578f9f5ae16eb074f85a544a4986c56";
    const ID_27105: &str = "e350cb0749acdf7e03a126da115fe9386e1c203b";
    const ID_27106: &str = "ba816d17d1b8369793114a26e73333f19fe3fe77";
    const ID_HANDSHAKE: &str = "2145000e3c3fdef96868e03345d0eaf7141dc349";

    fn own_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cluster")
    }

    /// Public fixtures stay outside the repo (their licences are not ours);
    /// tests using them are skipped where the shared checkout is absent.
    fn public_dir() -> Option<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/cluster");
        dir.is_dir().then_some(dir)
    }

    fn own(name: &str) -> String {
        let path = own_dir().join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn own_bytes(name: &str) -> Vec<u8> {
        let path = own_dir().join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn public(name: &str) -> Option<String> {
        Some(std::fs::read_to_string(public_dir()?.join(name)).expect("public fixture"))
    }

    /// Every fixture usable as input: our own, plus the public ones when present.
    fn all_fixtures() -> Vec<(String, Vec<u8>)> {
        let mut dirs = vec![own_dir()];
        dirs.extend(public_dir());
        let mut out = Vec::new();
        for dir in dirs {
            let mut entries: Vec<_> = std::fs::read_dir(&dir)
                .expect("fixture dir")
                .map(|e| e.expect("dir entry").path())
                .collect();
            entries.sort();
            for path in entries {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if name.ends_with(".txt") || name.ends_with(".raw") {
                    out.push((name, std::fs::read(&path).expect("fixture")));
                }
            }
        }
        assert!(out.len() >= 17, "expected at least our 17 fixtures");
        out
    }

    fn nodes(name: &str) -> Vec<NodeLine> {
        parse_cluster_nodes(&own(name)).expect(name)
    }

    fn by_id<'a>(nodes: &'a [NodeLine], id: &str) -> &'a NodeLine {
        nodes.iter().find(|n| n.id == id).expect("node id present")
    }

    fn raw_shards(name: &str) -> Vec<Shard> {
        let value = redis::parse_redis_value(&own_bytes(name)).expect("valid RESP");
        parse_cluster_shards(&value).expect(name)
    }

    fn counters(list: &[(String, u64)]) -> Vec<(&str, u64)> {
        list.iter().map(|(k, v)| (k.as_str(), *v)).collect()
    }

    // --- CLUSTER INFO ------------------------------------------------------

    #[test]
    fn info_ok() {
        let info = parse_cluster_info(&own("redis-7.0.15-cluster-info-ok.txt")).unwrap();
        assert!(info.state_ok);
        assert_eq!(
            (
                info.slots_assigned,
                info.slots_ok,
                info.slots_pfail,
                info.slots_fail
            ),
            (16384, 16384, 0, 0)
        );
        assert_eq!((info.known_nodes, info.size), (6, 3));
        assert_eq!((info.current_epoch, info.my_epoch), (6, 1));
        assert_eq!(
            counters(&info.messages_sent),
            [("ping", 201), ("pong", 197)]
        );
        assert_eq!(
            counters(&info.messages_received),
            [("ping", 192), ("pong", 201), ("meet", 5)]
        );
        // Typed counters add up to the untyped totals (398 / 398), which we drop.
        assert_eq!(info.messages_sent.iter().map(|c| c.1).sum::<u64>(), 398);
        assert_eq!(info.messages_received.iter().map(|c| c.1).sum::<u64>(), 398);
    }

    #[test]
    fn info_fail_and_after_failover() {
        let info = parse_cluster_info(&own("redis-7.0.15-cluster-info-fail.txt")).unwrap();
        assert!(!info.state_ok);
        assert_eq!(
            (
                info.slots_assigned,
                info.slots_ok,
                info.slots_pfail,
                info.slots_fail
            ),
            (16384, 10923, 0, 5461)
        );
        assert_eq!((info.current_epoch, info.my_epoch), (7, 1));
        assert_eq!(
            counters(&info.messages_sent),
            [("ping", 470), ("pong", 467), ("fail", 3), ("auth-ack", 1)]
        );
        assert_eq!(
            counters(&info.messages_received),
            [
                ("ping", 462),
                ("pong", 469),
                ("meet", 5),
                ("fail", 2),
                ("auth-req", 1)
            ]
        );

        let after =
            parse_cluster_info(&own("redis-7.0.15-cluster-info-after-failover.txt")).unwrap();
        assert!(after.state_ok);
        assert_eq!(
            (after.slots_ok, after.slots_fail, after.current_epoch),
            (16384, 0, 7)
        );
        assert_eq!(
            counters(&after.messages_sent),
            [("ping", 421), ("pong", 420), ("auth-ack", 1)]
        );
        assert!(after
            .messages_received
            .contains(&("auth-req".to_owned(), 1)));
        assert!(after.messages_received.contains(&("fail".to_owned(), 1)));
    }

    #[test]
    fn info_public_doc_example() {
        let Some(text) = public("redis-doc-cluster-info-example.txt") else {
            return;
        };
        let info = parse_cluster_info(&text).unwrap();
        assert!(info.state_ok);
        assert_eq!((info.slots_ok, info.known_nodes, info.size), (16384, 6, 3));
        assert_eq!((info.current_epoch, info.my_epoch), (6, 2));
        // The example only has the untyped totals.
        assert!(info.messages_sent.is_empty() && info.messages_received.is_empty());
    }

    #[test]
    fn info_errors_and_tolerance() {
        assert_eq!(
            parse_cluster_info("cluster_slots_ok:1\r\n"),
            Err(ParseError::MissingField("cluster_state"))
        );
        assert_eq!(
            parse_cluster_info(""),
            Err(ParseError::MissingField("cluster_state"))
        );
        assert_eq!(
            parse_cluster_info("cluster_state:ok\r\ncluster_size:three\r\n"),
            Err(ParseError::Malformed("cluster info value"))
        );
        assert_eq!(
            parse_cluster_info("cluster_state:ok\r\ncluster_size:99999999999999999999999\r\n")
                .unwrap_err()
                .reason(),
            "malformed"
        );
        // LF-only endings, unknown keys, junk lines, an unknown state value.
        let info = parse_cluster_info(
            "# Cluster\ncluster_state:degraded\nnew_field:x\njunk\ncluster_size:2\n\
             cluster_stats_messages_ping_sent:1\ncluster_stats_messages_ping_sent:4\n\
             cluster_stats_messages_bad type_sent:9\ncluster_stats_messages__sent:9\n",
        )
        .unwrap();
        assert!(!info.state_ok);
        assert_eq!(info.size, 2);
        assert_eq!(counters(&info.messages_sent), [("ping", 4)]);
        assert!(info.messages_received.is_empty());
    }

    // --- CLUSTER NODES -----------------------------------------------------

    #[test]
    fn nodes_healthy_three_masters_three_replicas() {
        let nodes = nodes("redis-7.0.15-cluster-nodes-ok.txt");
        assert_eq!(nodes.len(), 6);
        let masters: Vec<_> = nodes.iter().filter(|n| n.flags.master).collect();
        let replicas: Vec<_> = nodes.iter().filter(|n| n.flags.replica).collect();
        assert_eq!((masters.len(), replicas.len()), (3, 3));
        assert_eq!(
            masters.iter().map(|n| n.slot_count()).sum::<u32>(),
            CLUSTER_SLOTS
        );
        assert!(replicas
            .iter()
            .all(|n| n.slots.is_empty() && n.slot_count() == 0));
        for replica in &replicas {
            let master = replica.master_id.as_deref().expect("replica has a master");
            assert!(masters.iter().any(|m| m.id == master));
        }
        assert!(nodes
            .iter()
            .all(|n| n.link_connected && n.hostname.is_none()));
        assert!(nodes
            .iter()
            .all(|n| n.migrating.is_empty() && n.importing.is_empty()));

        let me = by_id(&nodes, ID_27101);
        assert!(me.flags.myself && me.flags.master && !me.flags.replica);
        assert_eq!(me.master_id, None);
        assert_eq!(
            (me.ip.as_str(), me.port, me.cport),
            ("127.0.0.1", 27101, 37101)
        );
        assert_eq!(me.addr().as_deref(), Some("127.0.0.1:27101"));
        assert_eq!(
            (me.ping_sent, me.pong_recv, me.config_epoch),
            (0, 1795761648000, 1)
        );
        assert_eq!(me.slots, [(0, 5460)]);
        assert_eq!(me.slot_count(), 5461);

        assert_eq!(by_id(&nodes, ID_27102).slots, [(5461, 10922)]);
        assert_eq!(by_id(&nodes, ID_27103).slots, [(10923, 16383)]);
        assert_eq!(by_id(&nodes, ID_27103).slot_count(), 5461);
        let r = by_id(&nodes, ID_27104);
        assert_eq!(r.master_id.as_deref(), Some(ID_27103));
        assert_eq!(
            (r.port, r.cport, r.pong_recv, r.config_epoch),
            (27104, 37104, 1795761648104, 3)
        );
        assert_eq!(by_id(&nodes, ID_27105).master_id.as_deref(), Some(ID_27101));
        assert_eq!(by_id(&nodes, ID_27106).master_id.as_deref(), Some(ID_27102));
    }

    #[test]
    fn nodes_migrating_handshake_hostnames() {
        let nodes = nodes("redis-7.0.15-cluster-nodes-migrating-handshake-hostnames.txt");
        assert_eq!(nodes.len(), 7);
        let me = by_id(&nodes, ID_27101);
        assert!(me.flags.myself);
        assert_eq!(me.hostname.as_deref(), Some("redis-27101.cache.internal"));
        assert_eq!(me.slots, [(0, 5460)]);
        assert_eq!(
            me.migrating,
            [(100, ID_27102.to_owned()), (101, ID_27102.to_owned())]
        );
        assert!(me.importing.is_empty());
        // Migration entries are not owned slots.
        assert_eq!(me.slot_count(), 5461);
        for n in nodes.iter().filter(|n| !n.flags.myself) {
            assert!(n.migrating.is_empty() && n.importing.is_empty(), "{}", n.id);
        }

        let hs = by_id(&nodes, ID_HANDSHAKE);
        assert!(hs.flags.handshake && !hs.flags.master && !hs.flags.replica);
        assert!(!hs.link_connected);
        assert_eq!(
            (hs.ip.as_str(), hs.port, hs.cport),
            ("127.0.0.1", 27199, 37199)
        );
        assert_eq!(hs.hostname, None);
        assert_eq!(
            (
                hs.master_id.as_deref(),
                hs.ping_sent,
                hs.pong_recv,
                hs.config_epoch
            ),
            (None, 0, 0, 0)
        );
        assert!(hs.slots.is_empty());

        let other = by_id(&nodes, ID_27106);
        assert_eq!(
            other.hostname.as_deref(),
            Some("redis-27106.cache.internal")
        );
        assert_eq!((other.port, other.cport), (27106, 37106));
        assert_eq!(other.addr().as_deref(), Some("127.0.0.1:27106"));
        let with_hostname = nodes.iter().filter(|n| n.hostname.is_some()).count();
        assert_eq!(with_hostname, 6);
    }

    #[test]
    fn nodes_importing_on_target() {
        let nodes = nodes("redis-7.0.15-cluster-nodes-importing-hostnames.txt");
        assert_eq!(nodes.len(), 6);
        let me = by_id(&nodes, ID_27102);
        assert!(me.flags.myself && me.flags.master);
        assert_eq!(me.slots, [(5461, 10922)]);
        assert_eq!(
            me.importing,
            [(100, ID_27101.to_owned()), (101, ID_27101.to_owned())]
        );
        assert!(me.migrating.is_empty());
        assert!(nodes
            .iter()
            .filter(|n| !n.flags.myself)
            .all(|n| n.migrating.is_empty() && n.importing.is_empty()));
        assert_eq!(
            nodes
                .iter()
                .filter(|n| n.flags.master)
                .map(|n| n.slot_count())
                .sum::<u32>(),
            CLUSTER_SLOTS
        );
    }

    #[test]
    fn nodes_pfail() {
        let nodes = nodes("redis-7.0.15-cluster-nodes-pfail.txt");
        let down = by_id(&nodes, ID_27102);
        assert!(down.flags.master && down.flags.pfail && !down.flags.fail);
        assert!(!down.link_connected);
        assert_eq!(
            (down.ping_sent, down.pong_recv),
            (1795761676723, 1795761675719)
        );
        assert_eq!(down.slots, [(5461, 10922)]);
        assert_eq!(
            nodes
                .iter()
                .filter(|n| n.flags.pfail || n.flags.fail)
                .count(),
            1
        );
        assert_eq!(
            nodes
                .iter()
                .filter(|n| n.flags.master)
                .map(|n| n.slot_count())
                .sum::<u32>(),
            CLUSTER_SLOTS
        );
    }

    #[test]
    fn nodes_failover_done() {
        let nodes = nodes("redis-7.0.15-cluster-nodes-failover-done.txt");
        let old = by_id(&nodes, ID_27102);
        assert!(old.flags.master && old.flags.fail && !old.flags.pfail);
        assert!(old.slots.is_empty() && !old.link_connected);
        let promoted = by_id(&nodes, ID_27106);
        assert!(promoted.flags.master && !promoted.flags.replica);
        assert_eq!(promoted.master_id, None);
        assert_eq!(promoted.config_epoch, 7);
        assert_eq!(promoted.slots, [(5461, 10922)]);
    }

    #[test]
    fn nodes_two_failed_masters_and_nofailover() {
        let nodes = nodes("redis-7.0.15-cluster-nodes-fail.txt");
        let failed: Vec<_> = nodes
            .iter()
            .filter(|n| n.flags.fail)
            .map(|n| n.id.as_str())
            .collect();
        assert_eq!(failed, [ID_27102, ID_27103]);
        let a0 = by_id(&nodes, ID_27103);
        assert_eq!(a0.slots, [(10923, 16383)]);
        assert_eq!((a0.ping_sent, a0.pong_recv), (1795761698838, 1795761697834));
        let nf = by_id(&nodes, ID_27104);
        assert!(nf.flags.replica && nf.flags.nofailover && !nf.flags.master);
        assert_eq!(nf.master_id.as_deref(), Some(ID_27103));
        assert!(nodes
            .iter()
            .filter(|n| n.id != ID_27104)
            .all(|n| !n.flags.nofailover));
        // Slots held by a failed master still count as assigned.
        assert_eq!(
            nodes
                .iter()
                .filter(|n| n.flags.master)
                .map(|n| n.slot_count())
                .sum::<u32>(),
            CLUSTER_SLOTS
        );
    }

    #[test]
    fn nodes_public_doc_hostnames() {
        let Some(text) = public("redis-doc-7.2-cluster-nodes-hostnames-example.txt") else {
            return;
        };
        let nodes = parse_cluster_nodes(&text).unwrap();
        assert_eq!(nodes.len(), 6);
        let me = by_id(&nodes, "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca");
        assert!(me.flags.myself && me.flags.master);
        assert_eq!(me.hostname.as_deref(), Some("hostname1"));
        assert_eq!((me.port, me.cport, me.pong_recv), (30001, 31001, 0));
        assert_eq!(me.slots, [(0, 5460)]);
        let r = by_id(&nodes, "07c37dfeb235213a872192d90877d0cd55635b91");
        assert_eq!(r.hostname.as_deref(), Some("hostname4"));
        assert_eq!(
            r.master_id.as_deref(),
            Some("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
        );
        assert_eq!(
            nodes.iter().map(NodeLine::slot_count).sum::<u32>(),
            CLUSTER_SLOTS
        );
    }

    #[test]
    fn nodes_address_forms() {
        let line = |addr: &str| {
            parse_cluster_nodes(&format!(
                "{ID_27101} {addr} master,fail,noaddr - 0 0 1 disconnected\n"
            ))
            .map(|mut v| v.remove(0))
        };
        let noaddr = line(":0@0").unwrap();
        assert!(noaddr.flags.noaddr && noaddr.flags.fail);
        assert_eq!((noaddr.ip.as_str(), noaddr.port, noaddr.cport), ("", 0, 0));
        assert_eq!(noaddr.addr(), None);
        // Pre-4.0 form without a cluster bus port.
        let old = line(":0").unwrap();
        assert_eq!((old.port, old.cport), (0, 0));

        let parse = |addr: &str| {
            parse_cluster_nodes(&format!(
                "{ID_27101} {addr} master - 0 0 1 connected 0-16383"
            ))
            .map(|mut v| v.remove(0))
        };
        let v6 = parse("2001:db8::1:7000@17000").unwrap();
        assert_eq!(
            (v6.ip.as_str(), v6.port, v6.cport),
            ("2001:db8::1", 7000, 17000)
        );
        assert_eq!(v6.addr().as_deref(), Some("[2001:db8::1]:7000"));
        // An empty hostname and nodes.conf aux fields are not hostnames.
        assert_eq!(parse("10.0.0.1:7000@17000,").unwrap().hostname, None);
        assert_eq!(
            parse("10.0.0.1:7000@17000,,shard-id=abc").unwrap().hostname,
            None
        );
        let aux = parse("10.0.0.1:7000@17000,h1,shard-id=abc").unwrap();
        assert_eq!(aux.hostname.as_deref(), Some("h1"));
        assert_eq!(aux.addr().as_deref(), Some("10.0.0.1:7000"));
        // Single slots and ranges mixed; CRLF tolerated.
        let mixed = parse_cluster_nodes(&format!(
            "{ID_27101} 10.0.0.1:7000@17000 myself,master - 0 0 1 connected 0 2-4 16383\r\n"
        ))
        .unwrap();
        assert_eq!(mixed[0].slots, [(0, 0), (2, 4), (16383, 16383)]);
        assert_eq!(mixed[0].slot_count(), 5);
    }

    #[test]
    fn nodes_errors_name_line_not_content() {
        let good =
            format!("{ID_27101} 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460");
        let cases: &[(&str, &str)] = &[
            ("secret-hostname-x", "missing address"),
            ("a b c d e f g", "missing link-state"),
            ("a 1.2.3.4:99999@1 master - 0 0 1 connected", "bad port"),
            (
                "a 1.2.3.4:7000@99999 master - 0 0 1 connected",
                "bad cluster bus port",
            ),
            ("a 1.2.3.4 master - 0 0 1 connected", "bad address"),
            ("a 1.2.3.4:-1@1 master - 0 0 1 connected", "bad port"),
            (
                "a 1.2.3.4:7000@1 master - 99999999999999999999999 0 1 connected",
                "bad ping-sent",
            ),
            (
                "a 1.2.3.4:7000@1 master - 0 -1 1 connected",
                "bad pong-recv",
            ),
            (
                "a 1.2.3.4:7000@1 master - 0 0 +1 connected",
                "bad config-epoch",
            ),
            ("a 1.2.3.4:7000@1 master - 0 0 1 up", "bad link-state"),
            (
                "a 1.2.3.4:7000@1 master - 0 0 1 connected 100-5",
                "reversed slot range",
            ),
            (
                "a 1.2.3.4:7000@1 master - 0 0 1 connected 16384",
                "bad slot",
            ),
            (
                "a 1.2.3.4:7000@1 master - 0 0 1 connected 0-16384",
                "bad slot",
            ),
            (
                "a 1.2.3.4:7000@1 master - 0 0 1 connected 0-99999999999999999999",
                "bad slot",
            ),
            ("a 1.2.3.4:7000@1 master - 0 0 1 connected -", "bad slot"),
            ("a 1.2.3.4:7000@1 master - 0 0 1 connected 5-", "bad slot"),
            ("a 1.2.3.4:7000@1 master - 0 0 1 connected -5", "bad slot"),
            (
                "a 1.2.3.4:7000@1 master - 0 0 1 connected 0-10 5-20",
                "overlapping slot ranges",
            ),
            (
                "a 1.2.3.4:7000@1 master - 0 0 1 connected 7 7",
                "overlapping slot ranges",
            ),
            (
                "a 1.2.3.4:7000@1 master - 0 0 1 connected [",
                "bad migration entry",
            ),
            (
                "a 1.2.3.4:7000@1 master - 0 0 1 connected [5->-",
                "bad migration entry",
            ),
            (
                "a 1.2.3.4:7000@1 master - 0 0 1 connected [5->-]",
                "bad migration entry",
            ),
            (
                "a 1.2.3.4:7000@1 master - 0 0 1 connected [5]",
                "bad migration entry",
            ),
            (
                "a 1.2.3.4:7000@1 master - 0 0 1 connected [99999->-b]",
                "bad slot",
            ),
            (
                "a 1.2.3.4:7000@1 master - 0 0 1 connected []",
                "bad migration entry",
            ),
        ];
        for (bad, reason) in cases {
            // Blank lines still count, so the bad line is line 3.
            let text = format!("{good}\n\n{bad}\n{good}\n");
            let err = parse_cluster_nodes(&text).unwrap_err();
            assert_eq!(err, ParseError::NodeLine { line: 3, reason }, "{bad}");
            assert_eq!(err.reason(), "bad_node_line");
            let msg = err.to_string();
            assert!(msg.starts_with("cluster nodes line 3: "), "{msg}");
            assert!(!msg.contains("secret") && !msg.contains("1.2.3.4"), "{msg}");
        }
        assert_eq!(parse_cluster_nodes("").unwrap(), []);
        assert_eq!(parse_cluster_nodes("\n \n\r\n").unwrap(), []);
    }

    #[test]
    fn nodes_lenient_keeps_the_good_lines() {
        let good =
            format!("{ID_27101} 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460");
        let other = "b 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-16383";
        let text =
            format!("{good}\nsecret-hostname-x\n{other}\na 1.2.3.4:7000@1 master - 0 0 1 up\n");
        let (nodes, errors) = parse_cluster_nodes_lenient(&text);
        assert_eq!(nodes.len(), 2);
        assert!(nodes[0].flags.myself);
        assert_eq!(nodes[1].id, "b");
        assert_eq!(
            errors,
            [
                ParseError::NodeLine {
                    line: 2,
                    reason: "missing address"
                },
                ParseError::NodeLine {
                    line: 4,
                    reason: "bad link-state"
                },
            ]
        );
        // The strict form still refuses the reply, naming the first bad line.
        assert_eq!(
            parse_cluster_nodes(&text).unwrap_err(),
            ParseError::NodeLine {
                line: 2,
                reason: "missing address"
            }
        );
    }

    #[test]
    fn info_lenient_drops_the_bad_field_only() {
        let text = "cluster_state:ok\r\ncluster_size:three\r\ncluster_known_nodes:6\r\n\
                    cluster_stats_messages_ping_sent:x\r\ncluster_stats_messages_pong_sent:4\r\n";
        let (info, errors) = parse_cluster_info_lenient(text).unwrap();
        assert!(info.state_ok);
        assert_eq!(info.known_nodes, 6);
        assert_eq!(info.dropped, ["cluster_size"]);
        assert_eq!(counters(&info.messages_sent), [("pong", 4)]);
        assert_eq!(errors.len(), 2);
        // A later good value of the same key wins back its place.
        let (info, _) =
            parse_cluster_info_lenient("cluster_state:ok\ncluster_size:x\ncluster_size:3\n")
                .unwrap();
        assert!(info.dropped.is_empty());
        assert_eq!(info.size, 3);
        assert_eq!(
            parse_cluster_info_lenient("cluster_size:3\n").unwrap_err(),
            ParseError::MissingField("cluster_state")
        );
    }

    // --- CLUSTER SHARDS ----------------------------------------------------

    fn assert_healthy_shards(shards: &[Shard]) {
        assert_eq!(shards.len(), 3);
        let expect = [
            ((5461, 10922), ID_27102, 27102, ID_27106, 27106, 2381),
            ((0, 5460), ID_27101, 27101, ID_27105, 27105, 2152),
            ((10923, 16383), ID_27103, 27103, ID_27104, 27104, 2488),
        ];
        for (shard, (range, m_id, m_port, r_id, r_port, offset)) in shards.iter().zip(expect) {
            assert_eq!(shard.id, None);
            assert_eq!(shard.slots, [range]);
            let [m, r] = shard.nodes.as_slice() else {
                panic!("two nodes per shard");
            };
            assert_eq!(
                (m.id.as_str(), m.port, m.role),
                (m_id, Some(m_port), ShardRole::Master)
            );
            assert_eq!(
                (r.id.as_str(), r.port, r.role),
                (r_id, Some(r_port), ShardRole::Replica)
            );
            for n in [m, r] {
                assert_eq!(n.ip, "127.0.0.1");
                assert_eq!(n.endpoint.as_deref(), Some("127.0.0.1"));
                assert_eq!((n.hostname.as_deref(), n.tls_port), (None, None));
                assert_eq!((n.replication_offset, n.health), (offset, Health::Online));
            }
        }
        assert_eq!(
            shards.iter().map(Shard::slot_count).sum::<u32>(),
            CLUSTER_SLOTS
        );
    }

    #[test]
    fn shards_resp2_and_resp3() {
        let resp2 = raw_shards("redis-7.0.15-cluster-shards-resp2.raw");
        assert_healthy_shards(&resp2);
        let value =
            redis::parse_redis_value(&own_bytes("redis-7.0.15-cluster-shards-resp3.raw")).unwrap();
        let Value::Array(shards) = &value else {
            panic!("top level is an array")
        };
        assert!(
            matches!(shards.first(), Some(Value::Map(_))),
            "RESP3 shards are maps"
        );
        let resp3 = parse_cluster_shards(&value).unwrap();
        assert_healthy_shards(&resp3);
        assert_eq!(resp2, resp3);
    }

    #[test]
    fn shards_hostnames() {
        let shards = raw_shards("redis-7.0.15-cluster-shards-hostnames-resp2.raw");
        assert_eq!(shards.len(), 3);
        let all: Vec<_> = shards.iter().flat_map(|s| &s.nodes).collect();
        assert_eq!(all.len(), 6);
        for n in &all {
            let port = n.port.expect("port");
            assert_eq!(
                n.hostname.as_deref(),
                Some(format!("redis-{port}.cache.internal").as_str())
            );
            assert_eq!(n.health, Health::Online);
        }
        let first = &shards[0];
        assert_eq!(first.slots, [(5461, 10922)]);
        assert_eq!(first.nodes[0].id, ID_27102);
        assert_eq!(first.nodes[0].replication_offset, 2409);
        assert_eq!(first.nodes[1].id, ID_27106);
        assert_eq!(first.nodes[1].role, ShardRole::Replica);
        assert_eq!(
            shards.iter().map(Shard::slot_count).sum::<u32>(),
            CLUSTER_SLOTS
        );
    }

    #[test]
    fn shards_fail_health() {
        let shards = raw_shards("redis-7.0.15-cluster-shards-fail-resp2.raw");
        assert_eq!(shards.len(), 4);
        // The failed, demoted master is left in a shard of its own, no slots.
        let orphan = &shards[0];
        assert!(orphan.slots.is_empty());
        assert_eq!(orphan.slot_count(), 0);
        let [n] = orphan.nodes.as_slice() else {
            panic!("one node")
        };
        assert_eq!(
            (n.id.as_str(), n.role, n.health),
            (ID_27102, ShardRole::Master, Health::Failed)
        );
        assert_eq!((n.port, n.replication_offset), (Some(27102), 2409));
        assert_eq!(n.hostname.as_deref(), Some("redis-27102.cache.internal"));

        let last = &shards[3];
        assert_eq!(last.slots, [(10923, 16383)]);
        let health: Vec<_> = last
            .nodes
            .iter()
            .map(|n| (n.id.as_str(), n.role, n.health))
            .collect();
        assert_eq!(
            health,
            [
                (ID_27103, ShardRole::Master, Health::Failed),
                (ID_27104, ShardRole::Replica, Health::Online)
            ]
        );
        assert_eq!(last.nodes[1].replication_offset, 2595);
        let failed = shards
            .iter()
            .flat_map(|s| &s.nodes)
            .filter(|n| n.health == Health::Failed)
            .count();
        assert_eq!(failed, 2);
        assert_eq!(shards[2].nodes[0].id, ID_27106);
        assert_eq!(shards[2].nodes[0].role, ShardRole::Master);
        assert_eq!(
            shards.iter().map(Shard::slot_count).sum::<u32>(),
            CLUSTER_SLOTS
        );
    }

    #[test]
    fn shards_cli_rendering_matches_raw() {
        // Proves the test-only cli reader below before it is trusted with the
        // public fixtures, which only exist in that rendering.
        for (cli, raw) in [
            (
                "redis-7.0.15-cluster-shards-cli.txt",
                "redis-7.0.15-cluster-shards-resp2.raw",
            ),
            (
                "redis-7.0.15-cluster-shards-cli-hostnames.txt",
                "redis-7.0.15-cluster-shards-hostnames-resp2.raw",
            ),
            (
                "redis-7.0.15-cluster-shards-cli-fail.txt",
                "redis-7.0.15-cluster-shards-fail-resp2.raw",
            ),
        ] {
            let from_raw = redis::parse_redis_value(&own_bytes(raw)).unwrap();
            assert_eq!(cli_to_value(&own(cli)), from_raw, "{cli}");
        }
    }

    #[test]
    fn shards_public_doc_examples() {
        let Some(redis_doc) = public("redis-doc-cluster-shards-example-cli.txt") else {
            return;
        };
        let shards = parse_cluster_shards(&cli_to_value(&redis_doc)).unwrap();
        assert_eq!(shards.len(), 3);
        assert_eq!(
            shards.iter().map(Shard::slot_count).sum::<u32>(),
            CLUSTER_SLOTS
        );
        assert_eq!(
            shards[0].nodes[0].id,
            "e10b7051d6bf2d5febd39a2be297bbaea6084111"
        );
        assert_eq!(shards[0].nodes[0].port, Some(30001));
        assert_eq!(shards[0].nodes[0].replication_offset, 72156);
        assert!(shards.iter().all(|s| s.id.is_none()));

        let valkey = public("valkey-doc-cluster-shards-example-cli.txt").expect("valkey fixture");
        let shards = parse_cluster_shards(&cli_to_value(&valkey)).unwrap();
        let ids: Vec<_> = shards.iter().map(|s| s.id.as_deref()).collect();
        assert_eq!(
            ids,
            [
                Some("cd7688ca959bf54a32569ccf260b26715b82a6e3"),
                Some("0d77234c440a6b05c2d77d1b9f37ac63585fc747"),
                Some("a96f023185ea6d7f5e9a0d6ada6f112741217e6a")
            ]
        );
        assert_eq!(shards[1].slots, [(10923, 16383)]);
        assert_eq!(
            shards[0].nodes[1].id,
            "1901f5962d865341e81c85f9f596b1e7160c35ce"
        );
        assert_eq!(shards[0].nodes[1].role, ShardRole::Replica);
        assert_eq!(
            shards.iter().map(Shard::slot_count).sum::<u32>(),
            CLUSTER_SLOTS
        );
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn node_value(extra: Vec<(Value, Value)>) -> Value {
        let mut fields = vec![(bulk("id"), bulk("n1")), (bulk("role"), bulk("master"))];
        fields.extend(extra);
        Value::Map(fields)
    }

    fn shard_value(slots: Vec<Value>, nodes: Vec<Value>) -> Value {
        Value::Array(vec![Value::Array(vec![
            bulk("slots"),
            Value::Array(slots),
            bulk("nodes"),
            Value::Array(nodes),
        ])])
    }

    #[test]
    fn shards_value_forms() {
        // Numbers as strings, text as simple strings, attributes, tls-port,
        // unknown keys and "?" endpoints.
        let node = node_value(vec![
            (Value::SimpleString("port".into()), bulk("6379")),
            (bulk("tls-port"), Value::Int(6380)),
            (bulk("endpoint"), Value::SimpleString("?".into())),
            (bulk("hostname"), bulk("")),
            (bulk("replication-offset"), Value::SimpleString("42".into())),
            (bulk("health"), bulk("loading")),
            (bulk("availability-zone"), bulk("zone-a")),
            (Value::Int(7), Value::Nil),
        ]);
        let reply = shard_value(
            vec![
                bulk("0"),
                Value::Int(10),
                Value::Int(20),
                Value::SimpleString("20".into()),
            ],
            vec![Value::Attribute {
                data: Box::new(node),
                attributes: vec![],
            }],
        );
        let shards = parse_cluster_shards(&reply).unwrap();
        assert_eq!(shards[0].slots, [(0, 10), (20, 20)]);
        assert_eq!(shards[0].slot_count(), 12);
        let n = &shards[0].nodes[0];
        assert_eq!(
            (
                n.port,
                n.tls_port,
                n.endpoint.as_deref(),
                n.hostname.as_deref()
            ),
            (Some(6379), Some(6380), None, None)
        );
        assert_eq!(
            (n.replication_offset, n.health, n.ip.as_str()),
            (42, Health::Loading, "")
        );

        let unknown = node_value(vec![(bulk("health"), bulk("weird"))]);
        let shards = parse_cluster_shards(&shard_value(vec![], vec![unknown])).unwrap();
        assert_eq!(shards[0].nodes[0].health, Health::Unknown);
        assert_eq!(parse_cluster_shards(&Value::Array(vec![])).unwrap(), []);
    }

    #[test]
    fn shards_rejections() {
        let ok_node = || node_value(vec![]);
        let slots = |v: &[i64]| v.iter().map(|&n| Value::Int(n)).collect::<Vec<_>>();
        let bad_slots = [
            slots(&[100, 5]),
            slots(&[0, 16384]),
            slots(&[0]),
            slots(&[-1, 5]),
            slots(&[0, 10, 5, 20]),
            slots(&[i64::MAX, i64::MAX]),
            vec![bulk("x"), bulk("1")],
        ];
        for s in bad_slots {
            assert_eq!(
                parse_cluster_shards(&shard_value(s, vec![ok_node()])),
                Err(ParseError::Malformed("shard slots"))
            );
        }
        let expect = |node: Value, err: ParseError| {
            assert_eq!(
                parse_cluster_shards(&shard_value(vec![], vec![node])),
                Err(err)
            );
        };
        expect(
            Value::Map(vec![(bulk("role"), bulk("master"))]),
            ParseError::MissingField("node id"),
        );
        expect(
            Value::Map(vec![(bulk("id"), bulk("x"))]),
            ParseError::MissingField("node role"),
        );
        expect(
            node_value(vec![(bulk("role"), bulk("boss"))]),
            ParseError::Malformed("node role"),
        );
        expect(
            node_value(vec![(bulk("port"), Value::Int(99999))]),
            ParseError::Malformed("node port"),
        );
        expect(
            node_value(vec![(bulk("port"), Value::Int(-1))]),
            ParseError::Malformed("node port"),
        );
        expect(
            node_value(vec![(bulk("replication-offset"), Value::Double(1.5))]),
            ParseError::Malformed("node replication-offset"),
        );
        expect(
            node_value(vec![(bulk("id"), Value::BulkString(vec![0xff]))]),
            ParseError::Malformed("node id"),
        );
        expect(
            Value::Array(vec![bulk("id")]),
            ParseError::Malformed("shard node"),
        );
        expect(Value::Int(1), ParseError::Malformed("shard node"));
        for top in [
            Value::Nil,
            Value::Okay,
            Value::Int(3),
            bulk("ERR"),
            Value::Array(vec![Value::Nil]),
        ] {
            assert!(parse_cluster_shards(&top).is_err());
        }
    }

    // --- Robustness --------------------------------------------------------

    /// Tiny deterministic PRNG so failures reproduce without a new crate.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    fn check_nodes(nodes: &[NodeLine]) {
        for n in nodes {
            assert!(n.slot_count() <= CLUSTER_SLOTS);
            assert_eq!(
                n.slot_count(),
                n.slots
                    .iter()
                    .map(|(a, b)| u32::from(b - a) + 1)
                    .sum::<u32>()
            );
            for &(a, b) in &n.slots {
                assert!(a <= b && b <= MAX_SLOT);
            }
            let _ = n.addr();
        }
    }

    fn check_shards(shards: &[Shard]) {
        for s in shards {
            assert!(s.slot_count() <= CLUSTER_SLOTS);
            for &(a, b) in &s.slots {
                assert!(a <= b && b <= MAX_SLOT);
            }
        }
    }

    /// Runs every parser that takes this kind of input; only panics matter.
    /// Outcome counts, so a robustness test can prove it reached both the
    /// accepting and the rejecting paths instead of failing early every time.
    #[derive(Default, Debug)]
    struct Tally {
        info: [usize; 2],
        nodes: [usize; 2],
        shards: [usize; 2],
    }

    fn exercise_bytes(bytes: &[u8], tally: &mut Tally) {
        let text = String::from_utf8_lossy(bytes);
        tally.info[usize::from(parse_cluster_info(&text).is_ok())] += 1;
        match parse_cluster_nodes(&text) {
            Ok(nodes) => {
                check_nodes(&nodes);
                tally.nodes[1] += 1;
            }
            Err(_) => tally.nodes[0] += 1,
        }
        if let Ok(value) = redis::parse_redis_value(bytes) {
            exercise_value(&value, tally);
        }
    }

    fn exercise_value(value: &Value, tally: &mut Tally) {
        match parse_cluster_shards(value) {
            Ok(shards) => {
                check_shards(&shards);
                tally.shards[1] += 1;
            }
            Err(_) => tally.shards[0] += 1,
        }
    }

    fn assert_both_paths(tally: &Tally) {
        for (what, [err, ok]) in [
            ("info", tally.info),
            ("nodes", tally.nodes),
            ("shards", tally.shards),
        ] {
            assert!(err > 0 && ok > 0, "{what} not fully exercised: {tally:?}");
        }
    }

    #[test]
    fn robust_truncated_prefixes() {
        let mut tally = Tally::default();
        for (_, bytes) in all_fixtures() {
            for end in 0..=bytes.len() {
                exercise_bytes(bytes.get(..end).unwrap_or_default(), &mut tally);
            }
        }
        // A truncated RESP reply never decodes, so only complete `.raw` files
        // reach the shards parser here; value-level truncation (dropping the
        // tail of any array) is covered by the structured mutation test.
        assert!(
            tally.info.iter().chain(&tally.nodes).all(|&n| n > 0),
            "{tally:?}"
        );
        assert!(tally.shards[1] >= 4, "{tally:?}");
    }

    #[test]
    fn robust_random_byte_flips() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        // Bytes that matter to these grammars, so flips hit the parsers'
        // decisions rather than mostly producing junk that fails early.
        const INTERESTING: &[u8] = b" :,@-[]<>?\r\n0123456789*%$+#_=9\xff\xc3";
        let mut tally = Tally::default();
        for (_, bytes) in all_fixtures() {
            for _ in 0..300 {
                let mut mutated = bytes.clone();
                for _ in 0..=rng.below(4) {
                    let pos = rng.below(mutated.len());
                    let byte = if rng.below(2) == 0 {
                        INTERESTING
                            .get(rng.below(INTERESTING.len()))
                            .copied()
                            .unwrap_or(b' ')
                    } else {
                        rng.next() as u8
                    };
                    if let Some(b) = mutated.get_mut(pos) {
                        *b = byte;
                    }
                }
                exercise_bytes(&mutated, &mut tally);
            }
        }
        assert_both_paths(&tally);
    }

    /// Applies `op` to the `target`-th value (pre-order) of the tree.
    fn mutate_nth(value: &mut Value, target: &mut usize, op: usize) -> bool {
        if *target == 0 {
            *value = match op {
                0 => Value::Nil,
                1 => Value::Int(-1),
                2 => Value::Int(i64::MAX),
                3 => Value::Int(16384),
                4 => bulk(""),
                5 => Value::BulkString(vec![0xff, 0xfe]),
                6 => Value::SimpleString("99999".into()),
                7 => Value::Array(vec![]),
                8 => Value::Map(vec![]),
                9 => match value {
                    Value::Array(items) | Value::Set(items) => {
                        items.pop();
                        return true;
                    }
                    Value::Map(items) => {
                        items.pop();
                        return true;
                    }
                    _ => Value::Okay,
                },
                _ => Value::Attribute {
                    data: Box::new(value.clone()),
                    attributes: vec![],
                },
            };
            return true;
        }
        *target -= 1;
        match value {
            Value::Array(items) | Value::Set(items) => {
                items.iter_mut().any(|v| mutate_nth(v, target, op))
            }
            Value::Map(items) => items
                .iter_mut()
                .any(|(k, v)| mutate_nth(k, target, op) || mutate_nth(v, target, op)),
            _ => false,
        }
    }

    #[test]
    fn robust_structured_value_mutations() {
        let mut tally = Tally::default();
        for (name, bytes) in all_fixtures() {
            if !name.ends_with(".raw") {
                continue;
            }
            let original = redis::parse_redis_value(&bytes).unwrap();
            for op in 0..=10 {
                let mut index = 0;
                loop {
                    let mut value = original.clone();
                    let mut target = index;
                    if !mutate_nth(&mut value, &mut target, op) {
                        break;
                    }
                    exercise_value(&value, &mut tally);
                    index += 1;
                }
            }
        }
        assert!(tally.shards[0] > 0 && tally.shards[1] > 0, "{tally:?}");
    }

    #[test]
    fn robust_hostile_node_lines() {
        let huge = "9".repeat(500);
        let long_hostname = format!(
            "{ID_27101} 1.2.3.4:1@2,{} master - 0 0 1 connected",
            "h".repeat(100_000)
        );
        let many_ranges = format!(
            "{ID_27101} 1.2.3.4:1@2 master - 0 0 1 connected {}",
            "0-16383 ".repeat(1000)
        );
        let hostile = [
            String::new(),
            "-".into(),
            "[".into(),
            "[5->-".into(),
            "- - - - - - - -".into(),
            "a :@, , - 0 0 0 connected".into(),
            format!("{huge} {huge}:{huge}@{huge} {huge} {huge} {huge} {huge} {huge} {huge}"),
            format!("a 1.2.3.4:1@2 m - 0 0 1 connected {huge}-{huge}"),
            "a 1.2.3.4:1@2 m - 0 0 1 connected [-<-->-]".into(),
            "a 1.2.3.4:1@2 m - 0 0 1 connected [->-x]".into(),
            "a 1.2.3.4:1@2 m - 0 0 1 connected [5-<-]".into(),
            "a 1.2.3.4:1@2 m - 0 0 1 connected 100-5".into(),
            "a 1.2.3.4:1@2 m - 0 0 1 connected 16383-16384".into(),
            "a 1.2.3.4:1@2 m - 0 0 1 connected 5--6".into(),
            "a ::::@ m - 0 0 1 connected".into(),
            "a é:1@2,ü m - 0 0 1 connected 0-1".into(),
            "a 1.2.3.4:1@2 ,,,,fail?,, - 0 0 1 connected".into(),
            "\u{0}\u{1}\u{7f} \u{2028} \u{feff}".into(),
            long_hostname,
            many_ranges,
        ];
        for line in &hostile {
            for text in [
                line.clone(),
                format!("{line}\n{line}\n"),
                format!("\n{line}"),
            ] {
                if let Ok(nodes) = parse_cluster_nodes(&text) {
                    check_nodes(&nodes);
                }
                let _ = parse_cluster_info(&text);
            }
        }
        for reversed in ["100-5", "16383-0", "1-0"] {
            let text = format!("{ID_27101} 1.2.3.4:1@2 master - 0 0 1 connected {reversed}");
            assert!(parse_cluster_nodes(&text).is_err(), "{reversed}");
        }
        let text = format!("{ID_27101} 1.2.3.4:1@2 master - 0 0 1 connected 0-16383 0-16383");
        assert!(parse_cluster_nodes(&text).is_err());
    }

    #[test]
    fn slot_count_bounded_for_hand_built_values() {
        let mut node =
            parse_cluster_nodes(&format!("{ID_27101} 1.2.3.4:1@2 master - 0 0 1 connected"))
                .unwrap()
                .remove(0);
        node.slots = vec![
            (0, 16383),
            (0, 16383),
            (100, 5),
            (16000, u16::MAX),
            (u16::MAX, u16::MAX),
        ];
        assert_eq!(node.slot_count(), CLUSTER_SLOTS);
        let shard = Shard {
            id: None,
            slots: vec![(10, 20), (15, 25), (30, 29)],
            nodes: vec![],
        };
        assert_eq!(shard.slot_count(), 16);
    }

    // --- Test-only reader for `redis-cli --no-raw` RESP2 rendering ----------

    /// Rebuilds the `Value` that `redis-cli` rendered, e.g.
    /// `1) 1) "slots"` / `   2) 1) (integer) 5461`. Element markers of one
    /// array are right-aligned, so the column of their `)` identifies the
    /// array; a `1)` further right opens a nested one. Panics on anything it
    /// does not understand: it only reads trusted fixtures.
    fn cli_to_value(text: &str) -> Value {
        struct Frame {
            col: usize,
            items: Vec<Value>,
        }
        fn close(stack: &mut Vec<Frame>) {
            let frame = stack.pop().unwrap();
            let array = Value::Array(frame.items);
            stack.last_mut().expect("closed the root").items.push(array);
        }
        let mut stack: Vec<Frame> = Vec::new();
        for line in text.lines() {
            let mut col = 0;
            let mut rest = line;
            loop {
                let trimmed = rest.trim_start_matches(' ');
                col += rest.len() - trimmed.len();
                rest = trimmed;
                let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                if digits > 0 && rest[digits..].starts_with(')') {
                    let index: usize = rest[..digits].parse().unwrap();
                    let marker = col + digits;
                    let opens = stack.last().is_none_or(|top| marker > top.col);
                    if opens {
                        assert_eq!(index, 1, "nested array starts at 1: {line}");
                        stack.push(Frame {
                            col: marker,
                            items: Vec::new(),
                        });
                    } else {
                        while stack.last().unwrap().col > marker {
                            close(&mut stack);
                        }
                        let top = stack.last().unwrap();
                        assert_eq!(top.col, marker, "misaligned marker: {line}");
                        assert_eq!(top.items.len() + 1, index, "index order: {line}");
                    }
                    col += digits + 1;
                    rest = &rest[digits + 1..];
                    continue;
                }
                stack
                    .last_mut()
                    .expect("value inside an array")
                    .items
                    .push(cli_leaf(rest.trim_end()));
                break;
            }
        }
        while stack.len() > 1 {
            close(&mut stack);
        }
        Value::Array(stack.pop().expect("non-empty rendering").items)
    }

    fn cli_leaf(leaf: &str) -> Value {
        if let Some(n) = leaf.strip_prefix("(integer) ") {
            return Value::Int(n.parse().unwrap());
        }
        if leaf == "(empty array)" || leaf == "(empty list or set)" {
            return Value::Array(Vec::new());
        }
        if leaf == "(nil)" {
            return Value::Nil;
        }
        let inner = leaf
            .strip_prefix('"')
            .and_then(|l| l.strip_suffix('"'))
            .unwrap_or_else(|| panic!("unknown cli leaf {leaf:?}"));
        let mut out = Vec::new();
        let mut bytes = inner.bytes();
        while let Some(b) = bytes.next() {
            if b != b'\\' {
                out.push(b);
                continue;
            }
            match bytes.next().unwrap() {
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'x' => {
                    let hex = [bytes.next().unwrap(), bytes.next().unwrap()];
                    out.push(u8::from_str_radix(std::str::from_utf8(&hex).unwrap(), 16).unwrap());
                }
                other => out.push(other),
            }
        }
        Value::BulkString(out)
    }
}

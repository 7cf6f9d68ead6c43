//! Redis Sentinel as the exporter shows it (issue 19): what each watched
//! Sentinel said at its last poll, and what the exporter derives across
//! Sentinels per master name. Built by `collect::sentinel`, rendered here.

use crate::expose::catalogue::{Out, F};

/// The latest Sentinel state, shared with every scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SentinelSnapshot {
    /// Every watched Sentinel, in address order.
    pub sentinels: Vec<SentinelView>,
    /// Every watched master name, in name order.
    pub groups: Vec<GroupView>,
}

/// One Sentinel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SentinelView {
    /// The `sentinel` label: its host:port.
    pub addr: String,
    pub up: bool,
    /// From INFO; `None` while down.
    pub masters: Option<u64>,
    pub tilt: Option<bool>,
    pub running_scripts: Option<u64>,
    /// The watched masters this Sentinel monitors (empty while down).
    pub masters_seen: Vec<SentinelMasterView>,
}

/// One master as one Sentinel sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SentinelMasterView {
    pub name: String,
    /// host:port
    pub address: String,
    pub s_down: bool,
    pub o_down: bool,
    pub failover_in_progress: bool,
    pub slaves: u64,
    pub ok_slaves: u64,
    /// Itself included.
    pub sentinels: u64,
    pub quorum: u64,
    pub config_epoch: u64,
    /// The last SENTINEL CKQUORUM answer; `None` until one came.
    pub ckquorum: Option<bool>,
}

impl SentinelMasterView {
    /// `ok`, `sdown` or `odown`, as INFO's `status=` says it.
    pub fn status(&self) -> &'static str {
        if self.o_down {
            "odown"
        } else if self.s_down {
            "sdown"
        } else {
            "ok"
        }
    }
}

/// One master name across Sentinels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupView {
    pub name: String,
    /// Distinct master addresses reported by the Sentinels that answered.
    pub addresses: usize,
    /// Unix seconds of the last master address change the exporter saw.
    pub last_failover: Option<f64>,
    /// Watched Sentinels that monitor it and answered.
    pub sentinels_up: usize,
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Emits the Sentinel families.
pub fn render(out: &mut Out, s: &SentinelSnapshot) {
    for v in &s.sentinels {
        let base = [("sentinel", v.addr.as_str())];
        out.push(F::SentinelUp, &base, flag(v.up));
        if let Some(n) = v.masters {
            out.push(F::SentinelMasters, &base, n as f64);
        }
        if let Some(t) = v.tilt {
            out.push(F::SentinelTilt, &base, flag(t));
        }
        if let Some(n) = v.running_scripts {
            out.push(F::SentinelRunningScripts, &base, n as f64);
        }
        for m in &v.masters_seen {
            // `cluster` carries the master name as on the group's data
            // nodes, so dashboards and joins use one label; `master_name`
            // keeps the peer exporter's label.
            let labels = [
                ("sentinel", v.addr.as_str()),
                ("cluster", m.name.as_str()),
                ("master_name", m.name.as_str()),
            ];
            out.push(
                F::SentinelMasterStatus,
                &[
                    labels[0],
                    labels[1],
                    labels[2],
                    ("master_address", m.address.as_str()),
                    ("master_status", m.status()),
                ],
                1.0,
            );
            out.push(F::SentinelMasterSlaves, &labels, m.slaves as f64);
            out.push(F::SentinelMasterOkSlaves, &labels, m.ok_slaves as f64);
            out.push(F::SentinelMasterSentinels, &labels, m.sentinels as f64);
            out.push(F::SentinelMasterQuorum, &labels, m.quorum as f64);
            if let Some(ok) = m.ckquorum {
                out.push(F::SentinelMasterCkquorum, &labels, flag(ok));
            }
            out.push(F::SentinelMasterSdown, &labels, flag(m.s_down));
            out.push(F::SentinelMasterOdown, &labels, flag(m.o_down));
            out.push(
                F::SentinelMasterFailoverInProgress,
                &labels,
                flag(m.failover_in_progress),
            );
            out.push(F::SentinelMasterConfigEpoch, &labels, m.config_epoch as f64);
        }
    }
    for g in &s.groups {
        let labels = [
            ("cluster", g.name.as_str()),
            ("master_name", g.name.as_str()),
        ];
        out.push(F::SentinelMasterAddresses, &labels, g.addresses as f64);
        out.push(F::SentinelMasterSentinelsUp, &labels, g.sentinels_up as f64);
        if let Some(t) = g.last_failover {
            out.push(F::SentinelMasterLastFailover, &labels, t);
        }
    }
}

//! The testbed's plan: every namespace, interface, address and route derived from a topology,
//! computed before anything is touched (pure, so it is unit-tested and saved in the state
//! file for `status`, `route`, the agent and `down`).
//!
//! Addressing (see docs/testbed.md):
//! - namespaces `<topo>-gw` (gateway/core), `<topo>-<host>`, `<topo>-<ue>`;
//! - root namespace `<topo>-m` (mgmt /30, first address) <-> gateway `mgmt` (second address);
//!   the root namespace routes host and UE addresses and the app subnet via the gateway;
//! - every host has its address on `lo`, an uplink `uplink` to the gateway (`up-<host>` there)
//!   and one interface `h-<peer>` per host-host link; a UE has its address on `lo` and one
//!   interface `c-<cell>` per cell, whose far end `ue<j>c<k>` is in the cell's host;
//! - each link is a /30 from `link_subnet`; delayed links pass through a delay element in
//!   the gateway namespace (`f<i>a` / `f<i>b`), so both ends still share one L2 segment.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ferry_topology::{Ipv4Cidr, Topology};
use serde::{Deserialize, Serialize};

/// Port of each `ferry host` API on its host address.
pub const HOST_API_PORT: u16 = 7100;
/// Port of the RAN API (MEC 012/013) on the root side of the management link.
pub const RAN_API_PORT: u16 = 7200;
/// Bridge name given to each `ferry host` (inside its own namespace, so it never collides).
pub const BRIDGE: &str = "ferrybr0";
/// Where `ferry host` state lives: `<STATE_ROOT>/<topo>/<host>`.
pub const STATE_ROOT: &str = "/var/lib/ferry/testbed";
/// Where the testbed's state file, logs and agent live: `<RUN_ROOT>/<topo>`.
pub const RUN_ROOT: &str = "/run/ferry/testbed";
/// Metric of the app routes the testbed installs, above the `ferry host` daemon's own
/// bridge routes (metric 0), so on the host that runs an instance the daemon's route wins.
pub const APP_ROUTE_METRIC: u32 = 100;

/// One end of a point-to-point link.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct End {
    pub netns: String,
    pub ifname: String,
    pub addr: Ipv4Addr,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// Host namespace <-> gateway namespace (unshaped).
    Uplink,
    /// Host <-> host, as the file says.
    HostHost,
    /// UE <-> the host serving a cell, shaped like the file's cell-host link.
    Cell,
}

/// A veth link between two namespaces (through a delay element when `forwarder` is set).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LinkPlan {
    /// Human label: `mec1-mec2`, `ue1@cell2`, `uplink mec1`.
    pub label: String,
    pub kind: LinkKind,
    pub a: End,
    pub b: End,
    /// Prefix length of both ends' addresses (30).
    pub prefix: u8,
    /// Mbit/s, None: unshaped.
    pub rate_mbit: Option<f64>,
    /// One-way delay in ms, None: none.
    pub delay_ms: Option<f64>,
    /// The two interfaces of the delay element in the gateway namespace (a side, b side),
    /// when the link has a delay.
    pub forwarder: Option<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HostPlan {
    pub name: String,
    pub netns: String,
    pub address: Ipv4Addr,
    /// `address:7100`.
    pub api: String,
    pub state_dir: String,
    pub bridge: String,
    /// The anycast gateway with the app subnet's prefix, e.g. `10.200.0.1/16`.
    pub gateway: String,
    /// Index into `links` of its uplink.
    pub uplink: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attachment {
    pub cell: String,
    pub host: String,
    /// Index into `links`; end `a` is the UE side.
    pub link: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UePlan {
    pub name: String,
    pub netns: String,
    pub address: Ipv4Addr,
    pub start_cell: String,
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub name: String,
    pub gw_netns: String,
    /// Root-namespace end of the management link (`<topo>-m`).
    pub mgmt_root: End,
    /// Gateway end of the management link.
    pub mgmt_gw: End,
    pub app_subnet: String,
    pub hosts: Vec<HostPlan>,
    pub ues: Vec<UePlan>,
    pub links: Vec<LinkPlan>,
    /// `ran address:port` (root side of the management link).
    pub ran_api: String,
    /// next_hop[from][to] = index of the host-host link `from` uses towards `to` (absent:
    /// no host-host path, go through the gateway).
    pub next_hop: BTreeMap<String, BTreeMap<String, usize>>,
}

/// The prefix of every name of testbed `name`.
pub fn prefix(name: &str) -> String {
    format!("{name}-")
}

pub fn run_dir(name: &str) -> String {
    format!("{RUN_ROOT}/{name}")
}

/// The testbed's own operator PKI (`ferry pki` layout): made at `up`, gone at `down`.
pub fn pki_dir(name: &str) -> String {
    format!("{}/pki", run_dir(name))
}

pub fn state_dir(name: &str) -> String {
    format!("{STATE_ROOT}/{name}")
}

struct Allocator {
    net: Ipv4Cidr,
    next: u32,
}

impl Allocator {
    fn pair(&mut self) -> (Ipv4Addr, Ipv4Addr) {
        let base = self.next * 4;
        self.next += 1;
        (self.net.nth(base + 1), self.net.nth(base + 2))
    }
}

impl Plan {
    /// Derives the plan. The topology has been validated (names fit, references exist).
    pub fn new(t: &Topology) -> Plan {
        let p = prefix(&t.name);
        let gw = format!("{p}gw");
        let app = t.app_cidr();
        let mgmt = t.mgmt_cidr();
        let mut alloc = Allocator {
            net: t.link_cidr(),
            next: 0,
        };
        let mut links = Vec::new();
        let mut hosts = Vec::new();
        for h in &t.hosts {
            let ns = format!("{p}{}", h.name);
            let (ga, ha) = alloc.pair();
            links.push(LinkPlan {
                label: format!("uplink {}", h.name),
                kind: LinkKind::Uplink,
                a: End {
                    netns: gw.clone(),
                    ifname: format!("up-{}", h.name),
                    addr: ga,
                },
                b: End {
                    netns: ns.clone(),
                    ifname: "uplink".into(),
                    addr: ha,
                },
                prefix: 30,
                rate_mbit: None,
                delay_ms: None,
                forwarder: None,
            });
            let address: Ipv4Addr = h.address.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
            hosts.push(HostPlan {
                name: h.name.clone(),
                netns: ns,
                address,
                api: format!("{address}:{HOST_API_PORT}"),
                state_dir: format!("{}/{}", state_dir(&t.name), h.name),
                bridge: BRIDGE.into(),
                gateway: format!("{}/{}", app.first_host(), app.prefix),
                uplink: links.len() - 1,
            });
        }
        let mut fwd = 0usize;
        let mut forwarder = |delay: Option<f64>| -> Option<(String, String)> {
            delay.filter(|d| *d > 0.0).map(|_| {
                fwd += 1;
                (format!("f{}a", fwd - 1), format!("f{}b", fwd - 1))
            })
        };
        let shaped = |r: Option<f64>| r.filter(|r| *r > 0.0);
        for l in &t.links {
            if t.host(&l.a).is_none() || t.host(&l.b).is_none() {
                continue; // cell links are built per UE below
            }
            let (aa, ba) = alloc.pair();
            links.push(LinkPlan {
                label: format!("{}-{}", l.a, l.b),
                kind: LinkKind::HostHost,
                a: End {
                    netns: format!("{p}{}", l.a),
                    ifname: format!("h-{}", l.b),
                    addr: aa,
                },
                b: End {
                    netns: format!("{p}{}", l.b),
                    ifname: format!("h-{}", l.a),
                    addr: ba,
                },
                prefix: 30,
                rate_mbit: shaped(l.rate_mbit),
                delay_ms: l.delay_ms.filter(|d| *d > 0.0),
                forwarder: forwarder(l.delay_ms),
            });
        }
        let mut ues = Vec::new();
        for (j, u) in t.ues.iter().enumerate() {
            let ns = format!("{p}{}", u.name);
            let mut attachments = Vec::new();
            for (k, c) in t.cells.iter().enumerate() {
                let cell_link = t.link(&c.name, &c.host);
                let (ua, ha) = alloc.pair();
                links.push(LinkPlan {
                    label: format!("{}@{}", u.name, c.name),
                    kind: LinkKind::Cell,
                    a: End {
                        netns: ns.clone(),
                        ifname: format!("c-{}", c.name),
                        addr: ua,
                    },
                    b: End {
                        netns: format!("{p}{}", c.host),
                        ifname: format!("ue{j}c{k}"),
                        addr: ha,
                    },
                    prefix: 30,
                    rate_mbit: cell_link.and_then(|l| shaped(l.rate_mbit)),
                    delay_ms: cell_link.and_then(|l| l.delay_ms).filter(|d| *d > 0.0),
                    forwarder: forwarder(cell_link.and_then(|l| l.delay_ms)),
                });
                attachments.push(Attachment {
                    cell: c.name.clone(),
                    host: c.host.clone(),
                    link: links.len() - 1,
                });
            }
            ues.push(UePlan {
                name: u.name.clone(),
                netns: ns,
                address: u.address.parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
                start_cell: u.cell.clone(),
                attachments,
            });
        }
        let next_hop = shortest_paths(&hosts, &links);
        let mgmt_root = End {
            netns: String::new(),
            ifname: format!("{p}m"),
            addr: mgmt.nth(1),
        };
        Plan {
            name: t.name.clone(),
            gw_netns: gw.clone(),
            ran_api: format!("{}:{RAN_API_PORT}", mgmt_root.addr),
            mgmt_root,
            mgmt_gw: End {
                netns: gw,
                ifname: "mgmt".into(),
                addr: mgmt.nth(2),
            },
            app_subnet: format!("{}/{}", app.network(), app.prefix),
            hosts,
            ues,
            links,
            next_hop,
        }
    }

    pub fn host(&self, name: &str) -> Option<&HostPlan> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn ue(&self, name: &str) -> Option<&UePlan> {
        self.ues.iter().find(|u| u.name == name)
    }

    /// Every namespace of the testbed (gateway first).
    pub fn namespaces(&self) -> Vec<String> {
        let mut v = vec![self.gw_netns.clone()];
        v.extend(self.hosts.iter().map(|h| h.netns.clone()));
        v.extend(self.ues.iter().map(|u| u.netns.clone()));
        v
    }

    /// How host `from` reaches host `to`: (local interface, next-hop address). Over the
    /// shortest host-host path by delay, or through the gateway when there is none.
    pub fn route_towards(&self, from: &str, to: &str) -> Option<(String, Ipv4Addr)> {
        let h = self.host(from)?;
        if let Some(&li) = self.next_hop.get(from).and_then(|m| m.get(to)) {
            let l = &self.links[li];
            return Some(if l.a.netns == h.netns {
                (l.a.ifname.clone(), l.b.addr)
            } else {
                (l.b.ifname.clone(), l.a.addr)
            });
        }
        let up = &self.links[h.uplink];
        Some((up.b.ifname.clone(), up.a.addr))
    }
}

/// Floyd-Warshall over the host-host links (weight: delay, plus a little per hop so equal
/// delays prefer fewer hops); returns, per (from, to), the first link to take.
fn shortest_paths(
    hosts: &[HostPlan],
    links: &[LinkPlan],
) -> BTreeMap<String, BTreeMap<String, usize>> {
    let n = hosts.len();
    let idx = |ns: &str| hosts.iter().position(|h| h.netns == ns);
    let mut dist = vec![vec![f64::INFINITY; n]; n];
    let mut first: Vec<Vec<Option<usize>>> = vec![vec![None; n]; n];
    for (i, d) in dist.iter_mut().enumerate() {
        d[i] = 0.0;
    }
    for (li, l) in links.iter().enumerate() {
        if l.kind != LinkKind::HostHost {
            continue;
        }
        let (Some(a), Some(b)) = (idx(&l.a.netns), idx(&l.b.netns)) else {
            continue;
        };
        let w = l.delay_ms.unwrap_or(0.0) + 0.001;
        if w < dist[a][b] {
            dist[a][b] = w;
            dist[b][a] = w;
            first[a][b] = Some(li);
            first[b][a] = Some(li);
        }
    }
    for k in 0..n {
        for i in 0..n {
            for j in 0..n {
                if dist[i][k] + dist[k][j] < dist[i][j] {
                    dist[i][j] = dist[i][k] + dist[k][j];
                    first[i][j] = first[i][k];
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    for i in 0..n {
        let mut m = BTreeMap::new();
        for j in 0..n {
            if let (true, Some(li)) = (i != j, first[i][j]) {
                m.insert(hosts[j].name.clone(), li);
            }
        }
        out.insert(hosts[i].name.clone(), m);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Plan {
        let text = include_str!("../../../examples/three-hosts.toml");
        Plan::new(&Topology::parse(text).unwrap())
    }

    #[test]
    fn names_are_prefixed_and_fit_interfaces() {
        let p = example();
        assert_eq!(
            p.namespaces(),
            [
                "three-gw",
                "three-mec1",
                "three-mec2",
                "three-mec3",
                "three-ue1"
            ]
        );
        assert_eq!(p.mgmt_root.ifname, "three-m");
        for l in &p.links {
            assert!(l.a.ifname.len() <= 15 && l.b.ifname.len() <= 15, "{l:?}");
        }
        assert_eq!(p.hosts[0].gateway, "10.200.0.1/16");
        assert_eq!(p.hosts[1].api, "10.100.0.12:7100");
        assert_eq!(p.ran_api, "10.199.0.1:7200");
    }

    #[test]
    fn addresses_are_distinct_and_delayed_links_get_forwarders() {
        let p = example();
        let mut seen = std::collections::HashSet::new();
        for l in &p.links {
            assert!(seen.insert(l.a.addr) && seen.insert(l.b.addr));
        }
        let l12 = p.links.iter().find(|l| l.label == "mec1-mec2").unwrap();
        assert_eq!((l12.rate_mbit, l12.delay_ms), (Some(1000.0), Some(5.0)));
        assert!(l12.forwarder.is_some());
        let cell = p.links.iter().find(|l| l.label == "ue1@cell2").unwrap();
        assert_eq!(cell.delay_ms, Some(1.0));
        assert_eq!(cell.b.netns, "three-mec2");
        let up = p.links.iter().find(|l| l.kind == LinkKind::Uplink).unwrap();
        assert!(up.forwarder.is_none());
    }

    #[test]
    fn routes_follow_the_shortest_delay_path() {
        let p = example();
        // mec1 -> mec3: direct link is 20 ms, via mec2 is 10 ms.
        let (dev, via) = p.route_towards("mec1", "mec3").unwrap();
        assert_eq!(dev, "h-mec2");
        let l12 = p.links.iter().find(|l| l.label == "mec1-mec2").unwrap();
        assert_eq!(via, l12.b.addr);
        let (dev, _) = p.route_towards("mec2", "mec3").unwrap();
        assert_eq!(dev, "h-mec3");
    }
}

//! Networking of one host: the host's bridge and each container's network namespace.
//!
//! Addressing (so that an app keeps its address on any host): every host's bridge carries the
//! same gateway address (an anycast gateway, e.g. `10.200.0.1`) as a /32, and each container
//! gets its own address as a /32 with a default route via the gateway. The host routes each of
//! its containers' /32s to the bridge. Nothing depends on which host a container runs on, so
//! moving a container only means removing its /32 on one host and adding it on the other.
//!
//! Uses iproute2 and iptables (what an operator would type, and what CRIU itself uses).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;

use crate::command::{self, CommandError};

/// Path of a named network namespace (as `ip netns` makes them).
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

pub fn netns_exists(name: &str) -> bool {
    netns_path(name).exists()
}

/// Asks the kernel, not /sys/class/net: /sys shows the namespace it was mounted in, which is
/// not the daemon's when it runs in its own network namespace.
fn link_exists(name: &str) -> bool {
    command::run("ip", ["link", "show", "dev", name]).is_ok()
}

/// Creates the bridge with the gateway address if missing, and turns on forwarding in the
/// daemon's network namespace (the host routes its containers' traffic, like any container host).
pub fn ensure_bridge(bridge: &str, gateway: Ipv4Net) -> Result<(), CommandError> {
    if !link_exists(bridge) {
        command::run("ip", ["link", "add", bridge, "type", "bridge"])?;
    }
    let gw = format!("{}/32", gateway.addr());
    let addrs = command::run("ip", ["-4", "-o", "addr", "show", "dev", bridge])?;
    if !addrs.contains(&format!("inet {gw}")) {
        command::run("ip", ["addr", "add", &gw, "dev", bridge])?;
    }
    command::run("ip", ["link", "set", bridge, "up"])?;
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|e| CommandError {
        command: "enable net.ipv4.ip_forward".into(),
        status: "failed".into(),
        stderr: e.to_string(),
    })?;
    guard_host(bridge)
}

/// Apps reach the network through the gateway (forwarded), never the host itself: in the
/// host's namespace, connections that start on the bridge are dropped, whatever listens
/// there (the host API, CRIU's page servers, an operator's sshd), over IPv4 and IPv6.
/// Replies to connections the host opened pass. Idempotent: the chain of ferry's own per
/// bridge is declared and filled in one `iptables-restore` transaction, so a restarted daemon
/// never leaves the host without its rules, not even for a moment (a flush and refill in
/// separate commands lets conntrack drop out of the namespace in between, and it then takes
/// the replies of connections restored by CRIU for invalid).
pub fn guard_host(bridge: &str) -> Result<(), CommandError> {
    let chain = format!("FERRY-IN-{bridge}");
    let rules = format!(
        "*filter\n:{chain} - [0:0]\n\
         -A {chain} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n\
         -A {chain} -j DROP\n\
         COMMIT\n"
    );
    for (tool, restore) in [
        ("iptables", "iptables-restore"),
        ("ip6tables", "ip6tables-restore"),
    ] {
        command::run_with_input(restore, &["-w", "--noflush"], &rules)?;
        if command::run(tool, ["-w", "-C", "INPUT", "-i", bridge, "-j", &chain]).is_err() {
            command::run(tool, ["-w", "-I", "INPUT", "-i", bridge, "-j", &chain])?;
        }
    }
    Ok(())
}

/// Creates a named network namespace with loopback up (idempotent).
pub fn create_netns(name: &str) -> Result<(), CommandError> {
    if !netns_exists(name) {
        command::run("ip", ["netns", "add", name])?;
    }
    command::run("ip", ["-n", name, "link", "set", "lo", "up"])?;
    Ok(())
}

/// Wires a namespace to the bridge: a veth pair, `eth0` inside with `addr/32` and a default
/// route via the gateway, and a host route for `addr` to the bridge. Idempotent.
pub fn attach(
    netns: &str,
    veth: &str,
    bridge: &str,
    addr: Ipv4Addr,
    gateway: Ipv4Net,
) -> Result<(), CommandError> {
    let inside_exists = command::run("ip", ["-n", netns, "link", "show", "eth0"]).is_ok();
    if !inside_exists {
        let peer = format!("{veth}p");
        if link_exists(veth) {
            command::run("ip", ["link", "del", veth])?;
        }
        command::run(
            "ip",
            ["link", "add", veth, "type", "veth", "peer", "name", &peer],
        )?;
        command::run("ip", ["link", "set", &peer, "netns", netns])?;
        command::run("ip", ["-n", netns, "link", "set", &peer, "name", "eth0"])?;
        let a = format!("{addr}/32");
        command::run("ip", ["-n", netns, "addr", "add", &a, "dev", "eth0"])?;
        command::run("ip", ["-n", netns, "link", "set", "eth0", "up"])?;
        let gw = gateway.addr().to_string();
        command::run(
            "ip",
            [
                "-n", netns, "route", "add", &gw, "dev", "eth0", "scope", "link",
            ],
        )?;
        command::run(
            "ip",
            [
                "-n", netns, "route", "add", "default", "via", &gw, "dev", "eth0",
            ],
        )?;
    }
    command::run("ip", ["link", "set", veth, "master", bridge, "up"])?;
    route_to_bridge(addr, bridge)
}

/// Routes `addr/32` to the bridge (replace: idempotent).
pub fn route_to_bridge(addr: Ipv4Addr, bridge: &str) -> Result<(), CommandError> {
    let a = format!("{addr}/32");
    command::run("ip", ["route", "replace", &a, "dev", bridge])?;
    Ok(())
}

/// Parks an app: its host route gone, then the host side of its veth down, so no packet
/// reaches it. One `ip` process for both (it is on the frozen path of a migration); the route
/// may be gone already.
pub fn park(addr: Ipv4Addr, veth: &str, bridge: &str) -> Result<(), CommandError> {
    let script = format!("route del {addr}/32 dev {bridge}\nlink set {veth} down\n");
    match command::run_with_input("ip", &["-force", "-batch", "-"], &script) {
        Ok(_) => Ok(()),
        // `-force` went on past a missing route; the link must have gone down.
        Err(e) if link_is_down(veth) => {
            tracing::debug!("park: {e}");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Unparks an app parked by [`park`]: the host side of its veth up and its host route back,
/// in one `ip` process (the commit of a migration waits for it).
pub fn unpark(addr: Ipv4Addr, veth: &str, bridge: &str) -> Result<(), CommandError> {
    let script =
        format!("link set {veth} master {bridge} up\nroute replace {addr}/32 dev {bridge}\n");
    command::run_with_input("ip", &["-batch", "-"], &script).map(|_| ())
}

fn link_is_down(name: &str) -> bool {
    std::fs::read_to_string(format!("/sys/class/net/{name}/operstate"))
        .is_ok_and(|s| s.trim() == "down")
}

/// Removes this host's route for `addr` to the bridge (no error if it is gone already). Only
/// that route: a data plane may hold other routes for the same address (e.g. via a peer).
pub fn unroute(addr: Ipv4Addr, bridge: &str) {
    let a = format!("{addr}/32");
    let _ = command::run("ip", ["route", "del", &a, "dev", bridge]);
}

/// Deletes a named namespace (its veth pair goes with it). No error if it is gone already.
pub fn delete_netns(name: &str, veth: Option<&str>) -> Result<(), CommandError> {
    if netns_exists(name) {
        command::run("ip", ["netns", "del", name])?;
    }
    if let Some(v) = veth {
        if link_exists(v) {
            command::run("ip", ["link", "del", v])?;
        }
    }
    Ok(())
}

/// Removes the network lock CRIU leaves behind in a namespace: after a dump (it keeps the
/// source's traffic blocked, meant for migration) and after a failed restore. Without this a
/// container restored into the same namespace stays cut off.
pub fn remove_criu_network_lock(netns: &str) {
    for tool in ["iptables", "ip6tables"] {
        let Ok(rules) = command::run("ip", ["netns", "exec", netns, tool, "-S"]) else {
            continue;
        };
        if !rules.contains("CRIU") {
            continue;
        }
        for chain in ["INPUT", "OUTPUT"] {
            let _ = command::run(
                "ip",
                ["netns", "exec", netns, tool, "-D", chain, "-j", "CRIU"],
            );
        }
        let _ = command::run("ip", ["netns", "exec", netns, tool, "-F", "CRIU"]);
        let _ = command::run("ip", ["netns", "exec", netns, tool, "-X", "CRIU"]);
    }
    // CRIU's nftables mode uses its own table.
    if let Ok(tables) = command::run("ip", ["netns", "exec", netns, "nft", "list", "tables"]) {
        for line in tables.lines().filter(|l| l.contains("CRIU")) {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let [_, family, name] = words[..] {
                let _ = command::run(
                    "ip",
                    [
                        "netns", "exec", netns, "nft", "delete", "table", family, name,
                    ],
                );
            }
        }
    }
}

/// Whether a namespace still carries a CRIU network lock (used by tests and `doctor`).
pub fn has_criu_network_lock(netns: &str) -> bool {
    command::run("ip", ["netns", "exec", netns, "iptables", "-S"])
        .map(|r| r.contains("CRIU"))
        .unwrap_or(false)
}

/// Closes this namespace's TCP connections to `addr` (`IP:PORT`) with `ss -K` (sock_diag
/// destroy): the program blocked on them gets an error instead of waiting out TCP's
/// retransmissions (15 minutes by default) when the peer vanished.
pub fn close_connections_to(addr: &str) {
    let Some((ip, port)) = addr.rsplit_once(':') else {
        return;
    };
    let filter = format!("dst {ip} and dport = {port}");
    match crate::command::run("ss", ["-K", "-t", "-n", filter.as_str()]) {
        Ok(_) => tracing::warn!(%addr, "closed stuck connections"),
        Err(e) => {
            tracing::error!(%addr, error = %e, "could not close stuck connections (kernel without CONFIG_INET_DIAG_DESTROY?)")
        }
    }
}

//! Builds a plan's network: namespaces, veth links (through delay elements where a link has a
//! delay), addresses, tbf shaping, and the static routes between hosts, UEs, the gateway and
//! the root namespace. Uses iproute2 and ethtool; every call is a plain command that fails
//! with its stderr.

use crate::command::{exec_in, ip_in, run, sysctl_in, CommandError};
use crate::error::TestbedError;
use crate::plan::{End, LinkPlan, Plan};
use crate::routing;
use crate::state::DelayMode;

/// Refuses to start over a testbed with the same name or over addresses another testbed
/// (or anything else) already uses in the root namespace.
pub fn precheck(plan: &Plan) -> Result<(), TestbedError> {
    let prefix = crate::plan::prefix(&plan.name);
    if crate::down::our_netns(&prefix).next().is_some() || link_exists_root(&plan.mgmt_root.ifname)
    {
        return Err(TestbedError::AlreadyUp(plan.name.clone()));
    }
    let addrs = run("ip", ["-4", "-o", "addr", "show"])?;
    if addrs.contains(&format!(" {}/", plan.mgmt_root.addr)) {
        return Err(TestbedError::Conflict(format!(
            "{} (mgmt_subnet) is already used in the root namespace, probably by another testbed; set another mgmt_subnet",
            plan.mgmt_root.addr
        )));
    }
    let mut dsts: Vec<String> = plan
        .hosts
        .iter()
        .map(|h| format!("{}/32", h.address))
        .collect();
    dsts.extend(plan.ues.iter().map(|u| format!("{}/32", u.address)));
    dsts.push(plan.app_subnet.clone());
    for dst in dsts {
        let out = run("ip", ["-4", "route", "show", "exact", dst.as_str()])?;
        if !out.trim().is_empty() {
            return Err(TestbedError::Conflict(format!(
                "the root namespace already routes {dst} ({}); another testbed may use the same addresses: change them in the topology",
                out.trim()
            )));
        }
    }
    Ok(())
}

fn link_exists_root(ifname: &str) -> bool {
    run("ip", ["link", "show", "dev", ifname]).is_ok()
}

/// Asks the kernel whether netem exists, on a throwaway dummy interface in the gateway
/// namespace (never assume: this kernel has none).
pub fn detect_delay_mode(gw_netns: &str) -> DelayMode {
    let probe = "netemprobe";
    if ip_in(gw_netns, &["link", "add", probe, "type", "dummy"]).is_err() {
        return DelayMode::Forwarder;
    }
    let ok = run(
        "tc",
        [
            "-n", gw_netns, "qdisc", "add", "dev", probe, "root", "netem", "delay", "1ms",
        ],
    )
    .is_ok();
    let _ = ip_in(gw_netns, &["link", "del", probe]);
    if ok {
        DelayMode::Netem
    } else {
        DelayMode::Forwarder
    }
}

/// Creates one namespace with loopback up, forwarding on, reverse-path filtering off (UE
/// traffic enters hosts on other interfaces than the reply leaves by) and IPv6 off (no
/// neighbour-discovery chatter through the delay elements).
fn add_netns(ns: &str) -> Result<(), TestbedError> {
    run("ip", ["netns", "add", ns])?;
    ip_in(ns, &["link", "set", "dev", "lo", "up"])?;
    for s in [
        "net.ipv4.ip_forward=1",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
    ] {
        sysctl_in(ns, s)?;
    }
    Ok(())
}

/// Creates the testbed's namespaces.
pub fn build_namespaces(plan: &Plan) -> Result<(), TestbedError> {
    for ns in plan.namespaces() {
        add_netns(&ns)?;
    }
    Ok(())
}

/// Builds links, addresses and routes in the namespaces. The caller tears down on error.
pub fn build(plan: &Plan, mode: DelayMode) -> Result<(), TestbedError> {
    // Management link root <-> gateway.
    let (r, g) = (&plan.mgmt_root, &plan.mgmt_gw);
    run(
        "ip",
        [
            "link", "add", "name", &r.ifname, "type", "veth", "peer", "name", &g.ifname, "netns",
            &g.netns,
        ],
    )?;
    run(
        "ip",
        ["addr", "add", &format!("{}/30", r.addr), "dev", &r.ifname],
    )?;
    run("ip", ["link", "set", "dev", &r.ifname, "up"])?;
    ip_in(
        &g.netns,
        &["addr", "add", &format!("{}/30", g.addr), "dev", &g.ifname],
    )?;
    ip_in(&g.netns, &["link", "set", "dev", &g.ifname, "up"])?;

    for link in &plan.links {
        add_link(plan, link, mode)?;
    }
    for h in &plan.hosts {
        ip_in(
            &h.netns,
            &["addr", "add", &format!("{}/32", h.address), "dev", "lo"],
        )?;
    }
    for u in &plan.ues {
        ip_in(
            &u.netns,
            &["addr", "add", &format!("{}/32", u.address), "dev", "lo"],
        )?;
    }
    routing::install_static(plan)?;
    for u in &plan.ues {
        routing::attach_ue(plan, &u.name, &u.start_cell)?;
    }
    Ok(())
}

fn add_link(plan: &Plan, l: &LinkPlan, mode: DelayMode) -> Result<(), TestbedError> {
    match (&l.forwarder, mode) {
        (Some((fa, fb)), DelayMode::Forwarder) => {
            let gw = &plan.gw_netns;
            ip_in(
                &l.a.netns,
                &[
                    "link",
                    "add",
                    "name",
                    &l.a.ifname,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    fa,
                    "netns",
                    gw,
                ],
            )?;
            ip_in(
                &l.b.netns,
                &[
                    "link",
                    "add",
                    "name",
                    &l.b.ifname,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    fb,
                    "netns",
                    gw,
                ],
            )?;
            for (ns, ifname) in [
                (&l.a.netns, &l.a.ifname),
                (&l.b.netns, &l.b.ifname),
                (gw, fa),
                (gw, fb),
            ] {
                offloads_off(ns, ifname)?;
                ip_in(ns, &["link", "set", "dev", ifname, "up"])?;
            }
        }
        _ => {
            ip_in(
                &l.a.netns,
                &[
                    "link",
                    "add",
                    "name",
                    &l.a.ifname,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &l.b.ifname,
                    "netns",
                    &l.b.netns,
                ],
            )?;
            for e in [&l.a, &l.b] {
                ip_in(&e.netns, &["link", "set", "dev", &e.ifname, "up"])?;
            }
        }
    }
    for e in [&l.a, &l.b] {
        ip_in(
            &e.netns,
            &[
                "addr",
                "add",
                &format!("{}/{}", e.addr, l.prefix),
                "dev",
                &e.ifname,
            ],
        )?;
        shape(e, l, mode)?;
    }
    Ok(())
}

/// A raw-socket forwarder must see frames as they go on the wire: no TSO/GSO super-frames,
/// no partial checksums, no GRO merging.
fn offloads_off(ns: &str, ifname: &str) -> Result<(), TestbedError> {
    match exec_in(ns, "ethtool", &["-K", ifname, "tx", "off", "sg", "off", "tso", "off", "gso", "off", "gro", "off"]) {
        Ok(_) => Ok(()),
        Err(CommandError { status, stderr, .. }) if status == "not started" => Err(TestbedError::Invalid(format!(
            "ethtool is needed to turn off veth offloads for the delay elements ({stderr}); install it: apt-get install ethtool"
        ))),
        // ethtool exits non-zero when some feature is fixed; check what matters.
        Err(e) => {
            let now = exec_in(ns, "ethtool", &["-k", ifname])?;
            if now.lines().any(|l| l.starts_with("tcp-segmentation-offload: on") || l.starts_with("tx-checksumming: on")) {
                return Err(e.into());
            }
            Ok(())
        }
    }
}

/// tbf bucket and queue sizes for a rate and a one-way delay. The bucket holds 2 ms at the
/// rate (at least two full frames) so the kernel's timer granularity does not cost rate; the
/// queue holds the link's bandwidth-delay product plus 10 ms, so one TCP flow fills the link
/// without drops while the queue stays short.
pub fn tbf_params(rate_mbit: f64, delay_ms: f64) -> (u64, u64) {
    let bytes_per_s = rate_mbit * 125_000.0;
    let burst = ((bytes_per_s * 0.002) as u64).max(3028);
    let limit = ((bytes_per_s * (2.0 * delay_ms + 10.0) / 1000.0) as u64).max(2 * burst);
    (burst, limit)
}

/// Shapes one end's egress: tbf for the rate, and netem for the delay where the kernel has
/// it (the forwarder adds the delay otherwise).
fn shape(e: &End, l: &LinkPlan, mode: DelayMode) -> Result<(), TestbedError> {
    let ns = e.netns.as_str();
    let dev = e.ifname.as_str();
    let delay = l.delay_ms.unwrap_or(0.0);
    let netem = mode == DelayMode::Netem && delay > 0.0;
    let mut parent = vec!["root".to_string()];
    if netem {
        let d = format!("{delay}ms");
        let limit = "100000";
        run(
            "tc",
            [
                "-n", ns, "qdisc", "add", "dev", dev, "root", "handle", "1:", "netem", "delay", &d,
                "limit", limit,
            ],
        )?;
        parent = vec!["parent".into(), "1:1".into()];
    }
    if let Some(rate) = l.rate_mbit {
        let (burst, limit) = tbf_params(rate, delay);
        let mut args: Vec<String> = vec![
            "-n".into(),
            ns.into(),
            "qdisc".into(),
            "add".into(),
            "dev".into(),
            dev.into(),
        ];
        args.extend(parent);
        args.extend(
            [
                "tbf",
                "rate",
                &format!("{rate}mbit"),
                "burst",
                &burst.to_string(),
                "limit",
                &limit.to_string(),
            ]
            .map(String::from),
        );
        run("tc", &args)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::tbf_params;

    #[test]
    fn tbf_sizes_follow_rate_and_delay() {
        // 1 Gbit/s: 2 ms bucket = 250 kB; queue = BDP of 2 x 5 ms + 10 ms = 2.5 MB.
        assert_eq!(tbf_params(1000.0, 5.0), (250_000, 2_500_000));
        // Slow links keep at least two full frames in the bucket.
        assert_eq!(tbf_params(1.0, 0.0).0, 3028);
        let (burst, limit) = tbf_params(100.0, 20.0);
        assert_eq!(burst, 25_000);
        assert_eq!(limit, 625_000);
    }
}

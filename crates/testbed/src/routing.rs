//! The testbed's data plane: static routes between hosts, the gateway and the root
//! namespace; re-wiring a UE to a new serving cell; and steering an app instance's address
//! to the host that runs it. Each re-wire or route switch is one call.
//!
//! Paths: a UE sends everything to the host serving its cell. A host delivers an app
//! address it runs to its bridge (the `ferry host` daemon's route), and sends any other app
//! address along the shortest host-host path towards the host that runs it; so the UE's
//! latency depends on where its app runs. The gateway namespace routes each app address and
//! UE address to the right host too, for traffic from the root namespace (CLI, control plane).

use std::net::Ipv4Addr;

use crate::command::{ip_in, run};
use crate::error::TestbedError;
use crate::plan::{Plan, APP_ROUTE_METRIC};
use crate::state;

/// Routes that do not change while the testbed runs.
pub fn install_static(plan: &Plan) -> Result<(), TestbedError> {
    let gw = &plan.gw_netns;
    for h in &plan.hosts {
        let up = &plan.links[h.uplink];
        let me = h.address.to_string();
        // The gateway reaches each host over its uplink.
        ip_in(
            gw,
            &[
                "route",
                "replace",
                &format!("{me}/32"),
                "via",
                &up.b.addr.to_string(),
                "dev",
                &up.a.ifname,
            ],
        )?;
        // Everything a host does not know goes to the gateway (root namespace, unknown apps).
        ip_in(
            &h.netns,
            &[
                "route",
                "replace",
                "default",
                "via",
                &up.a.addr.to_string(),
                "dev",
                &up.b.ifname,
                "src",
                &me,
            ],
        )?;
        // Other hosts over the host-host links, from the host's own address: migration traffic
        // crosses the shaped links.
        for other in &plan.hosts {
            if other.name == h.name {
                continue;
            }
            if let Some((dev, via)) = plan.route_towards(&h.name, &other.name) {
                let dst = format!("{}/32", other.address);
                ip_in(
                    &h.netns,
                    &[
                        "route",
                        "replace",
                        &dst,
                        "via",
                        &via.to_string(),
                        "dev",
                        &dev,
                        "src",
                        &me,
                    ],
                )?;
            }
        }
    }
    // The root namespace reaches hosts, UEs and apps through the gateway.
    let via = plan.mgmt_gw.addr.to_string();
    let dev = plan.mgmt_root.ifname.as_str();
    let mut dsts: Vec<String> = plan
        .hosts
        .iter()
        .map(|h| format!("{}/32", h.address))
        .collect();
    dsts.extend(plan.ues.iter().map(|u| format!("{}/32", u.address)));
    dsts.push(plan.app_subnet.clone());
    for dst in dsts {
        run(
            "ip",
            [
                "route",
                "replace",
                dst.as_str(),
                "via",
                via.as_str(),
                "dev",
                dev,
            ],
        )?;
    }
    Ok(())
}

/// Re-wires UE `ue` to `cell`: the UE sends through that cell's link, and every host and the
/// gateway route the UE's address towards the cell's host. The handover hook of the agent.
pub fn attach_ue(plan: &Plan, ue: &str, cell: &str) -> Result<(), TestbedError> {
    let u = plan.ue(ue).ok_or_else(|| {
        TestbedError::Invalid(format!("unknown UE '{ue}' in testbed '{}'", plan.name))
    })?;
    let att = u
        .attachments
        .iter()
        .find(|a| a.cell == cell)
        .ok_or_else(|| {
            TestbedError::Invalid(format!("unknown cell '{cell}' in testbed '{}'", plan.name))
        })?;
    let l = &plan.links[att.link];
    let ue_addr = u.address.to_string();
    let dst = format!("{ue_addr}/32");
    ip_in(
        &u.netns,
        &[
            "route",
            "replace",
            "default",
            "via",
            &l.b.addr.to_string(),
            "dev",
            &l.a.ifname,
            "src",
            &ue_addr,
        ],
    )?;
    for h in &plan.hosts {
        if h.name == att.host {
            ip_in(
                &h.netns,
                &[
                    "route",
                    "replace",
                    &dst,
                    "via",
                    &l.a.addr.to_string(),
                    "dev",
                    &l.b.ifname,
                ],
            )?;
        } else if let Some((dev, via)) = plan.route_towards(&h.name, &att.host) {
            ip_in(
                &h.netns,
                &[
                    "route",
                    "replace",
                    &dst,
                    "via",
                    &via.to_string(),
                    "dev",
                    &dev,
                ],
            )?;
        }
    }
    let serving = plan.host(&att.host).map(|h| &plan.links[h.uplink]);
    if let Some(up) = serving {
        ip_in(
            &plan.gw_netns,
            &[
                "route",
                "replace",
                &dst,
                "via",
                &up.b.addr.to_string(),
                "dev",
                &up.a.ifname,
            ],
        )?;
    }
    state::set_ue_cell(&plan.name, ue, cell)?;
    tracing::info!(ue, cell, host = %att.host, "UE re-wired");
    Ok(())
}

/// Steers app instance address `app` to `host`: the gateway and every other host route it
/// towards `host`; on `host` itself the testbed's route is removed so the `ferry host`
/// daemon's bridge route (or the host's own address) serves it.
pub fn route_app(plan: &Plan, app: Ipv4Addr, host: &str) -> Result<(), TestbedError> {
    let subnet =
        ferry_topology::Ipv4Cidr::parse(&plan.app_subnet).map_err(TestbedError::Invalid)?;
    if !subnet.contains(app) {
        return Err(TestbedError::Invalid(format!(
            "{app} is not in the app subnet {}; app instances get addresses from it",
            plan.app_subnet
        )));
    }
    let target = plan.host(host).ok_or_else(|| {
        let names: Vec<&str> = plan.hosts.iter().map(|h| h.name.as_str()).collect();
        TestbedError::Invalid(format!(
            "unknown host '{host}' (hosts: {})",
            names.join(", ")
        ))
    })?;
    let dst = format!("{app}/32");
    let metric = APP_ROUTE_METRIC.to_string();
    let up = &plan.links[target.uplink];
    ip_in(
        &plan.gw_netns,
        &[
            "route",
            "replace",
            &dst,
            "via",
            &up.b.addr.to_string(),
            "dev",
            &up.a.ifname,
        ],
    )?;
    for h in &plan.hosts {
        if h.name == target.name {
            // Absent already is fine: the route may never have pointed elsewhere.
            let _ = ip_in(&h.netns, &["route", "del", &dst, "metric", &metric]);
        } else if let Some((dev, via)) = plan.route_towards(&h.name, &target.name) {
            ip_in(
                &h.netns,
                &[
                    "route",
                    "replace",
                    &dst,
                    "via",
                    &via.to_string(),
                    "dev",
                    &dev,
                    "metric",
                    &metric,
                ],
            )?;
        }
    }
    state::set_app_route(&plan.name, &app.to_string(), host)?;
    tracing::info!(%app, host, "app route switched");
    Ok(())
}

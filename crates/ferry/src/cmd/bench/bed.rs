//! The benchmark's testbed: two MEC hosts joined by one shaped link (the profile under
//! test), plus a client namespace of the benchmark's own behind the gateway, so the client's
//! path to the app is the same unshaped uplink whichever host runs it: the measured gap is
//! the migration and the route switch, not a change of path. Everything is removed by
//! [`Bed`]'s drop, and by the Ctrl-C handler ([`cleanup_on_signal`]).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::Context;
use ferry_testbed::topology::Topology;
use ferry_testbed::{down, up, Plan};

/// A link profile between the two hosts.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Profile {
    pub name: &'static str,
    pub rate_mbit: f64,
    pub delay_ms: f64,
}

pub const PROFILES: &[Profile] = &[
    Profile {
        name: "1gbit-5ms",
        rate_mbit: 1000.0,
        delay_ms: 5.0,
    },
    Profile {
        name: "100mbit-20ms",
        rate_mbit: 100.0,
        delay_ms: 20.0,
    },
];

/// Addresses; chosen away from the shipped examples so a testbed of theirs may run too.
pub const HOST1: &str = "10.186.0.11";
pub const HOST2: &str = "10.186.0.12";
pub const APP_SUBNET: &str = "10.187.0.0/16";
/// The app's address for ferry runs, and for the podman baseline (a separate address so a
/// leftover of one never answers for the other).
pub const APP_FERRY: Ipv4Addr = Ipv4Addr::new(10, 187, 0, 10);
pub const APP_PODMAN: Ipv4Addr = Ipv4Addr::new(10, 187, 0, 20);
pub const APP_PORT: u16 = 8080;
/// Client <-> gateway /30.
const CLIENT_GW: &str = "10.185.0.1";
const CLIENT: &str = "10.185.0.2";

/// Resources to remove if the user interrupts the benchmark: (key, cleanup).
type Cleanup = Box<dyn Fn() + Send>;
static ON_SIGNAL: Mutex<Vec<(String, Cleanup)>> = Mutex::new(Vec::new());

/// Set by the signal handler: work in progress stops creating things while it cleans up.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Registers a cleanup to run on Ctrl-C / SIGTERM (removed again with [`forget_cleanup`]).
pub fn on_signal(key: &str, f: impl Fn() + Send + 'static) {
    if let Ok(mut v) = ON_SIGNAL.lock() {
        v.push((key.to_string(), Box::new(f)));
    }
}

pub fn forget_cleanup(key: &str) {
    if let Ok(mut v) = ON_SIGNAL.lock() {
        v.retain(|(k, _)| k != key);
    }
}

/// Installs the Ctrl-C / SIGTERM handler: undo what is registered (newest first), exit 130.
pub fn cleanup_on_signal() {
    let _ = ctrlc::set_handler(|| {
        INTERRUPTED.store(true, Ordering::SeqCst);
        eprintln!("\ninterrupted: cleaning up");
        if let Ok(mut v) = ON_SIGNAL.lock() {
            while let Some((_, f)) = v.pop() {
                f();
            }
        }
        std::process::exit(130);
    });
}

/// The topology file of a profile.
pub fn topology_text(name: &str, p: &Profile) -> String {
    format!(
        "# written by `ferry bench migrate` (profile {})\n\
         name = \"{name}\"\n\
         app_subnet = \"{APP_SUBNET}\"\n\
         link_subnet = \"10.188.0.0/16\"\n\
         mgmt_subnet = \"10.199.87.0/30\"\n\n\
         [[hosts]]\nname = \"h1\"\naddress = \"{HOST1}\"\n\n\
         [[hosts]]\nname = \"h2\"\naddress = \"{HOST2}\"\n\n\
         [[links]]\na = \"h1\"\nb = \"h2\"\nrate_mbit = {:.1}\ndelay_ms = {:.1}\n",
        p.name, p.rate_mbit, p.delay_ms
    )
}

/// A testbed that is up; dropping it takes it down.
pub struct Bed {
    pub name: String,
    pub plan: Plan,
    pub delay_mode: String,
    pub client_ns: String,
}

impl Bed {
    /// Brings up the benchmark's testbed; `host_args` go to every `ferry host`.
    pub fn up(name: &str, profile: &Profile, host_args: Vec<String>) -> anyhow::Result<Bed> {
        let text = topology_text(name, profile);
        // The file is written (the testbed keeps a copy too) so a user can rerun it by hand.
        let file = std::env::temp_dir().join(format!("{name}.toml"));
        std::fs::write(&file, &text).with_context(|| format!("writing {}", file.display()))?;
        let topo = Topology::parse(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let owned = name.to_string();
        on_signal(name, move || {
            let _ = down::down(&owned);
        });
        let opts = up::UpOptions {
            ferry_bin: std::env::current_exe()?,
            start_hosts: true,
            host_args,
        };
        let state = match up::up(&topo, &text, &opts) {
            Ok(s) => s,
            Err(e) => {
                forget_cleanup(name);
                return Err(e).context(format!("testbed up ({})", file.display()));
            }
        };
        let bed = Bed {
            name: name.to_string(),
            delay_mode: format!("{:?}", state.delay_mode).to_lowercase(),
            client_ns: format!("{}client", ferry_testbed::plan::prefix(name)),
            plan: state.plan,
        };
        // From here on, drop takes it down.
        bed.add_client()?;
        Ok(bed)
    }

    /// The client's namespace, a veth pair to the gateway and a default route through it. Its
    /// name carries the testbed prefix, so `down` removes it too.
    fn add_client(&self) -> anyhow::Result<()> {
        let ns = &self.client_ns;
        let gw = &self.plan.gw_netns;
        let ip = |args: &[&str]| -> anyhow::Result<()> {
            ferry_testbed::command::run("ip", args.iter().copied())
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!("{e}"))
        };
        ip(&["netns", "add", ns])?;
        ip(&[
            "-n", gw, "link", "add", "bclient", "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        ip(&[
            "-n",
            gw,
            "addr",
            "add",
            &format!("{CLIENT_GW}/30"),
            "dev",
            "bclient",
        ])?;
        ip(&["-n", gw, "link", "set", "bclient", "up"])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{CLIENT}/30"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "route", "add", "default", "via", CLIENT_GW])?;
        // A fresh connection every 5 ms: reuse TIME_WAIT ports rather than run out of them.
        ferry_testbed::command::sysctl_in(ns, "net.ipv4.tcp_tw_reuse=1")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }

    /// A host's API: the testbed's hosts serve mutual TLS only.
    pub fn api(&self, host: usize) -> String {
        format!("https://{}:7100", if host == 1 { HOST1 } else { HOST2 })
    }

    /// The testbed's PKI (the bench calls the hosts as `operator`).
    pub fn pki(&self) -> std::path::PathBuf {
        ferry_testbed::plan::pki_dir(&self.name).into()
    }

    pub fn host_ns(&self, host: usize) -> String {
        self.plan.hosts[host - 1].netns.clone()
    }

    /// Steers the app's address to host 1 or 2.
    pub fn route(&self, app: Ipv4Addr, host: usize) -> anyhow::Result<()> {
        let name = if host == 1 { "h1" } else { "h2" };
        ferry_testbed::route_app(&self.plan, app, name).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Err(e) = down::down(&self.name) {
            eprintln!("warning: testbed {} down: {e}", self.name);
        }
        forget_cleanup(&self.name);
        let _ = std::fs::remove_file(std::env::temp_dir().join(format!("{}.toml", self.name)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_makes_a_valid_topology() {
        for p in PROFILES {
            let t = Topology::parse(&topology_text("bm1a", p)).expect("valid");
            assert_eq!(t.links[0].rate_mbit, Some(p.rate_mbit));
            assert_eq!(t.hosts.len(), 2);
        }
    }
}

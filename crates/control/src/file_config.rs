//! The optional configuration file of `ferry control` (TOML). Every key is optional; command
//! line options add to it (hosts) or override it (the rest).
//!
//! ```toml
//! state_dir = "/var/lib/ferry-control"
//! listen = "0.0.0.0:7021"
//! ran = "http://10.0.0.10:7012"            # MEC 013 producer, to find a UE's cell
//! topology = "/etc/ferry/three-hosts.toml"  # cell -> host map and app subnet
//! data_plane_cmd = "ferry testbed route"    # run as CMD APP_ADDR HOST
//! app_subnet = "10.200.0.0/16"
//! app_api_root = "http://10.0.0.10:7021"   # MEC_API_ROOT of app instances
//! reconcile_interval = 30                   # s between re-readings of the UEs; 0: never
//!
//! [hosts]
//! edge1 = "http://10.0.0.1:7100"
//! ```

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub state_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub ran: Option<String>,
    pub topology: Option<PathBuf>,
    pub data_plane_cmd: Option<String>,
    pub app_subnet: Option<String>,
    pub app_api_root: Option<String>,
    pub reconcile_interval: Option<u64>,
    #[serde(default)]
    pub hosts: BTreeMap<String, String>,
}

impl FileConfig {
    /// Reads and parses the file; the error names the file and the bad key.
    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Parses `a.b.c.d/len` into the network address and prefix length.
pub fn parse_subnet(text: &str) -> Result<(std::net::Ipv4Addr, u8), String> {
    let (a, p) = text
        .split_once('/')
        .ok_or_else(|| format!("subnet '{text}' is not ADDRESS/PREFIX"))?;
    let addr: std::net::Ipv4Addr = a
        .trim()
        .parse()
        .map_err(|_| format!("subnet '{text}': '{a}' is not an IPv4 address"))?;
    let prefix: u8 = p
        .trim()
        .parse()
        .ok()
        .filter(|p| (8..=30).contains(p))
        .ok_or_else(|| format!("subnet '{text}': prefix must be 8..30"))?;
    let mask = u32::MAX << (32 - prefix);
    Ok((std::net::Ipv4Addr::from(u32::from(addr) & mask), prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_and_file() {
        assert_eq!(
            parse_subnet("10.200.3.4/16").unwrap(),
            (std::net::Ipv4Addr::new(10, 200, 0, 0), 16)
        );
        assert!(parse_subnet("10.200.0.0").is_err());
        assert!(parse_subnet("10.200.0.0/31").is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "ran = \"http://x\"\n[hosts]\na = \"http://h:1\"\n").unwrap();
        let c = FileConfig::load(&p).unwrap();
        assert_eq!(c.hosts["a"], "http://h:1");
        std::fs::write(&p, "rann = 1\n").unwrap();
        assert!(FileConfig::load(&p).unwrap_err().contains("rann"));
    }
}

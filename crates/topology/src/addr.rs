//! IPv4 addresses and prefixes as the topology file writes them (`10.0.0.1`, `10.200.0.0/16`).
//!
//! A tiny parser of our own: the file only needs dotted quads and prefix lengths, and the
//! checks here (is an address inside a prefix, do two prefixes overlap) are one-liners.

use std::net::Ipv4Addr;

/// An IPv4 prefix, e.g. `10.200.0.0/16`. `addr` keeps the host bits as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// Parses `a.b.c.d/len`; the reason is a short phrase for an error message.
    pub fn parse(text: &str) -> Result<Ipv4Cidr, String> {
        let (a, p) = text
            .split_once('/')
            .ok_or_else(|| format!("'{text}' is not an IPv4 prefix (write it as a.b.c.d/len)"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("'{a}' is not an IPv4 address"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("'{p}' is not a prefix length (0-32)"))?;
        Ok(Ipv4Cidr { addr, prefix })
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    /// The first address of the prefix (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The first usable address (network + 1), e.g. the anycast gateway of the app subnet.
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()).wrapping_add(1))
    }

    /// Number of addresses in the prefix.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The `n`-th address of the prefix (no bounds check; callers check `size`).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()).wrapping_add(n))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_compares_prefixes() {
        let a = Ipv4Cidr::parse("10.200.0.0/16").unwrap();
        assert_eq!(a.first_host(), Ipv4Addr::new(10, 200, 0, 1));
        assert!(a.contains(Ipv4Addr::new(10, 200, 3, 4)));
        assert!(!a.contains(Ipv4Addr::new(10, 201, 0, 1)));
        let b = Ipv4Cidr::parse("10.200.7.0/24").unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&Ipv4Cidr::parse("10.201.0.0/16").unwrap()));
        assert!(Ipv4Cidr::parse("10.0.0.0").is_err());
        assert!(Ipv4Cidr::parse("10.0.0.0/33").is_err());
        assert!(Ipv4Cidr::parse("10.0.0.300/8").is_err());
    }
}

//! Networks for `--trusted-proxy`: an IPv4 or IPv6 address with a prefix
//! length (`10.0.0.0/8`, `fd00::/8`, or one address). IPv4-mapped IPv6
//! addresses (`::ffff:a.b.c.d`) are treated as IPv4 everywhere; IPv4 and
//! IPv6 networks never match each other's addresses (`::/0` trusts no IPv4
//! peer). A network written with host bits set is refused, naming the one
//! probably meant.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 network: an address with its host bits zero, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The network address (host bits zero; IPv4 for IPv4-mapped input).
    #[must_use]
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length: 0-32 for IPv4, 0-128 for IPv6.
    #[must_use]
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in this network; `::ffff:a.b.c.d` is matched as `a.b.c.d`.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, normalise(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => u32::from(ip) & mask4(self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => u128::from(ip) & mask6(self.prefix) == u128::from(net),
            _ => false,
        }
    }
}

fn mask4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32u32.saturating_sub(u32::from(prefix))).unwrap_or(0)
}

fn mask6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128u32.saturating_sub(u32::from(prefix))).unwrap_or(0)
}

fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask4(prefix))),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask6(prefix))),
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// Parses `addr` (a single host) or `addr/len`. An IPv4-mapped IPv6
    /// network of length >= 96 becomes the IPv4 network it is. A network with
    /// host bits set is an error that names the network probably meant.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr_text, len_text) = match s.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or network (like 10.0.0.0/8 or fd00::/8)"))?;
        let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match len_text {
            None => max,
            Some(len) => Some(len)
                .filter(|len| (1..=3).contains(&len.len()) && len.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|len| len.parse::<u8>().ok())
                .filter(|&len| len <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be a number from 0 to {max}"))?,
        };
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) => match (v6.to_ipv4_mapped(), prefix.checked_sub(96)) {
                (Some(v4), Some(v4_prefix)) => (IpAddr::V4(v4), v4_prefix),
                _ => (addr, prefix),
            },
            IpAddr::V4(_) => (addr, prefix),
        };
        let network = masked(addr, prefix);
        if network != addr {
            return Err(format!("{s} has host bits set; did you mean {network}/{prefix}?"));
        }
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    /// Always `network/len`, e.g. `10.0.0.0/8`, `192.168.1.7/32`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Turns an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) into `a.b.c.d`;
/// other addresses are returned unchanged.
#[must_use]
pub fn normalise(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.9.8.7".parse().unwrap()) && !net.contains("11.0.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.1.1".parse().unwrap()));
        assert!("10.1.2.3/8".parse::<Cidr>().unwrap_err().contains("did you mean 10.0.0.0/8"));
        assert_eq!("::ffff:10.0.0.0/104".parse::<Cidr>().unwrap().to_string(), "10.0.0.0/8");
        assert!(!"::/0".parse::<Cidr>().unwrap().contains("1.2.3.4".parse().unwrap()));
    }
}

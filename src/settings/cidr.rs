//! An address block of the `trusted_proxies` setting (`http::proxy` believes their forwarding
//! headers); here so the configuration parses without the HTTP stack. The arithmetic is the
//! `ipnet` crate's; this adds the forms an office types (a bare address is one host) and
//! compares IPv4-mapped IPv6 addresses as IPv4.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// An address block such as `10.0.0.0/8`, `192.168.1.10` (one host) or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(IpNet);

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&canonical(ip))
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) compare as IPv4.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network = canonical(
            addr.parse::<IpAddr>()
                .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?,
        );
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix must be 0..={max}"))?,
        };
        IpNet::new(network, prefix)
            .map(Self)
            .map_err(|_| format!("{s:?}: the prefix must be 0..={max}"))
    }
}

/// The list of trusted proxies, parsed from `"10.0.0.1, 192.168.0.0/16"`.
pub fn parse_list(raw: &str) -> Result<Vec<Cidr>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_hosts_and_mapped_addresses() {
        let lan: Cidr = "192.168.0.0/16".parse().unwrap();
        assert!(lan.contains("192.168.4.2".parse().unwrap()));
        assert!(lan.contains("::ffff:192.168.4.2".parse().unwrap()));
        assert!(!lan.contains("10.0.0.1".parse().unwrap()));
        let host: Cidr = "10.0.0.7".parse().unwrap();
        assert!(host.contains("10.0.0.7".parse().unwrap()));
        assert!(!host.contains("10.0.0.8".parse().unwrap()));
        let loopback6: Cidr = "::1/128".parse().unwrap();
        assert!(loopback6.contains("::1".parse().unwrap()));
        assert!(!loopback6.contains("127.0.0.1".parse().unwrap()));
        let with_host_bits: Cidr = "10.1.2.3/8".parse().unwrap();
        assert!(with_host_bits.contains("10.200.0.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("::ffff:10.0.0.1/64".parse::<Cidr>().is_err());
        assert_eq!(parse_list("10.0.0.1, 192.168.0.0/16,").unwrap().len(), 2);
    }
}

//! The address policy (SSRF guard): networks no device address may point into. Checked
//! when a device is saved (an address that is an IP literal) and at every poll, after
//! DNS resolution: a probe connects to the address it checked, never to a second lookup
//! of the name, so a name that starts resolving into a denied network is refused too.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Denied unless configured otherwise: link-local (where cloud metadata services
/// answer, 169.254.169.254 among them), and the metadata addresses outside it.
pub const DEFAULT_DENIED: &[&str] = &[
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254/128",
    "100.100.100.200/32",
];

/// One network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    base: IpAddr,
    prefix: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a network in CIDR notation such as 10.0.0.0/8 or fd00::/8")]
pub struct BadNetwork(pub String);

impl FromStr for Network {
    type Err = BadNetwork;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadNetwork(s.to_string());
        let s = s.trim();
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (s, None),
        };
        let base: IpAddr = ip.parse().map_err(|_| bad())?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Network { base, prefix })
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl Network {
    /// Whether the two networks share an address.
    pub fn overlaps(&self, other: &Network) -> bool {
        let (wider, narrower) = if self.prefix <= other.prefix {
            (self, other)
        } else {
            (other, self)
        };
        wider.contains(narrower.base)
    }

    /// Every address of the network, when it holds `max` at most. A /31 or /32 (/127,
    /// /128) is its addresses; a wider IPv4 network leaves out its network and
    /// broadcast addresses.
    pub fn hosts(&self, max: u64) -> Option<Vec<IpAddr>> {
        let bits = if self.base.is_ipv4() { 32 } else { 128 };
        let host_bits = bits - u32::from(self.prefix);
        if host_bits >= 64 || (1u64 << host_bits) > max {
            return None;
        }
        let size = 1u128 << host_bits;
        let trim = self.base.is_ipv4() && host_bits >= 2;
        let range = if trim { 1..size - 1 } else { 0..size };
        Some(match self.base {
            IpAddr::V4(base) => {
                let first =
                    u128::from(u32::from(base) & (u32::MAX.checked_shl(host_bits).unwrap_or(0)));
                range
                    .map(|i| IpAddr::V4(std::net::Ipv4Addr::from((first + i) as u32)))
                    .collect()
            }
            IpAddr::V6(base) => {
                let first = u128::from(base) & u128::MAX.checked_shl(host_bits).unwrap_or(0);
                range
                    .map(|i| IpAddr::V6(std::net::Ipv6Addr::from(first + i)))
                    .collect()
            }
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.base, canonical(ip)) {
            (IpAddr::V4(base), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(base) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(base), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(base) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4 address written as IPv6 (`::ffff:169.254.169.254`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The networks device addresses may not point into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPolicy {
    denied: Vec<Network>,
}

impl Default for AddressPolicy {
    fn default() -> Self {
        AddressPolicy {
            denied: DEFAULT_DENIED
                .iter()
                .filter_map(|n| n.parse().ok())
                .collect(),
        }
    }
}

impl AddressPolicy {
    /// A policy denying `networks`; an empty list denies nothing.
    pub fn new(networks: &[String]) -> Result<Self, BadNetwork> {
        Ok(AddressPolicy {
            denied: networks
                .iter()
                .filter(|n| !n.trim().is_empty())
                .map(|n| n.parse())
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn denied(&self) -> &[Network] {
        &self.denied
    }

    /// Why `ip` may not be polled; `None` when it may.
    pub fn refusal(&self, ip: IpAddr) -> Option<String> {
        self.denied
            .iter()
            .find(|n| n.contains(ip))
            .map(|n| format!("{ip} is in {n}, which the address policy denies"))
    }

    /// The address to connect to for `host:port`: resolved now, and refused when any
    /// address the name resolves to is denied (a name pointing partly into a denied
    /// network is not trusted with the rest).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, String> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| format!("cannot resolve {host}: {e}"))?
                .collect(),
        };
        if let Some(refusal) = addresses.iter().find_map(|a| self.refusal(a.ip())) {
            return Err(refusal);
        }
        addresses
            .first()
            .copied()
            .ok_or_else(|| format!("{host} resolves to no address"))
    }
}

/// The IP of an address's host when it is written as an IP (`http://10.0.0.1/`,
/// `[fe80::1]:22`); `None` for a name.
pub fn literal_ip(host: &str) -> Option<IpAddr> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Network {
        text.parse().unwrap()
    }

    #[test]
    fn a_networks_hosts_are_listed_up_to_a_bound() {
        let hosts = net("10.0.3.0/30").hosts(1024).unwrap();
        let expected: Vec<IpAddr> = vec!["10.0.3.1".parse().unwrap(), "10.0.3.2".parse().unwrap()];
        assert_eq!(hosts, expected, "network and broadcast addresses left out");
        assert_eq!(
            net("10.0.3.7/32").hosts(1).unwrap(),
            vec![net("10.0.3.7").base]
        );
        assert_eq!(net("10.0.3.9/22").hosts(1024).unwrap().len(), 1022);
        assert_eq!(net("10.0.0.0/21").hosts(1024), None);
        assert_eq!(net("fd00::/120").hosts(1024).unwrap().len(), 256);
        assert_eq!(net("fd00::/64").hosts(1024), None);
        assert_eq!(net("0.0.0.0/0").hosts(1024), None);
    }

    #[test]
    fn networks_overlap_when_they_share_an_address() {
        assert!(net("169.254.0.0/16").overlaps(&net("169.254.169.0/24")));
        assert!(net("169.254.169.0/24").overlaps(&net("169.254.0.0/16")));
        assert!(net("0.0.0.0/0").overlaps(&net("10.1.2.3/32")));
        assert!(!net("10.0.0.0/24").overlaps(&net("10.0.1.0/24")));
        assert!(!net("10.0.0.0/8").overlaps(&net("fd00::/8")));
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_default_policy_denies_link_local_and_cloud_metadata() {
        let policy = AddressPolicy::default();
        for denied in [
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "fd00:ec2::254",
            "100.100.100.200",
            "::ffff:169.254.169.254",
        ] {
            assert!(policy.refusal(ip(denied)).is_some(), "{denied} allowed");
        }
        for allowed in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "::1",
            "8.8.8.8",
            "fd00::1",
        ] {
            assert!(policy.refusal(ip(allowed)).is_none(), "{allowed} denied");
        }
    }

    #[test]
    fn networks_parse_in_cidr_notation() {
        let n: Network = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.255.0.1")) && !n.contains(ip("11.0.0.1")));
        assert!(!n.contains(ip("::1")));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("1.2.3.4")));
        let one: Network = "192.0.2.7".parse().unwrap();
        assert_eq!(one.to_string(), "192.0.2.7/32");
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        for bad in [
            "",
            "10.0.0.0/33",
            "fe80::/129",
            "example.com/8",
            "10.0.0.0/x",
        ] {
            assert!(bad.parse::<Network>().is_err(), "{bad} parsed");
        }
        assert_eq!(AddressPolicy::new(&[]).unwrap().denied().len(), 0);
        assert!(AddressPolicy::new(&["nonsense".into()]).is_err());
    }

    #[actix_rt::test]
    async fn resolution_refuses_names_and_literals_in_denied_networks() {
        let policy = AddressPolicy::new(&["127.0.0.0/8".into()]).unwrap();
        let refused = policy.resolve("localhost", 80).await.unwrap_err();
        assert!(refused.contains("address policy"), "{refused}");
        assert!(policy.resolve("127.0.0.1", 80).await.is_err());
        let open = AddressPolicy::default();
        assert_eq!(
            open.resolve("[::1]", 22).await.unwrap(),
            "[::1]:22".parse().unwrap()
        );
        assert!(open.resolve("169.254.169.254", 80).await.is_err());
    }
}

//! Which addresses a rank's data plane listens on and lists on its
//! business card.
//!
//! A job on one host uses loopback. A job that spans hosts (the launcher
//! sets `MPR_MULTI_HOST=1`) publishes every non-loopback address that is up
//! (the IPv4 ones if there are any, otherwise the global IPv6 ones;
//! link-local addresses need a scope and are left out). Keeping to one
//! family lets the listener bind that family's unspecified address whatever
//! the host's `bindv6only` setting. `MPR_INTERFACE` (set by `mprun --interface`) narrows the
//! choice to one interface, by name (`eth1`) or by network (`10.1.0.0/16`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Variable naming the interface (name or CIDR) the data plane uses.
pub const INTERFACE_VAR: &str = "MPR_INTERFACE";
/// Variable the launcher sets to `1` when the job's ranks run on several hosts.
pub const MULTI_HOST_VAR: &str = "MPR_MULTI_HOST";

/// One address of one network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddr {
    /// Interface name (`eth0`).
    pub name: String,
    /// The address.
    pub ip: IpAddr,
    /// Whether the interface is up.
    pub up: bool,
}

/// Where the data plane listens and what the card lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPlane {
    /// Address the listener binds (the unspecified address when several
    /// addresses are published).
    pub bind: IpAddr,
    /// Addresses peers may dial, best first.
    pub addrs: Vec<IpAddr>,
}

/// How `MPR_INTERFACE` selects addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfaceSpec {
    /// An interface by name.
    Name(String),
    /// Every address inside a network.
    Network {
        /// Network address.
        net: IpAddr,
        /// Prefix length in bits.
        prefix: u8,
    },
}

impl InterfaceSpec {
    /// Parses `NAME` or `ADDR/PREFIX`; `None` for a malformed CIDR.
    pub fn parse(text: &str) -> Option<InterfaceSpec> {
        let text = text.trim();
        let Some((net, prefix)) = text.split_once('/') else {
            return (!text.is_empty()).then(|| InterfaceSpec::Name(text.to_owned()));
        };
        let net: IpAddr = net.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let bits = if net.is_ipv4() { 32 } else { 128 };
        (prefix <= bits).then_some(InterfaceSpec::Network { net, prefix })
    }

    fn matches(&self, addr: &InterfaceAddr) -> bool {
        match self {
            InterfaceSpec::Name(name) => addr.name == *name,
            InterfaceSpec::Network { net, prefix } => in_network(addr.ip, *net, *prefix),
        }
    }
}

fn in_network(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

fn link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => ip.is_link_local(),
        IpAddr::V6(ip) => ip.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// Chooses the data-plane addresses among `interfaces` (pure: the
/// decision, without asking the system).
pub fn choose(
    interfaces: &[InterfaceAddr],
    spec: Option<&InterfaceSpec>,
    multi_host: bool,
) -> Result<DataPlane, String> {
    let mut addrs: Vec<IpAddr> = match spec {
        Some(spec) => interfaces
            .iter()
            .filter(|addr| addr.up && spec.matches(addr) && !link_local(addr.ip))
            .map(|addr| addr.ip)
            .collect(),
        None if !multi_host => vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        None => interfaces
            .iter()
            .filter(|addr| addr.up && !addr.ip.is_loopback() && !link_local(addr.ip))
            .map(|addr| addr.ip)
            .collect(),
    };
    // One family: IPv4 if any (peers are likelier to route it).
    if addrs.iter().any(IpAddr::is_ipv4) {
        addrs.retain(IpAddr::is_ipv4);
    }
    addrs.dedup();
    let bind = match addrs.as_slice() {
        [] => {
            return Err(match spec {
                Some(spec) => format!("{INTERFACE_VAR}: no interface that is up matches {spec:?}"),
                None => "the job spans hosts but this host has no non-loopback address that is up \
                         (set MPR_INTERFACE or mprun --interface)"
                    .to_owned(),
            });
        }
        [one] => *one,
        [first, ..] if first.is_ipv6() => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    Ok(DataPlane { bind, addrs })
}

/// The addresses of this host's interfaces.
pub fn interfaces() -> io::Result<Vec<InterfaceAddr>> {
    use nix::net::if_::InterfaceFlags;
    let list = nix::ifaddrs::getifaddrs().map_err(io::Error::from)?;
    Ok(list
        .filter_map(|entry| {
            let address = entry.address?;
            let ip = if let Some(v4) = address.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else {
                IpAddr::V6(address.as_sockaddr_in6()?.ip())
            };
            Some(InterfaceAddr {
                name: entry.interface_name,
                ip,
                up: entry.flags.contains(InterfaceFlags::IFF_UP),
            })
        })
        .collect())
}

/// The data plane of this rank, from `MPR_INTERFACE` and `MPR_MULTI_HOST`.
pub fn data_plane() -> io::Result<DataPlane> {
    let multi_host = std::env::var(MULTI_HOST_VAR).is_ok_and(|value| value == "1");
    let spec = match std::env::var(INTERFACE_VAR) {
        Ok(text) if !text.trim().is_empty() => {
            Some(InterfaceSpec::parse(&text).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{INTERFACE_VAR}={text:?}: expected an interface name or a CIDR network"
                    ),
                )
            })?)
        }
        _ => None,
    };
    if spec.is_none() && !multi_host {
        // The common local job: no need to ask the system.
        return choose(&[], None, false).map_err(io::Error::other);
    }
    choose(&interfaces()?, spec.as_ref(), multi_host)
        .map_err(|message| io::Error::new(io::ErrorKind::AddrNotAvailable, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, ip: &str, up: bool) -> InterfaceAddr {
        InterfaceAddr {
            name: name.into(),
            ip: ip.parse().unwrap(),
            up,
        }
    }

    fn sample() -> Vec<InterfaceAddr> {
        vec![
            iface("lo", "127.0.0.1", true),
            iface("lo", "::1", true),
            iface("eth0", "fd00::2", true),
            iface("eth0", "fe80::1", true),
            iface("eth0", "192.0.2.2", true),
            iface("veth1", "198.18.0.2", true),
            iface("down0", "10.0.0.1", false),
        ]
    }

    #[test]
    fn a_local_job_uses_loopback() {
        let plane = choose(&sample(), None, false).unwrap();
        assert_eq!(plane.addrs, ["127.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(plane.bind, plane.addrs[0]);
    }

    #[test]
    fn a_multi_host_job_publishes_every_routable_address_of_one_family() {
        let plane = choose(&sample(), None, true).unwrap();
        let expected: Vec<IpAddr> = ["192.0.2.2", "198.18.0.2"]
            .iter()
            .map(|ip| ip.parse().unwrap())
            .collect();
        assert_eq!(plane.addrs, expected);
        assert_eq!(plane.bind, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let v6_only = [
            iface("lo", "::1", true),
            iface("eth0", "fd00::2", true),
            iface("eth0", "2001:db8::2", true),
        ];
        let plane = choose(&v6_only, None, true).unwrap();
        assert_eq!(plane.addrs.len(), 2);
        assert_eq!(plane.bind, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    }

    #[test]
    fn interface_by_name_or_network() {
        let by_name = InterfaceSpec::parse("veth1").unwrap();
        let plane = choose(&sample(), Some(&by_name), true).unwrap();
        assert_eq!(plane.addrs, ["198.18.0.2".parse::<IpAddr>().unwrap()]);
        assert_eq!(plane.bind, plane.addrs[0]);
        let by_net = InterfaceSpec::parse("198.18.0.0/15").unwrap();
        assert_eq!(choose(&sample(), Some(&by_net), false).unwrap(), plane);
        let v6 = InterfaceSpec::parse("fd00::/8").unwrap();
        assert_eq!(
            choose(&sample(), Some(&v6), true).unwrap().addrs,
            ["fd00::2".parse::<IpAddr>().unwrap()]
        );
        let lo = InterfaceSpec::parse("lo").unwrap();
        assert_eq!(
            choose(&sample(), Some(&lo), true).unwrap().addrs,
            ["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn nothing_matching_is_an_error_naming_the_choice() {
        let spec = InterfaceSpec::parse("down0").unwrap();
        assert!(
            choose(&sample(), Some(&spec), true)
                .unwrap_err()
                .contains("down0")
        );
        let only_lo = [iface("lo", "127.0.0.1", true)];
        assert!(
            choose(&only_lo, None, true)
                .unwrap_err()
                .contains("non-loopback")
        );
    }

    #[test]
    fn malformed_networks_are_refused() {
        assert_eq!(InterfaceSpec::parse("10.0.0.0/33"), None);
        assert_eq!(InterfaceSpec::parse("nonsense/8"), None);
        assert_eq!(InterfaceSpec::parse(""), None);
        assert_eq!(
            InterfaceSpec::parse("10.0.0.0/0"),
            Some(InterfaceSpec::Network {
                net: "10.0.0.0".parse().unwrap(),
                prefix: 0
            })
        );
    }

    #[test]
    fn this_host_lists_its_loopback() {
        let list = interfaces().unwrap();
        assert!(list.iter().any(|addr| addr.ip.is_loopback()));
    }
}

//! The host's addresses on the engine's default bridge network: where a container on a
//! bridge reaches a host service through `host.docker.internal` (which `host-gateway`
//! maps to the default bridge's gateway). A host service meant for containers binds
//! these, never `0.0.0.0`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

use bollard::Docker;
use sandbox_core::{Error, Result};

use super::PROVIDER;

/// The engine's default bridge network.
const DEFAULT_BRIDGE: &str = "bridge";

/// The host's IPv4 addresses on the engine's default bridge network (`docker0`): each
/// IPv4 subnet's gateway, or, when the engine names none (it often does not for the
/// default bridge), the address this host uses as source towards that subnet, kept
/// only when it lies in the subnet (so an engine on another machine yields nothing
/// rather than an address of this host's other networks).
///
/// # Errors
/// [`Error::Provider`] when the engine cannot be asked.
pub async fn bridge_gateways(docker: &Docker) -> Result<Vec<Ipv4Addr>> {
    let network = docker
        .inspect_network(DEFAULT_BRIDGE, None)
        .await
        .map_err(|e| Error::Provider {
            provider: PROVIDER,
            message: format!("inspecting the Docker network `{DEFAULT_BRIDGE}`: {e}"),
            source: Some(Box::new(e)),
        })?;
    let configs = network.ipam.and_then(|i| i.config).unwrap_or_default();
    let mut found = Vec::new();
    for c in configs {
        let Some((net, prefix)) = c.subnet.as_deref().and_then(parse_v4_subnet) else {
            continue;
        };
        let gateway = c
            .gateway
            .as_deref()
            .and_then(|g| g.parse::<Ipv4Addr>().ok())
            .or_else(|| local_source_towards(net, prefix));
        if let Some(g) = gateway.filter(|g| in_subnet(*g, net, prefix)) {
            if !found.contains(&g) {
                found.push(g);
            }
        }
    }
    Ok(found)
}

/// `a.b.c.d/n` as (network address, prefix length); `None` for IPv6 or garbage.
fn parse_v4_subnet(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, len) = s.split_once('/')?;
    let addr: Ipv4Addr = addr.trim().parse().ok()?;
    let len: u8 = len.trim().parse().ok()?;
    (1..=30).contains(&len).then_some((addr, len))
}

fn mask(prefix: u8) -> u32 {
    u32::MAX << (32 - u32::from(prefix))
}

fn in_subnet(ip: Ipv4Addr, net: Ipv4Addr, prefix: u8) -> bool {
    u32::from(ip) & mask(prefix) == u32::from(net) & mask(prefix)
}

/// The local address the kernel would send from towards a host of the subnet (a
/// connected UDP socket sends nothing; it only picks the route).
fn local_source_towards(net: Ipv4Addr, prefix: u8) -> Option<Ipv4Addr> {
    let probe = Ipv4Addr::from((u32::from(net) & mask(prefix)) + 2);
    let socket = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).ok()?;
    socket.connect(SocketAddr::from((probe, 9))).ok()?;
    match socket.local_addr().ok()?.ip() {
        IpAddr::V4(v4) if !v4.is_unspecified() && !v4.is_loopback() => Some(v4),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_contain() {
        let (net, len) = parse_v4_subnet("172.17.0.0/16").unwrap_or((Ipv4Addr::UNSPECIFIED, 0));
        assert_eq!((net, len), (Ipv4Addr::new(172, 17, 0, 0), 16));
        assert!(in_subnet(Ipv4Addr::new(172, 17, 0, 1), net, len));
        assert!(!in_subnet(Ipv4Addr::new(172, 18, 0, 1), net, len));
        assert_eq!(parse_v4_subnet("fd00::/64"), None);
        assert_eq!(parse_v4_subnet("10.0.0.0/0"), None);
    }

    #[test]
    fn the_source_towards_a_foreign_subnet_is_not_in_it() {
        // 198.51.100.0/24 (TEST-NET-2) is routed nowhere locally: whatever source the
        // default route picks lies outside it, so it is never taken as a gateway.
        let (net, len) = (Ipv4Addr::new(198, 51, 100, 0), 24);
        if let Some(src) = local_source_towards(net, len) {
            assert!(!in_subnet(src, net, len), "{src}");
        }
    }
}

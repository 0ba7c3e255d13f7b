//! The SSRF guard: which addresses a download may connect to.
//!
//! A job's URL comes from outside, so without this a job could make the worker read cloud
//! metadata (169.254.169.254) or internal services. The host is resolved once, every address
//! is classified here, and the download connects to the address that was checked (pinned in
//! the HTTP client), so a second DNS answer cannot swap in a private one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::MediaConfig;
use crate::types::MediaError;

/// Why an address is refused, or `None` when it is a public unicast address.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            // An IPv4-mapped or -compatible address reaches the IPv4 host it embeds.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            forbidden_v6(v6)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("unspecified/this-network")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        // 169.254.0.0/16 holds the cloud metadata endpoint 169.254.169.254.
        Some("link-local or metadata")
    } else if a == 100 && (64..128).contains(&b) {
        Some("carrier-grade NAT")
    } else if a == 192 && b == 0 && ip.octets()[2] == 0 {
        Some("IETF protocol assignments")
    } else if a == 198 && (b == 18 || b == 19) {
        Some("benchmarking")
    } else if ip.is_broadcast() || ip.is_multicast() || a >= 240 {
        Some("broadcast, multicast or reserved")
    } else if ip.is_documentation() {
        Some("documentation")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if first & 0xfe00 == 0xfc00 {
        // fc00::/7 holds AWS's IPv6 metadata endpoint fd00:ec2::254.
        Some("unique-local or metadata")
    } else if first & 0xffc0 == 0xfe80 || first & 0xffc0 == 0xfec0 {
        Some("link-local or site-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if first == 0x2001 && ip.segments()[1] == 0x0db8 {
        Some("documentation")
    } else if first == 0x0064 && ip.segments()[1] == 0xff9b {
        // NAT64 prefixes translate to IPv4 targets we cannot see from here.
        Some("NAT64")
    } else if ip.segments()[..6] == [0; 6] {
        Some("IPv4-compatible")
    } else {
        None
    }
}

/// Whether `host` (as written in the URL) or `ip` is on the operator's allow list.
pub fn is_allowed_host(cfg: &MediaConfig, host: &str, ip: Option<IpAddr>) -> bool {
    if cfg.allow_private {
        return true;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    cfg.allow_hosts.iter().any(|allowed| {
        let allowed = allowed.trim().trim_start_matches('[').trim_end_matches(']');
        allowed.eq_ignore_ascii_case(host)
            || ip.is_some_and(|ip| allowed.parse::<IpAddr>().is_ok_and(|a| a == ip))
    })
}

/// Picks the address to connect to: the first resolved address that is public or allowed.
/// Refuses when there is none, naming the first refused address and why.
pub fn choose_address(
    cfg: &MediaConfig,
    host: &str,
    addrs: &[SocketAddr],
) -> Result<SocketAddr, MediaError> {
    let mut refused = None;
    for addr in addrs {
        if is_allowed_host(cfg, host, Some(addr.ip())) {
            return Ok(*addr);
        }
        match forbidden_reason(addr.ip()) {
            None => return Ok(*addr),
            Some(why) => {
                refused.get_or_insert_with(|| format!("{host} -> {} ({why})", addr.ip()));
            }
        }
    }
    Err(MediaError::Refused(refused.unwrap_or_else(|| {
        format!("{host} (resolved to no address)")
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        forbidden_reason(s.parse().unwrap()).is_some()
    }

    #[test]
    fn refuses_internal_targets() {
        for ip in [
            "127.0.0.1",
            "127.8.9.1",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
        ] {
            assert!(refused(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn accepts_public_targets() {
        for ip in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "1.1.1.1",
            "2606:4700:4700::1111",
        ] {
            assert!(!refused(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn allow_list_matches_host_or_ip() {
        let cfg = MediaConfig {
            allow_hosts: vec!["127.0.0.1".into()],
            ..Default::default()
        };
        let lo: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(choose_address(&cfg, "localhost", &[lo]).unwrap(), lo);
        let other: SocketAddr = "10.0.0.1:80".parse().unwrap();
        assert!(matches!(
            choose_address(&cfg, "x", &[other]),
            Err(MediaError::Refused(_))
        ));
        let strict = MediaConfig::default();
        assert!(matches!(
            choose_address(&strict, "localhost", &[lo]),
            Err(MediaError::Refused(_))
        ));
    }
}

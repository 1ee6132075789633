//! Reverse proxies CertHub is told to believe (`trusted_proxies`): only their
//! `X-Forwarded-For` and `X-Forwarded-Proto` say who the client is and whether it came over
//! HTTPS. Anybody else's forwarding headers are ignored, so a client cannot pick its own IP
//! (and with it a fresh login or pairing quota).

use std::net::IpAddr;

use actix_web::HttpRequest;

use crate::settings::cidr::canonical;
pub use crate::settings::cidr::{Cidr, parse_list};

/// Who the client is and how it reached us, believing forwarding headers only from `trusted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOrigin {
    pub ip: Option<IpAddr>,
    /// The request reached a trusted proxy over HTTPS (`X-Forwarded-Proto: https`).
    pub forwarded_https: bool,
}

/// The client of `peer`'s request given its `X-Forwarded-For` (all values, in order) and
/// `X-Forwarded-Proto`: walking from the right, the first address that is not a trusted
/// proxy. With an untrusted peer the headers are ignored.
pub fn resolve(
    trusted: &[Cidr],
    peer: Option<IpAddr>,
    forwarded_for: &[&str],
    forwarded_proto: Option<&str>,
) -> ClientOrigin {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let Some(peer) = peer.filter(|p| is_trusted(*p)) else {
        return ClientOrigin {
            ip: peer.map(canonical),
            forwarded_https: false,
        };
    };
    let hops: Vec<IpAddr> = forwarded_for
        .iter()
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse::<IpAddr>().ok())
        .map(canonical)
        .collect();
    let ip = hops
        .iter()
        .rev()
        .copied()
        .find(|ip| !is_trusted(*ip))
        .or(hops.first().copied())
        .unwrap_or(canonical(peer));
    let forwarded_https = forwarded_proto
        .and_then(|p| p.split(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    ClientOrigin {
        ip: Some(ip),
        forwarded_https,
    }
}

/// [`resolve`] for an actix request, with the trusted list from the application's settings.
pub fn origin_of(req: &HttpRequest, trusted: &[Cidr]) -> ClientOrigin {
    let forwarded_for: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    let proto = req
        .headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok());
    resolve(
        trusted,
        req.peer_addr().map(|a| a.ip()),
        &forwarded_for,
        proto,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_blocks() {
        let lan: Cidr = "192.168.0.0/16".parse().unwrap();
        assert!(lan.contains(ip("192.168.10.1")));
        assert!(lan.contains(ip("::ffff:192.168.10.1")));
        assert!(!lan.contains(ip("10.0.0.1")));
        let host: Cidr = "127.0.0.1".parse().unwrap();
        assert!(host.contains(ip("127.0.0.1")) && !host.contains(ip("127.0.0.2")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope".parse::<Cidr>().is_err());
        assert_eq!(parse_list(" 10.0.0.1, ::1/128 ,").unwrap().len(), 2);
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let trusted = parse_list("10.0.0.1").unwrap();
        // A stranger's headers are ignored.
        let o = resolve(&trusted, Some(ip("10.9.9.9")), &["1.2.3.4"], Some("https"));
        assert_eq!(o.ip, Some(ip("10.9.9.9")));
        assert!(!o.forwarded_https);
        // The proxy's are believed; a client-supplied left part cannot hide the real hop.
        let o = resolve(
            &trusted,
            Some(ip("10.0.0.1")),
            &["6.6.6.6, 192.168.1.20"],
            Some("https"),
        );
        assert_eq!(o.ip, Some(ip("192.168.1.20")));
        assert!(o.forwarded_https);
        // No header from the proxy: the proxy itself.
        let o = resolve(&trusted, Some(ip("10.0.0.1")), &[], None);
        assert_eq!(o.ip, Some(ip("10.0.0.1")));
        assert!(!o.forwarded_https);
    }
}

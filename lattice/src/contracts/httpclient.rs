//! `lattice:httpclient`: outgoing HTTP from components (`wasi:http/outgoing-handler`).
//!
//! The host makes the requests itself; no provider serves the contract. A
//! component may send a request only when its claims list [`CONTRACT`] and
//! its `default` link for the contract names the request's host in
//! [`CONFIG_ALLOWED_HOSTS`]; the link's provider id is not used (by
//! convention `host`). Everything else is refused with the URL named.

/// The contract id.
pub const CONTRACT: &str = "lattice:httpclient";

/// Link config key: the hosts a component may send requests to, separated by
/// commas: `host` (any port) or `host:port`, e.g. `api.example.com,127.0.0.1:8080`.
pub const CONFIG_ALLOWED_HOSTS: &str = "allowed_hosts";

/// Whether `authority` (`host` or `host:port` of a request) is one of
/// `allowed` (a [`CONFIG_ALLOWED_HOSTS`] value). Hosts compare without case.
pub fn allows(allowed: &str, authority: &str) -> bool {
    let authority = authority.to_ascii_lowercase();
    let host = match authority.rsplit_once(':') {
        // Not the colons of a bare IPv6 address.
        Some((h, port)) if !h.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority.as_str(),
    };
    allowed
        .split(',')
        .map(|a| a.trim().to_ascii_lowercase())
        .filter(|a| !a.is_empty())
        .any(|a| a == authority || a == host)
}

#[cfg(test)]
mod tests {
    use super::allows;

    #[test]
    fn hosts_and_ports() {
        let allowed = "api.example.com, 127.0.0.1:8080";
        assert!(allows(allowed, "api.example.com"));
        assert!(allows(allowed, "API.example.com:443"));
        assert!(allows(allowed, "127.0.0.1:8080"));
        assert!(!allows(allowed, "127.0.0.1:8081"));
        assert!(!allows(allowed, "127.0.0.1"));
        assert!(!allows(allowed, "example.com"));
        assert!(!allows(allowed, "api.example.com.evil.net"));
        assert!(!allows("", "api.example.com"));
    }
}

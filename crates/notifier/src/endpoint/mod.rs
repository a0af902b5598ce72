//! Where pushes may go.
//!
//! A push endpoint is a URL that anyone with an account hands us, and we POST to it. Left
//! unchecked, that lets a user make this service send requests to itself, to the cloud
//! metadata endpoint or into the private network (SSRF). So, unless
//! `WEBPUSH_ALLOW_PRIVATE_ENDPOINTS` is set for local testing:
//!
//! - the URL must be `https`, without credentials, and its host must not be `localhost` or a
//!   non-public IP literal: checked when a browser subscribes ([`EndpointPolicy::check`],
//!   refused with 422 `invalid_subscription`) and again before every push;
//! - a host name is resolved by the push client's own resolver, which drops every
//!   non-public address from the answer ([`NoPublicAddress`] when none is left), so the check
//!   applies to the address actually connected to and DNS rebinding cannot get around it;
//! - the push client never follows redirects and ignores proxy settings (a proxy would
//!   resolve the host itself, out of the resolver's sight).
//!
//! The rules on addresses live in [`address`].

pub mod address;
mod resolve;

use std::net::IpAddr;
use std::sync::Arc;

use reqwest::Url;
use reqwest::dns::Resolve;

pub use address::is_public;
pub(crate) use resolve::GuardedResolver;
pub use resolve::NoPublicAddress;

/// Why an endpoint URL may not be pushed to, in words for the client and the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EndpointRefused(pub String);

/// Which endpoints pushes may go to. Cheap to clone.
#[derive(Clone, Default)]
pub struct EndpointPolicy {
    allow_private: bool,
    /// Name resolution under the filter; the system resolver when `None`.
    lookup: Option<Arc<dyn Resolve>>,
}

impl EndpointPolicy {
    /// Public `https` endpoints only (the default), or, with `allow_private`
    /// (`WEBPUSH_ALLOW_PRIVATE_ENDPOINTS`), also plain `http` and any address.
    pub fn new(allow_private: bool) -> Self {
        EndpointPolicy {
            allow_private,
            lookup: None,
        }
    }

    /// Resolves host names with `lookup` instead of the system resolver; its answers are
    /// filtered all the same. For tests that need a name to resolve to a chosen address.
    pub fn with_lookup(mut self, lookup: impl Resolve + 'static) -> Self {
        self.lookup = Some(Arc::new(lookup));
        self
    }

    /// Whether private addresses and plain `http` are allowed.
    pub fn allows_private(&self) -> bool {
        self.allow_private
    }

    /// Parses `endpoint`, refuses it where the URL alone shows it may not be pushed to, and
    /// returns it normalised (see [`normalize`]).
    pub fn check(&self, endpoint: &str) -> Result<Url, EndpointRefused> {
        let url = normalize(endpoint)?;
        let refuse = |reason: &str| Err(EndpointRefused(reason.to_owned()));
        match url.scheme() {
            "https" => {}
            "http" if self.allow_private => {}
            _ if self.allow_private => return refuse("must be an https or http URL"),
            _ => return refuse("must be an https URL"),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return refuse("must not contain credentials");
        }
        let host = url.host_str().unwrap_or_default();
        if host.is_empty() {
            return refuse("must name a host");
        }
        if self.allow_private {
            return Ok(url);
        }
        if is_localhost(host) {
            return refuse("must not name this machine (localhost)");
        }
        // The parser has already turned every spelling of an IPv4 address (`127.1`,
        // `2130706433`, `0x7f.0.0.1`) into dotted decimal; IPv6 comes in brackets.
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>()
            && !is_public(ip)
        {
            return refuse("must not be a loopback, private or other non-public address");
        }
        Ok(url)
    }

    /// The push client's resolver under this policy.
    pub(crate) fn resolver(&self) -> GuardedResolver {
        GuardedResolver {
            allow_private: self.allow_private,
            lookup: self.lookup.clone(),
        }
    }
}

impl std::fmt::Debug for EndpointPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointPolicy")
            .field("allow_private", &self.allow_private)
            .field("custom_lookup", &self.lookup.is_some())
            .finish()
    }
}

/// The one spelling of an endpoint, so two spellings of one URL are one subscription:
/// scheme and host lowercase, IDNs in punycode, IPv4 in dotted decimal, the default port
/// dropped, an empty path as `/`, and no fragment (a fragment never reaches the server).
/// Path and query are kept as given: they are case-sensitive.
pub fn normalize(endpoint: &str) -> Result<Url, EndpointRefused> {
    let mut url =
        Url::parse(endpoint).map_err(|err| EndpointRefused(format!("is not a URL: {err}")))?;
    url.set_fragment(None);
    Ok(url)
}

/// `localhost` and its subdomains always mean this machine (RFC 6761 §6.3).
fn is_localhost(domain: &str) -> bool {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    domain == "localhost" || domain.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(policy: &EndpointPolicy, endpoint: &str) -> Option<String> {
        policy.check(endpoint).err().map(|refused| refused.0)
    }

    #[test]
    fn by_default_only_public_https_endpoints_pass() {
        let policy = EndpointPolicy::default();
        for endpoint in [
            "https://fcm.googleapis.com/fcm/send/abc:def",
            "https://updates.push.services.mozilla.com/wpush/v2/gAAAA",
            "https://push.example.com:8443/x",
            "https://8.8.8.8/push",
            "https://[2001:4860:4860::8888]/push",
            "https://localhost.example.com/push",
        ] {
            assert_eq!(refusal(&policy, endpoint), None, "{endpoint}");
        }
        for endpoint in [
            "http://push.example.com/x",
            "ftp://push.example.com/x",
            "not a url",
            "https://user:pass@push.example.com/x",
            "https://user@push.example.com/x",
            "https://localhost/x",
            "https://LOCALHOST./x",
            "https://push.localhost/x",
            "https://%6c%6fcalhost/x",
            "https://127.0.0.1/x",
            "https://127.1/x",
            "https://2130706433/x",
            "https://0x7f.0.0.1/x",
            "https://0.0.0.0/x",
            "https://10.1.2.3/x",
            "https://172.16.0.1/x",
            "https://192.168.1.1/x",
            "https://100.64.0.1/x",
            "https://169.254.169.254/latest/meta-data/",
            "https://224.0.0.1/x",
            "https://255.255.255.255/x",
            "https://[::1]/x",
            "https://[::]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://[::ffff:7f00:1]/x",
            "https://[64:ff9b::a9fe:a9fe]/x",
            "https://[fe80::1]/x",
            "https://[fd00::1]/x",
            "https://[ff02::1]/x",
            "data:text/plain,hi",
        ] {
            assert!(refusal(&policy, endpoint).is_some(), "{endpoint} passed");
        }
    }

    #[test]
    fn allowing_private_endpoints_allows_http_and_any_address() {
        let policy = EndpointPolicy::new(true);
        for endpoint in [
            "http://127.0.0.1:3000/push/1",
            "https://localhost/x",
            "http://[::1]:8080/x",
            "https://10.0.0.1/x",
        ] {
            assert_eq!(refusal(&policy, endpoint), None, "{endpoint}");
        }
        for endpoint in [
            "ftp://127.0.0.1/x",
            "https://u:p@127.0.0.1/x",
            "file:///etc/passwd",
        ] {
            assert!(refusal(&policy, endpoint).is_some(), "{endpoint} passed");
        }
    }

    #[test]
    fn endpoints_are_normalised() {
        let same = [
            "https://push.example.com/a/B?c=D",
            "HTTPS://Push.Example.COM/a/B?c=D",
            "https://push.example.com:443/a/B?c=D",
            "https://push.example.com/a/B?c=D#fragment",
        ];
        for endpoint in same {
            assert_eq!(
                normalize(endpoint).map(String::from).as_deref(),
                Ok("https://push.example.com/a/B?c=D"),
                "{endpoint}"
            );
        }
        assert_eq!(
            normalize("https://push.example.com")
                .map(String::from)
                .as_deref(),
            Ok("https://push.example.com/")
        );
        assert_eq!(
            normalize("https://bücher.example/x")
                .map(String::from)
                .as_deref(),
            Ok("https://xn--bcher-kva.example/x")
        );
        assert_ne!(
            normalize("https://push.example.com/a").map(String::from),
            normalize("https://push.example.com/A").map(String::from),
            "paths are case-sensitive"
        );
    }
}

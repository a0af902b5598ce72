//! The DNS resolver of the push client: it resolves a push service's host and hands the
//! connector only the public addresses among the answers.
//!
//! Filtering here, not before the request, is what makes the check hold for the address the
//! connection is actually made to: a host checked first and resolved again by the client
//! could answer differently the second time (DNS rebinding).

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::address::is_public;

/// The error a name that resolved only to non-public addresses fails with. The sender finds
/// it in the request error's source chain to tell it from an ordinary DNS failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{host} resolves to no public address (only {addresses})")]
pub struct NoPublicAddress {
    pub host: String,
    /// What the name resolved to, for the log.
    pub addresses: String,
}

/// Resolves with `lookup` (or the system resolver) and keeps only public addresses, unless
/// private ones are allowed.
#[derive(Clone)]
pub(crate) struct GuardedResolver {
    pub(super) allow_private: bool,
    pub(super) lookup: Option<Arc<dyn Resolve>>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let lookup = self.lookup.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = match lookup {
                Some(lookup) => lookup.resolve(name).await?.collect(),
                // The port is replaced by the URL's; getaddrinfo on a blocking thread.
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            let allowed = keep_allowed(&found, allow_private);
            if allowed.is_empty() && !found.is_empty() {
                let addresses = found
                    .iter()
                    .map(|addr| addr.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(NoPublicAddress { host, addresses }.into());
            }
            // An empty answer stays an ordinary (transient) resolution failure.
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// The addresses a push may connect to.
fn keep_allowed(found: &[SocketAddr], allow_private: bool) -> Vec<SocketAddr> {
    found
        .iter()
        .copied()
        .filter(|addr| allow_private || is_public(addr.ip()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Answers from a fixed table, as a test's DNS.
    struct Table(HashMap<&'static str, Vec<SocketAddr>>);

    impl Resolve for Table {
        fn resolve(&self, name: Name) -> Resolving {
            let found = self.0.get(name.as_str()).cloned().unwrap_or_default();
            Box::pin(async move { Ok(Box::new(found.into_iter()) as Addrs) })
        }
    }

    fn addr(text: &str) -> SocketAddr {
        SocketAddr::new(text.parse().expect("an IP address"), 0)
    }

    fn resolver(allow_private: bool) -> GuardedResolver {
        let table = Table(HashMap::from([
            (
                "mixed.example",
                vec![addr("127.0.0.1"), addr("8.8.8.8"), addr("::1")],
            ),
            ("internal.example", vec![addr("10.0.0.1"), addr("fd00::1")]),
            ("metadata.example", vec![addr("::ffff:169.254.169.254")]),
            ("nothing.example", vec![]),
        ]));
        GuardedResolver {
            allow_private,
            lookup: Some(Arc::new(table)),
        }
    }

    async fn resolve(resolver: &GuardedResolver, host: &str) -> Result<Vec<SocketAddr>, String> {
        let name: Name = host.parse().expect("a DNS name");
        resolver
            .resolve(name)
            .await
            .map(Iterator::collect)
            .map_err(|err| match err.downcast_ref::<NoPublicAddress>() {
                Some(refused) => format!("refused: {refused}"),
                None => format!("failed: {err}"),
            })
    }

    #[tokio::test]
    async fn only_public_answers_are_kept() {
        let guarded = resolver(false);
        assert_eq!(
            resolve(&guarded, "mixed.example").await,
            Ok(vec![addr("8.8.8.8")])
        );
        for host in ["internal.example", "metadata.example"] {
            let refused = resolve(&guarded, host).await.unwrap_err();
            assert!(refused.starts_with("refused:"), "{host}: {refused}");
        }
        let failed = resolve(&guarded, "nothing.example").await;
        assert_eq!(failed, Ok(vec![]), "an empty answer is not a refusal");
    }

    #[tokio::test]
    async fn private_answers_are_kept_when_allowed() {
        let open = resolver(true);
        assert_eq!(
            resolve(&open, "internal.example").await,
            Ok(vec![addr("10.0.0.1"), addr("fd00::1")])
        );
        assert_eq!(
            resolve(&open, "mixed.example").await.map(|a| a.len()),
            Ok(3)
        );
    }
}

//! Where the broker listens besides `127.0.0.1`: host addresses a sandbox reaches the
//! host at, such as the Docker default bridge's gateway (`docker0`, what
//! `host.docker.internal` maps to), asked for by the start that needs them and bound
//! on the broker's one port. Never a wildcard (`0.0.0.0`, `::`), never multicast or
//! broadcast; an address that is not this host's fails to bind. The addresses are
//! kept in the daemon's state so a restarted daemon listens there again.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};

use git_broker::{Broker, BrokerError};
use tokio::task::JoinHandle;

use crate::app::{Error, Result};

/// The broker's listeners beyond loopback, by address.
pub(super) struct Listeners {
    broker: Broker,
    port: u16,
    serving: Mutex<BTreeMap<IpAddr, JoinHandle<std::result::Result<(), BrokerError>>>>,
}

impl Listeners {
    pub(super) fn new(broker: Broker, port: u16) -> Self {
        Self {
            broker,
            port,
            serving: Mutex::new(BTreeMap::new()),
        }
    }

    /// Makes the broker answer on each of `addrs` (at its port) too; loopback ones are
    /// already served. Returns the addresses bound by this call.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a wildcard, multicast or broadcast address;
    /// [`Error::Io`] when an address cannot be bound (not this host's, or the port is
    /// taken there). Must run inside the tokio runtime.
    pub(super) fn ensure(&self, addrs: &[IpAddr]) -> Result<Vec<IpAddr>> {
        let mut bound = Vec::new();
        let mut serving = self.lock();
        for &addr in addrs {
            check(addr)?;
            if addr.is_loopback() || serving.get(&addr).is_some_and(|h| !h.is_finished()) {
                continue;
            }
            let at = SocketAddr::new(addr, self.port);
            let listener = std::net::TcpListener::bind(at)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .and_then(tokio::net::TcpListener::from_std)
                .map_err(|e| Error::io(format!("listening on {at} for sandboxes"), e))?;
            serving.insert(addr, self.broker.spawn(listener));
            tracing::info!(address = %at, "broker listening");
            bound.push(addr);
        }
        Ok(bound)
    }

    /// The addresses served besides loopback.
    pub(super) fn addresses(&self) -> Vec<IpAddr> {
        self.lock()
            .iter()
            .filter(|(_, h)| !h.is_finished())
            .map(|(a, _)| *a)
            .collect()
    }

    /// Stops every listener of this set.
    pub(super) fn stop(&self) {
        for (_, h) in std::mem::take(&mut *self.lock()) {
            h.abort();
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<IpAddr, JoinHandle<std::result::Result<(), BrokerError>>>>
    {
        self.serving.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Refuses addresses that would expose the broker beyond one interface.
fn check(addr: IpAddr) -> Result<()> {
    let wide = match addr {
        IpAddr::V4(a) => a.is_unspecified() || a.is_multicast() || a == Ipv4Addr::BROADCAST,
        IpAddr::V6(a) => a.is_unspecified() || a.is_multicast(),
    };
    if wide {
        return Err(Error::InvalidInput(format!(
            "the broker listens on single host addresses only, not {addr}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    #[test]
    fn wildcards_and_multicast_are_refused() {
        for a in [
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            IpAddr::V4(Ipv4Addr::BROADCAST),
            IpAddr::V4(Ipv4Addr::new(224, 0, 0, 1)),
        ] {
            assert!(check(a).is_err(), "{a}");
        }
        assert!(check(IpAddr::V4(Ipv4Addr::new(172, 17, 0, 1))).is_ok());
    }

    #[tokio::test]
    async fn an_address_of_another_host_is_not_bound() {
        let broker = Broker::new().expect("broker");
        let l = Listeners::new(broker, 0);
        // TEST-NET-2: no interface of this host has it
        let err = l.ensure(&[IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))]);
        assert!(err.is_err());
        assert!(l.addresses().is_empty());
    }
}

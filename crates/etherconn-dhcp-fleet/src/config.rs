//! [`FleetConfig`]: the settings of a fleet, which the fleet runs by and its report describes.

use std::time::Duration;

use etherconn_core::wire::MacAddr;

use crate::client::Timing;
use crate::plan::VlanPlan;

/// The longest wait of any kind a fleet takes (a day).
const MAX_WAIT: Duration = Duration::from_secs(86_400);

/// Settings of a [`Fleet`](crate::Fleet).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FleetConfig {
    /// Number of clients. Default 1,000.
    pub clients: usize,
    /// Most clients between their first DISCOVER and their end (bound or failed) at once.
    /// Default 64. A server's socket buffer holds a few hundred requests: a fleet that
    /// starts thousands at once loses most of them and waits out retransmission timers.
    pub window: usize,
    /// Most client starts per second (`None`: as fast as the window allows).
    pub rate: Option<f64>,
    /// The VLAN stack of each client. Default untagged.
    pub vlans: VlanPlan,
    /// Set the BOOTP broadcast flag, asking servers to broadcast their replies (default on).
    /// Off, a server unicasts to the offered address and the client's MAC, which makes a
    /// kernel-based server add one neighbour entry per client.
    pub broadcast_flag: bool,
    /// Wait for a reply after the first transmission of a message; doubled after each
    /// retransmission up to `max_rto`. Default 1 s.
    pub rto: Duration,
    /// Upper bound of the retransmission wait. Default 4 s.
    pub max_rto: Duration,
    /// Retransmissions of one message before giving up on it (DISCOVER: the client fails;
    /// REQUEST: it restarts at DISCOVER). Default 4.
    pub retries: u32,
    /// Restarts at DISCOVER (after a NAK or an unanswered REQUEST) before a client fails.
    /// Default 8.
    pub max_restarts: u32,
    /// Longest one client may take from its first DISCOVER to its ACK. Default 30 s.
    pub client_timeout: Duration,
    /// Client `i` has MAC [`client_mac`](crate::client_mac)`(mac_seed, i)`. Default 0.
    pub mac_seed: u64,
    /// MAC of the fleet's receiving conn (registered as the relay's default conn; clients
    /// never have it, since their first octet is `0x02`). Default `06:00:00:00:00:00`.
    pub receiver_mac: MacAddr,
    /// Depth of the receiving conn's queue, in frames. Default 8,192.
    pub queue_depth: usize,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            clients: 1000,
            window: 64,
            rate: None,
            vlans: VlanPlan::untagged(),
            broadcast_flag: true,
            rto: Duration::from_secs(1),
            max_rto: Duration::from_secs(4),
            retries: 4,
            max_restarts: 8,
            client_timeout: Duration::from_secs(30),
            mac_seed: 0,
            receiver_mac: MacAddr([0x06, 0, 0, 0, 0, 0]),
            queue_depth: 8192,
        }
    }
}

impl FleetConfig {
    /// These settings with `n` clients.
    pub fn clients(mut self, n: usize) -> Self {
        self.clients = n;
        self
    }

    /// These settings with a window of `w` clients in flight.
    pub fn window(mut self, w: usize) -> Self {
        self.window = w;
        self
    }

    /// These settings with the VLAN plan.
    pub fn vlans(mut self, plan: VlanPlan) -> Self {
        self.vlans = plan;
        self
    }

    /// These settings with the broadcast flag on or off.
    pub fn broadcast_flag(mut self, on: bool) -> Self {
        self.broadcast_flag = on;
        self
    }

    /// These settings with the first retransmission wait and its upper bound.
    pub fn rto(mut self, first: Duration, max: Duration) -> Self {
        self.rto = first;
        self.max_rto = max;
        self
    }

    /// These settings with the retransmission and restart limits.
    pub fn retries(mut self, retries: u32, max_restarts: u32) -> Self {
        self.retries = retries;
        self.max_restarts = max_restarts;
        self
    }

    /// These settings with the per-client deadline.
    pub fn client_timeout(mut self, t: Duration) -> Self {
        self.client_timeout = t;
        self
    }

    /// These settings with a start rate limit (clients per second).
    pub fn rate(mut self, per_sec: Option<f64>) -> Self {
        self.rate = per_sec;
        self
    }

    /// These settings with the MAC seed.
    pub fn mac_seed(mut self, seed: u64) -> Self {
        self.mac_seed = seed;
        self
    }

    pub(crate) fn timing(&self) -> Timing {
        Timing {
            rto: self.rto,
            max_rto: self.max_rto.max(self.rto),
            retries: self.retries,
            max_restarts: self.max_restarts,
            deadline: self.client_timeout,
        }
    }

    /// What is wrong with these settings, if anything.
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        if self.window == 0 {
            return Err("the window must be at least 1");
        }
        if self.rto.is_zero() || self.client_timeout.is_zero() {
            return Err("retransmission wait and client timeout must be above zero");
        }
        if self.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return Err("the rate must be a positive number");
        }
        // Longer waits would overflow the `Instant` arithmetic of the run (a panic), and no
        // DHCP exchange needs them.
        let start_gap = self.rate.map_or(0.0, |r| 1.0 / r);
        if [self.rto, self.max_rto, self.client_timeout]
            .iter()
            .any(|&d| d > MAX_WAIT)
            || start_gap > MAX_WAIT.as_secs_f64()
        {
            return Err("waits, the client timeout and the time between starts are at most a day");
        }
        if self.clients > u32::MAX as usize {
            return Err("at most 2^32 - 1 clients");
        }
        if self.receiver_mac.0[0] == 0x02 || !self.receiver_mac.is_unicast() {
            return Err("the receiver MAC must be unicast and outside the clients' 02:.. range");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks() {
        assert!(FleetConfig::default().check().is_ok());
        assert!(FleetConfig::default().window(0).check().is_err());
        assert!(FleetConfig::default().rate(Some(f64::NAN)).check().is_err());
        assert!(FleetConfig::default().rate(Some(1e-300)).check().is_err());
        assert!(FleetConfig::default()
            .rate(Some(1.0 / 86_400.0))
            .check()
            .is_ok());
        let day = Duration::from_secs(86_400);
        assert!(FleetConfig::default().client_timeout(day).check().is_ok());
        assert!(FleetConfig::default()
            .client_timeout(Duration::MAX)
            .check()
            .is_err());
        assert!(FleetConfig::default()
            .rto(Duration::from_secs(1), day + Duration::from_nanos(1))
            .check()
            .is_err());
    }
}

//! [`NeighbourConfig`] and [`NeighbourStats`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Options of a [`Neighbours`](crate::Neighbours) responder and resolver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct NeighbourConfig {
    /// How long a learned MAC is used without confirmation. Past it, the entry is still used
    /// while up to `max_requests` unicast requests confirm it (as a host probes a stale
    /// neighbour); with no answer it is forgotten. Default 60 s.
    pub lifetime: Duration,
    /// Time between two requests for an address that does not answer. Default 1 s.
    pub retry_interval: Duration,
    /// Requests sent for an address before its resolution fails. Default 3.
    pub max_requests: u32,
    /// How long a send to an address not yet known waits for its resolution (the send then
    /// fails with `AddrNotAvailable`); zero: do not wait, fail at once and let a later send
    /// find the answer. Default 3 s.
    pub resolve_wait: Duration,
    /// Send a gratuitous ARP request (IPv4) or an unsolicited neighbour advertisement to all
    /// nodes (IPv6) when an address is added, so that peers update their caches at once.
    /// Default off.
    pub announce: bool,
    /// Answer ICMP and ICMPv6 echo requests (ping) to the addresses held. Default on.
    pub answer_echo: bool,
    /// Depth of the responder's queue, which every endpoint's ARP and ICMP frames share.
    /// Default 4096.
    pub queue_depth: usize,
    /// The sender of a request for one of the addresses held is cached without being asked
    /// for (the answer goes to it, and the endpoint will likely answer it too), as a host does,
    /// while fewer than this many addresses are cached: forged requests cannot fill memory.
    /// Addresses an endpoint resolves are cached whatever this says. Default 1,048,576.
    pub max_unasked: usize,
}

impl Default for NeighbourConfig {
    fn default() -> Self {
        NeighbourConfig {
            lifetime: Duration::from_secs(60),
            retry_interval: Duration::from_secs(1),
            max_requests: 3,
            resolve_wait: Duration::from_secs(3),
            announce: false,
            answer_echo: true,
            queue_depth: 4096,
            max_unasked: 1 << 20,
        }
    }
}

impl NeighbourConfig {
    /// These options with the lifetime of a learned MAC.
    pub fn lifetime(mut self, d: Duration) -> Self {
        self.lifetime = d;
        self
    }

    /// These options with the time between two requests.
    pub fn retry_interval(mut self, d: Duration) -> Self {
        self.retry_interval = d;
        self
    }

    /// These options with the number of requests before a resolution fails.
    pub fn max_requests(mut self, n: u32) -> Self {
        self.max_requests = n;
        self
    }

    /// These options with the wait of a send for an unknown address.
    pub fn resolve_wait(mut self, d: Duration) -> Self {
        self.resolve_wait = d;
        self
    }

    /// These options with `announce` set.
    pub fn announce(mut self, on: bool) -> Self {
        self.announce = on;
        self
    }

    /// These options with `answer_echo` set.
    pub fn answer_echo(mut self, on: bool) -> Self {
        self.answer_echo = on;
        self
    }

    /// These options with the most addresses cached unasked.
    pub fn max_unasked(mut self, n: usize) -> Self {
        self.max_unasked = n;
        self
    }

    /// These options with the responder's queue depth.
    pub fn queue_depth(mut self, depth: usize) -> Self {
        self.queue_depth = depth;
        self
    }
}

/// What a [`Neighbours`](crate::Neighbours) did, counted since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct NeighbourStats {
    /// ARP requests answered.
    pub arp_replies: u64,
    /// Neighbour solicitations answered with an advertisement.
    pub na_replies: u64,
    /// Echo requests (ICMP, ICMPv6) answered.
    pub echo_replies: u64,
    /// Gratuitous ARP requests and unsolicited advertisements sent.
    pub announcements: u64,
    /// ARP requests and neighbour solicitations sent to resolve an address (retries and
    /// confirmations of stale entries included).
    pub requests: u64,
    /// Answers learned (a MAC for an address being resolved, or a known one confirmed).
    pub learned: u64,
    /// Resolutions that got no answer.
    pub failed: u64,
    /// Frames the responder took and left unanswered: requests for addresses it does not
    /// hold, answers it did not ask for, malformed or forged messages (a group sender MAC, a
    /// hop limit other than 255), and other ICMP.
    pub ignored: u64,
    /// Answers or requests that could not be sent (transmit path full).
    pub send_errors: u64,
    /// Addresses answered for now.
    pub addresses: u64,
    /// Remote addresses in the cache now.
    pub cached: u64,
}

impl fmt::Display for NeighbourStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arp_replies={} na_replies={} echo_replies={} announcements={} requests={} \
             learned={} failed={} ignored={} send_errors={} addresses={} cached={}",
            self.arp_replies,
            self.na_replies,
            self.echo_replies,
            self.announcements,
            self.requests,
            self.learned,
            self.failed,
            self.ignored,
            self.send_errors,
            self.addresses,
            self.cached
        )
    }
}

/// The live counters behind [`NeighbourStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) arp_replies: AtomicU64,
    pub(crate) na_replies: AtomicU64,
    pub(crate) echo_replies: AtomicU64,
    pub(crate) announcements: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) learned: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) ignored: AtomicU64,
    pub(crate) send_errors: AtomicU64,
}

impl Counters {
    /// Adds one.
    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot (without the table sizes).
    pub(crate) fn snapshot(&self) -> NeighbourStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NeighbourStats {
            arp_replies: g(&self.arp_replies),
            na_replies: g(&self.na_replies),
            echo_replies: g(&self.echo_replies),
            announcements: g(&self.announcements),
            requests: g(&self.requests),
            learned: g(&self.learned),
            failed: g(&self.failed),
            ignored: g(&self.ignored),
            send_errors: g(&self.send_errors),
            addresses: 0,
            cached: 0,
        }
    }
}

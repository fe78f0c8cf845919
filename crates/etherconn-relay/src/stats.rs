//! Relay counters: updated with relaxed atomics on the hot path, read as a [`RelayStats`]
//! snapshot.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use super::stripe::{self, Padded, STRIPES};
use etherconn_core::classify::Invalid;

macro_rules! counters {
    (
        $($(#[doc = $doc:literal])* $name:ident,)*
        ;
        $($(#[doc = $xdoc:literal])* $xname:ident,)*
    ) => {
        /// Live counters of a relay: one stripe of them. Each thread updates its own stripe
        /// ([`StripedCounters::local`]); a snapshot sums all stripes.
        #[derive(Debug, Default)]
        pub struct RelayCounters {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
        }

        /// A snapshot of a relay's counters.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct RelayStats {
            $($(#[doc = $doc])* pub $name: u64,)*
            $($(#[doc = $xdoc])* pub $xname: u64,)*
        }

        impl RelayCounters {
            /// Reads every counter of this stripe.
            pub fn snapshot(&self) -> RelayStats {
                RelayStats {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                    $($xname: 0,)*
                }
            }
        }

        impl core::ops::AddAssign for RelayStats {
            fn add_assign(&mut self, other: RelayStats) {
                $(self.$name += other.$name;)*
                $(self.$xname += other.$xname;)*
            }
        }

        impl fmt::Display for RelayStats {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut first = true;
                $(
                    if !first { f.write_str(" ")?; }
                    first = false;
                    write!(f, "{}={}", stringify!($name), self.$name)?;
                )*
                $(
                    if !first { f.write_str(" ")?; }
                    first = false;
                    write!(f, "{}={}", stringify!($xname), self.$xname)?;
                )*
                let _ = first;
                Ok(())
            }
        }
    };
}

counters! {
    /// Frames handed to the backend for sending.
    tx,
    /// Frames the backend failed to send.
    tx_errors,
    /// Frames received from the backend, before any check.
    rx_offered,
    /// Frames dropped as malformed, truncated or with a bad checksum.
    rx_invalid,
    /// Of `rx_invalid`, those with a bad IPv4 or UDP checksum.
    rx_bad_checksum,
    /// Frames dropped because their source MAC is a group (multicast or broadcast) address:
    /// IEEE 802 sources are individual addresses, and a reply to a group reaches every
    /// station. Unless `DispatcherConfig::accept_group_source` is on.
    rx_group_source,
    /// IP fragments received (delivered at L2, never as UDP datagrams).
    rx_fragments,
    /// Frames put on a conn's receive queue by exact key match.
    rx_delivered,
    /// Frames given to the default conn (no match, or mirrored).
    rx_to_default,
    /// Broadcast/multicast frames given to receive-multicast conns (counted per conn).
    rx_multicast_delivered,
    /// Broadcast/multicast frames no conn wanted.
    rx_multicast_ignored,
    /// Unicast frames that matched no key and had no default conn.
    rx_miss,
    /// UDP datagrams for a shared L2 endpoint that no UDP endpoint on it registered.
    rx_l4_miss,
    /// UDP datagrams a conn that takes only what a host would take (`RxQueue::set_drop_martians`:
    /// `RUdpConn` and `SharingRUdpConn` by default) did not get: a martian source or
    /// destination address or port 0 (`etherconn_core::martian`). Counted once per conn that
    /// refused it: a broadcast refused by three conns counts three.
    rx_martian,
    /// Frames dropped because the conn's queue was full.
    rx_queue_full,
    /// Frames dropped because no receive buffer was free.
    rx_no_buffer,
    /// Frames the backend lost before the relay saw them (AF_PACKET ring full, AF_XDP ring
    /// full), as the kernel reports them.
    rx_backend_dropped,
    ;
    // Kept by the relay's capture, not in these stripes; a snapshot of the dispatcher fills
    // them in.
    /// Frames handed to the relay's capture writer (zero without a capture).
    captured,
    /// Frames the capture writer had no room for: sent or received, but not in the file.
    capture_dropped,
}

impl RelayCounters {
    /// Adds one to a counter.
    #[inline]
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an invalid frame.
    #[inline]
    pub fn count_invalid(&self, why: &Invalid) {
        Self::bump(&self.rx_invalid);
        if matches!(why, Invalid::BadChecksum { .. }) {
            Self::bump(&self.rx_bad_checksum);
        }
    }
}

/// A relay's counters, striped per thread so that relay threads and senders on different cores
/// do not write the same cache lines for every frame.
#[derive(Debug)]
pub struct StripedCounters {
    stripes: [Padded<RelayCounters>; STRIPES],
}

impl Default for StripedCounters {
    fn default() -> Self {
        StripedCounters {
            stripes: core::array::from_fn(|_| Padded::default()),
        }
    }
}

impl StripedCounters {
    /// The calling thread's stripe: the one to update.
    #[inline]
    pub fn local(&self) -> &RelayCounters {
        &self.stripes[stripe::index()].0
    }

    /// The sum of every stripe.
    pub fn snapshot(&self) -> RelayStats {
        let mut total = RelayStats::default();
        for s in &self.stripes {
            total += s.0.snapshot();
        }
        total
    }
}

//! [`EtherConn`]: one L2 endpoint (a MAC, a VLAN stack and a set of EtherTypes) on a relay.

use core::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use std::vec::Vec;

use crate::budget::{MemoryBudget, Reservation};
use crate::dispatch::demux::L4Demux;
use crate::dispatch::table::{ConnEntry, NeighbourTap};
use crate::error::RelayError;
use crate::queue::{RxFrame, RxQueue};
use crate::ready::{Watchable, WatchedQueue};
use crate::relay::PacketRelay;
use crate::timeouts::Timeouts;
use etherconn_core::build::{build_ethernet_frame, BuildError, L2Header};
use etherconn_core::key::{L2EndpointKey, VlanIds};
use etherconn_core::wire::vlan::{VlanStack, MAX_TAGS};
use etherconn_core::wire::{EtherType, MacAddr, VlanTag};

/// Options for [`EtherConn::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EtherConnConfig {
    /// EtherTypes to receive (one key is registered per EtherType). Default: ARP, IPv4, IPv6.
    pub ethertypes: Vec<EtherType>,
    /// Also receive broadcast/multicast frames on this VLAN stack and these EtherTypes.
    pub recv_multicast: bool,
    /// Be the relay's default conn: receive unicast frames no other key matches.
    pub default_conn: bool,
    /// Take over keys (and the default role) other conns hold instead of failing.
    pub replace: bool,
    /// Frames the receive queue holds before new ones are dropped (and counted); at least 1.
    pub queue_depth: usize,
    /// Demultiplex received UDP datagrams to the queues registered in
    /// [`EtherConn::l4_demux`] (by local IP and port) instead of this conn's own queue, which
    /// then receives only non-UDP frames. What `SharedEtherConn` is built on.
    pub l4_demux: bool,
}

impl Default for EtherConnConfig {
    fn default() -> Self {
        EtherConnConfig {
            ethertypes: vec![EtherType::ARP, EtherType::IPV4, EtherType::IPV6],
            recv_multicast: false,
            default_conn: false,
            replace: false,
            queue_depth: 64,
            l4_demux: false,
        }
    }
}

impl EtherConnConfig {
    /// These options with the given EtherTypes.
    pub fn ethertypes(mut self, ethertypes: &[EtherType]) -> Self {
        self.ethertypes = ethertypes.to_vec();
        self
    }

    /// These options with `recv_multicast` set.
    pub fn recv_multicast(mut self, on: bool) -> Self {
        self.recv_multicast = on;
        self
    }

    /// These options with `default_conn` set.
    pub fn default_conn(mut self, on: bool) -> Self {
        self.default_conn = on;
        self
    }

    /// These options with `replace` set.
    pub fn replace(mut self, on: bool) -> Self {
        self.replace = on;
        self
    }

    /// These options with `l4_demux` set.
    pub fn l4_demux(mut self, on: bool) -> Self {
        self.l4_demux = on;
        self
    }

    /// These options with the given queue depth.
    pub fn queue_depth(mut self, depth: usize) -> Self {
        self.queue_depth = depth;
        self
    }
}

/// The sender of a received frame, as seen at L2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct L2Peer {
    /// Source MAC.
    pub mac: MacAddr,
    /// The VLAN tags the frame carried, outermost first.
    pub vlans: VlanStack,
    /// EtherType after the last tag.
    pub ethertype: EtherType,
}

impl fmt::Display for L2Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.mac)?;
        for t in self.vlans.as_slice() {
            write!(f, "|{}", t.id)?;
        }
        write!(f, "#{}", self.ethertype)
    }
}

/// An L2 endpoint: sends frames from its MAC with its VLAN stack, and receives the frames
/// addressed to its MAC on that stack for its EtherTypes.
///
/// Shaped like [`std::net::UdpSocket`]: `&self` methods, usable from several threads, read and
/// write timeouts, non-blocking mode. Dropping it deregisters its keys.
pub struct EtherConn {
    relay: Arc<dyn PacketRelay>,
    entry: Arc<ConnEntry>,
    mac: MacAddr,
    vlans: VlanStack,
    keys: Vec<L2EndpointKey>,
    timeouts: Timeouts,
    /// The queue's share of the relay's memory budget, given back when the conn drops.
    _budget: Reservation,
}

impl fmt::Debug for EtherConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtherConn")
            .field("mac", &self.mac)
            .field("keys", &self.keys)
            .finish()
    }
}

impl EtherConn {
    /// Registers an endpoint for `mac` and `vlans` (outermost first, at most three) on `relay`.
    ///
    /// Fails with [`RelayError::KeyInUse`] when another conn holds one of its keys and
    /// `config.replace` is off, [`RelayError::DefaultInUse`] likewise for the default role;
    /// [`RelayError::NotStationMac`] for a group (multicast, broadcast) or all-zero `mac`;
    /// [`RelayError::EtherTypeFiltered`] for an EtherType the relay's kernel filter drops
    /// ([`PacketRelay::receives`]); [`RelayError::InvalidConfig`] for more than three tags, a tag
    /// with the reserved VLAN id 4095, no EtherType or a queue depth of 0; and
    /// [`RelayError::OverBudget`] when its queue (`config.queue_depth` frames) would take the
    /// relay past its [`MemoryBudget`] (checked before anything is allocated).
    ///
    /// VLAN id 0 is accepted: it marks a priority-tagged frame (no VLAN, a PCP), which some
    /// access networks require.
    pub fn new(
        relay: Arc<dyn PacketRelay>,
        mac: MacAddr,
        vlans: &[VlanTag],
        config: EtherConnConfig,
    ) -> Result<EtherConn, RelayError> {
        check_endpoint(&*relay, mac, vlans, &config)?;
        let stack = VlanStack::from_slice(vlans)
            .map_err(|_| RelayError::InvalidConfig(etherconn_core::wire::vlan::TOO_MANY_TAGS))?;
        let ids = VlanIds::from_stack(&stack);
        let mut keys: Vec<L2EndpointKey> = config
            .ethertypes
            .iter()
            .map(|&et| L2EndpointKey::new(mac, ids, et))
            .collect();
        keys.dedup();
        let dispatcher = relay.dispatcher();
        if dispatcher.is_stopped() {
            return Err(RelayError::Stopped);
        }
        let reservation = dispatcher
            .budget()
            .reserve(MemoryBudget::conn_cost(config.queue_depth))?;
        let entry = if config.l4_demux {
            ConnEntry::with_l4(config.queue_depth, config.recv_multicast)
        } else {
            ConnEntry::new(config.queue_depth, config.recv_multicast)
        };
        dispatcher.register(&keys, &entry, config.replace)?;
        if config.default_conn {
            if let Err(e) = dispatcher.set_default(&entry, config.replace) {
                dispatcher.deregister(&keys, &entry);
                return Err(e);
            }
        }
        Ok(EtherConn {
            relay,
            entry,
            mac,
            vlans: stack,
            keys,
            timeouts: Timeouts::default(),
            _budget: reservation,
        })
    }

    /// The endpoint's MAC.
    pub fn local_mac(&self) -> MacAddr {
        self.mac
    }

    /// The endpoint's VLAN stack.
    pub fn vlans(&self) -> &[VlanTag] {
        self.vlans.as_slice()
    }

    /// The keys registered for this endpoint.
    pub fn keys(&self) -> &[L2EndpointKey] {
        &self.keys
    }

    /// The relay this endpoint is on.
    pub fn relay(&self) -> &Arc<dyn PacketRelay> {
        &self.relay
    }

    /// The largest payload [`send_to`](Self::send_to) takes: the link's MTU on this conn's
    /// VLAN stack, or less when the relay's buffers are smaller
    /// ([`PacketRelay::size_limit`]).
    ///
    /// ```
    /// use etherconn_core::wire::{EtherType, VlanTag};
    /// use etherconn_relay::{EtherConn, EtherConnConfig, LoopbackRelay};
    ///
    /// let relay = LoopbackRelay::new(Default::default()); // a 1500-byte MTU link
    /// let vlans = [VlanTag::dot1q(100).unwrap()];
    /// let conn = EtherConn::new(relay, "02:00:00:00:00:01".parse()?, &vlans, Default::default())?;
    /// assert_eq!(conn.max_payload(), 1500); // an 802.1Q tag rides on top of the MTU
    /// let e = conn
    ///     .send_to(&[0; 3000], EtherType(0x88b5), "02:00:00:00:00:02".parse()?)
    ///     .unwrap_err();
    /// assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    /// assert_eq!(
    ///     e.to_string(),
    ///     "payload of 3000 bytes does not fit one frame: at most 1500 bytes fit after the \
    ///      Ethernet header and one VLAN tag (the interface MTU of 1500 bytes); nothing is \
    ///      fragmented"
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_payload(&self) -> usize {
        self.relay.size_limit(self.vlans.as_slice()).payload()
    }

    /// Sends `payload` as one frame of `ethertype` to `dst_mac`, from this endpoint's MAC and
    /// VLAN stack; returns the payload length. Frames shorter than 60 bytes are padded.
    ///
    /// A payload over [`max_payload`](Self::max_payload) is refused before anything is built,
    /// with `InvalidInput` carrying [`RelayError::TooLarge`].
    pub fn send_to(
        &self,
        payload: &[u8],
        ethertype: EtherType,
        dst_mac: MacAddr,
    ) -> io::Result<usize> {
        self.send_to_from(payload, ethertype, dst_mac, self.mac, self.vlans.as_slice())
    }

    /// Like [`send_to`](Self::send_to) with this call's own source MAC and VLAN stack.
    pub fn send_to_from(
        &self,
        payload: &[u8],
        ethertype: EtherType,
        dst_mac: MacAddr,
        src_mac: MacAddr,
        vlans: &[VlanTag],
    ) -> io::Result<usize> {
        if vlans.len() <= MAX_TAGS {
            let limit = self.relay.size_limit(vlans);
            if payload.len() > limit.payload() {
                return Err(RelayError::TooLarge {
                    len: payload.len(),
                    limit,
                }
                .into());
            }
        }
        let header = L2Header {
            src_mac,
            dst_mac,
            vlans,
            ethertype,
        };
        self.send_built(|buf| build_ethernet_frame(buf, &header, payload))?;
        Ok(payload.len())
    }

    /// Builds a frame in a pooled buffer with `build` and sends it; the building block of the
    /// UDP layer, which writes IP and UDP headers too.
    pub fn send_built(
        &self,
        build: impl FnOnce(&mut [u8]) -> Result<usize, BuildError>,
    ) -> io::Result<usize> {
        let mut buf = self.relay.dispatcher().tx_buffer().ok_or_else(|| {
            io::Error::new(io::ErrorKind::WouldBlock, "every transmit buffer is in use")
        })?;
        let len = build(&mut buf).map_err(build_error)?;
        self.relay.send(&buf[..len], self.timeouts.write_wait())?;
        Ok(len)
    }

    /// Receives one frame's Ethernet payload (after the last VLAN tag) into `buf`; returns its
    /// length and the sender. Like UDP, bytes that do not fit in `buf` are discarded.
    ///
    /// Errors: `WouldBlock` in non-blocking mode when nothing waits, `TimedOut` when the read
    /// timeout expires, `NotConnected` once the relay stopped.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, L2Peer)> {
        let rx = self.recv_frame()?;
        let payload = rx.payload();
        let n = payload.len().min(buf.len());
        buf[..n].copy_from_slice(&payload[..n]);
        let i = &rx.info;
        Ok((
            n,
            L2Peer {
                mac: i.src_mac,
                vlans: i.vlans(),
                ethertype: i.ethertype(),
            },
        ))
    }

    /// Receives one whole frame without copying it, with the relay's classification.
    pub fn recv_frame(&self) -> io::Result<RxFrame> {
        self.entry.queue.pop(self.timeouts.read_wait())
    }

    /// Takes a frame if one waits, or arranges for the task to be woken when one arrives: the
    /// building block of async receives (one waiting task per conn).
    pub fn poll_recv_frame(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<RxFrame>> {
        self.entry.queue.poll_pop(cx)
    }

    /// Like [`recv_frame`](Self::recv_frame) with this call's own wait instead of the conn's
    /// timeout and non-blocking setting: `None` waits forever, `Some(Duration::ZERO)` does not
    /// wait (`WouldBlock`). For layers above (UDP) that keep their own deadline.
    pub fn recv_frame_timeout(&self, timeout: Option<Duration>) -> io::Result<RxFrame> {
        self.entry.queue.pop(timeout)
    }

    /// Sets the receive timeout (`None`: block forever); a zero duration is an error, as for
    /// `UdpSocket`.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.timeouts.set_read(timeout)
    }

    /// Sets the send timeout (`None`: block forever); a zero duration is an error.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.timeouts.set_write(timeout)
    }

    /// The receive timeout.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.timeouts.read())
    }

    /// The send timeout.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.timeouts.write())
    }

    /// Makes `recv_from` and sends return `WouldBlock` instead of waiting.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.timeouts.set_nonblocking(nonblocking);
        Ok(())
    }

    /// The UDP demultiplexer, when the conn was created with `l4_demux`.
    pub fn l4_demux(&self) -> Option<&L4Demux> {
        self.entry.l4.as_ref()
    }

    /// Sends the ARP, ICMP and ICMPv6 frames this conn receives to `to` instead of its queue;
    /// see [`ConnEntry::divert_neighbour_frames`].
    pub fn divert_neighbour_frames(&self, to: &NeighbourTap) -> Result<(), RelayError> {
        self.entry.divert_neighbour_frames(to)
    }

    /// Frames waiting in the receive queue.
    pub fn queued(&self) -> usize {
        self.entry.queue.len()
    }
}

/// The rules an endpoint obeys before anything is registered or reserved.
fn check_endpoint(
    relay: &dyn PacketRelay,
    mac: MacAddr,
    vlans: &[VlanTag],
    config: &EtherConnConfig,
) -> Result<(), RelayError> {
    if let Some(reason) = mac.station_problem() {
        return Err(RelayError::NotStationMac { mac, reason });
    }
    if vlans.len() > MAX_TAGS {
        return Err(RelayError::InvalidConfig(
            etherconn_core::wire::vlan::TOO_MANY_TAGS,
        ));
    }
    if vlans.iter().any(|t| t.id.is_reserved()) {
        return Err(RelayError::InvalidConfig(
            "VLAN id 4095 is reserved (IEEE 802.1Q): no VLAN carries frames tagged with it",
        ));
    }
    if config.ethertypes.is_empty() {
        return Err(RelayError::InvalidConfig("no EtherType to receive"));
    }
    RxQueue::check_depth(config.queue_depth)?;
    if let Some(&et) = config.ethertypes.iter().find(|&&et| !relay.receives(et)) {
        return Err(RelayError::EtherTypeFiltered(et));
    }
    Ok(())
}

/// Every build error is the caller's input not fitting a frame.
fn build_error(e: BuildError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

/// An `EtherConn` can be waited on with others in a [`ReadySet`](crate::ReadySet).
impl Watchable for EtherConn {
    fn watched_queue(&self) -> WatchedQueue {
        WatchedQueue::new(self.entry.clone())
    }

    fn rx_queue(&self) -> &RxQueue {
        &self.entry.queue
    }
}

impl Drop for EtherConn {
    fn drop(&mut self) {
        self.relay.dispatcher().deregister(&self.keys, &self.entry);
        self.entry.queue.close();
        if let Some(l4) = &self.entry.l4 {
            l4.close_all();
        }
    }
}

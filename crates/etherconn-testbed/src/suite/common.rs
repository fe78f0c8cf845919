//! What every case shares: opening the relay under test, conns, counters, cleanup checks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherconn_core::bpf::Program;
use etherconn_core::build::{build_udp_frame, UdpFrame};
use etherconn_core::wire::{EtherType, MacAddr, Tpid, VlanId, VlanTag};
use etherconn_relay::{
    CaptureConfig, EtherConn, EtherConnConfig, PacketRelay, RelayStats, RxFrame,
};

use crate::{Side, Testbed};

/// How long a case waits for a frame or a counter.
pub const WAIT: Duration = Duration::from_secs(5);

/// The MAC most cases' conns use.
pub const X: &str = "02:ec:00:00:01:01";

/// An EtherType no relay's default filter passes (local experimental), for raw frames.
pub const ET: EtherType = EtherType(0x88b5);

/// A relay backend the suite runs over.
#[derive(Debug, Clone, Copy)]
pub struct Backend {
    /// Two or three letters that go into the namespace names (`ec<tag>-<case>-`), so that
    /// backends' runs never share a name.
    pub tag: &'static str,
    /// Opens a relay with its default settings on the named interface; called from a thread
    /// inside the testbed's namespace `b`.
    pub open: fn(&str) -> Arc<dyn PacketRelay>,
    /// Whether the relay can tell a UDP checksum that a local sender's offload has yet to fill
    /// in (a veth peer's kernel stack) from a bad one (AF_PACKET reports it per frame). When
    /// not, the kernel-stack cases turn the peer's transmit checksum offload off.
    pub sees_partial_checksums: bool,
    /// Whether frames nobody registered reach the relay (and are counted: `rx_miss`,
    /// `rx_multicast_ignored`). An AF_PACKET or libpcap relay sees every frame its filter
    /// passes; the AF_XDP relay's program hands it only frames of registered keys (and, with a
    /// default conn, unicast to other MACs and tagged broadcast) and leaves the rest to the
    /// host, so the cases expect those frames not to be offered at all.
    pub sees_unregistered: bool,
    /// Opens a relay with its default settings that also writes what it sends and receives to
    /// `capture` (its `with_capture`); called like `open`.
    pub open_with_capture: fn(&str, CaptureConfig) -> Arc<dyn PacketRelay>,
    /// The relay's EtherType filter in the kernel; `None` for a relay that receives every
    /// EtherType (the AF_XDP relay's program redirects by registered key, whatever the type).
    pub ethertype_filter: Option<EtherTypeFilter>,
    /// How the relay refuses a hand-built frame past the link's MTU.
    pub oversize: Oversize,
    /// What the relay tells a `tracing` subscriber.
    pub events: Events,
}

/// A relay's EtherType filter in the kernel: how to open the relay with a list of EtherTypes
/// or with a user's filter program instead.
#[derive(Debug, Clone, Copy)]
pub struct EtherTypeFilter {
    /// Opens a relay whose filter passes exactly `ethertypes`.
    pub open_with_ethertypes: fn(&str, &[EtherType]) -> Arc<dyn PacketRelay>,
    /// Opens a relay under the user's filter `program`.
    pub open_with_program: fn(&str, Program) -> Arc<dyn PacketRelay>,
}

/// How a relay refuses a frame past the link's MTU that was built by hand and handed to
/// `PacketRelay::send` (every relay words it in the link's terms and counts a send error).
#[derive(Debug, Clone, Copy)]
pub enum Oversize {
    /// The kernel refuses it with `EMSGSIZE`, passed on as the OS error, whose text ends the
    /// message.
    KernelErrno,
    /// The kernel refuses it through a library that words `EMSGSIZE` itself: the message ends
    /// with this text.
    KernelWords(&'static str),
    /// The relay refuses it before the kernel sees it (no OS error): the kernel would not.
    Relay,
}

/// What a relay tells a `tracing` subscriber, for the lifecycle case.
#[derive(Debug, Clone, Copy)]
pub struct Events {
    /// The relay's name in its lifecycle messages (`"{name} opened"`, `"{name} stopped"`).
    pub name: &'static str,
    /// Opens the relay the case watches, called like `open`. It must receive EtherType [`ET`]
    /// (and IPv4, when the relay does not see unregistered frames).
    pub open: fn(&str) -> Arc<dyn PacketRelay>,
    /// Fields that relay's open event carries, as (name, value).
    pub opened: &'static [(&'static str, &'static str)],
    /// The message of the DEBUG event that says the relay's filter or program is in place,
    /// and its field that must be a positive number.
    pub attached: (&'static str, &'static str),
}

impl Backend {
    /// The namespace prefix of one case.
    pub fn prefix(&self, case: &str) -> String {
        format!("ec{}-{case}-", self.tag)
    }
}

/// The relay under test on `tb.b_if`, opened by a thread inside namespace `b`.
pub fn open_b(backend: &Backend, tb: &Testbed) -> Arc<dyn PacketRelay> {
    open_in(tb, Side::B, backend.open)
}

/// A relay on `side`'s veth end, opened by `open` (given the interface's name) on a thread
/// inside that side's namespace.
pub fn open_in(
    tb: &Testbed,
    side: Side,
    open: impl FnOnce(&str) -> Arc<dyn PacketRelay> + Send,
) -> Arc<dyn PacketRelay> {
    tb.netns(side).run_in(|| open(tb.ifname(side))).unwrap()
}

/// A MAC address from its text form.
pub fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

/// A VLAN tag.
pub fn tag(tpid: Tpid, id: u16) -> VlanTag {
    VlanTag::new(tpid, VlanId::new(id).unwrap())
}

/// A conn on `relay` with the suite's read timeout.
pub fn conn(
    relay: &Arc<dyn PacketRelay>,
    m: MacAddr,
    vlans: &[VlanTag],
    cfg: EtherConnConfig,
) -> EtherConn {
    let c = EtherConn::new(relay.clone(), m, vlans, cfg).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    c
}

/// Sends one UDP datagram from `conn` (its MAC and VLAN stack).
pub fn send_udp(c: &EtherConn, dst_mac: MacAddr, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
    let vlans = c.vlans().to_vec();
    let frame = UdpFrame {
        src_mac: c.local_mac(),
        dst_mac,
        vlans: &vlans,
        src,
        dst,
        ttl: 64,
        dscp: 0,
        payload,
    };
    c.send_built(|buf| build_udp_frame(buf, &frame)).unwrap();
}

/// The UDP payload of a received frame (panics when it is not UDP).
pub fn udp_payload(rx: &RxFrame) -> &[u8] {
    let udp = rx.info.udp().expect("a UDP datagram");
    &rx.frame()[udp.payload.range()]
}

/// Turns IPv6 off on both veth ends, so the kernel sends no link-local noise that counters see.
pub fn quiet(tb: &Testbed) {
    for side in [Side::A, Side::B] {
        let key = format!("net.ipv6.conf.{}.disable_ipv6", tb.ifname(side));
        tb.set_sysctl(side, &key, "1").unwrap();
    }
}

/// Waits (up to `WAIT`) until `pred` holds for the relay's counters.
pub fn wait_stats(
    relay: &Arc<dyn PacketRelay>,
    what: &str,
    pred: impl Fn(&RelayStats) -> bool,
) -> RelayStats {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = relay.stats();
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Fails when a namespace of this process with `prefix` is left behind.
pub fn assert_no_leftovers(prefix: &str) {
    let left = crate::leftover_namespaces(&crate::process_prefix(prefix));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

//! What a `bench` run measures: the backends, the cases in the order they run, and the
//! addresses of the testbed's endpoints.

use std::net::Ipv4Addr;

use etherconn_core::wire::MacAddr;

use crate::cli::{BackendChoice, BenchArgs};

/// Kernel baseline addresses, on the veth ends (they exist only inside the namespaces).
pub(super) const KERNEL_A: Ipv4Addr = Ipv4Addr::new(10, 55, 0, 1);
pub(super) const KERNEL_B: Ipv4Addr = Ipv4Addr::new(10, 55, 0, 2);
/// etherconn endpoints: sender `i` is TX_IP + i with TX_MAC + i, receiver `i` likewise.
pub(super) const TX_IP: Ipv4Addr = Ipv4Addr::new(10, 55, 1, 1);
pub(super) const RX_IP: Ipv4Addr = Ipv4Addr::new(10, 55, 128, 1);
pub(super) const TX_MAC: MacAddr = MacAddr([0x02, 0xec, 0x55, 0x01, 0x00, 0x00]);
pub(super) const RX_MAC: MacAddr = MacAddr([0x02, 0xec, 0x55, 0x02, 0x00, 0x00]);
pub(super) const DST_PORT: u16 = 9000;
pub(super) const SRC_PORT: u16 = 40000;

/// Who moves the datagrams of a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Backend {
    Kernel,
    Rawsock,
    Rudp,
    #[cfg(feature = "pcap")]
    Pcap,
    /// EtherConns on AF_XDP relays serving this many queues.
    #[cfg(feature = "xdp")]
    Xdp(u32),
    /// RUdpConns on AF_XDP relays serving this many queues.
    #[cfg(feature = "xdp")]
    XdpRudp(u32),
}

impl Backend {
    pub(super) fn name(self) -> &'static str {
        match self {
            Backend::Kernel => "kernel",
            Backend::Rawsock => "rawsock",
            Backend::Rudp => "rudp",
            #[cfg(feature = "pcap")]
            Backend::Pcap => "pcap",
            #[cfg(feature = "xdp")]
            Backend::Xdp(1) => "xdp",
            #[cfg(feature = "xdp")]
            Backend::Xdp(_) => "xdp-2q",
            #[cfg(feature = "xdp")]
            Backend::XdpRudp(1) => "xdp-rudp",
            #[cfg(feature = "xdp")]
            Backend::XdpRudp(_) => "xdp-rudp-2q",
        }
    }
}

/// Whether `all` measures `b`: every backend but pcap and the AF_XDP ones, which are asked
/// for by name.
fn in_all(b: BackendChoice) -> bool {
    #[cfg(feature = "pcap")]
    if b == BackendChoice::Pcap {
        return false;
    }
    #[cfg(feature = "xdp")]
    if matches!(b, BackendChoice::Xdp | BackendChoice::XdpRudp) {
        return false;
    }
    b != BackendChoice::All
}

/// One measurement to make.
#[derive(Clone, Copy, Debug)]
pub(super) struct Case {
    pub(super) backend: Backend,
    pub(super) payload: usize,
    pub(super) endpoints: usize,
    /// The receiving relay captures to `--pcap`.
    pub(super) capture: bool,
}

impl Case {
    /// The backend's name, `+pcap` when capturing.
    pub(super) fn name(&self) -> String {
        let plus = if self.capture { "+pcap" } else { "" };
        format!("{}{plus}", self.backend.name())
    }
}

/// The cases of a run, in order: per payload, the kernel baseline, then each etherconn backend
/// at each endpoint count (with `--pcap`, each followed by the same case capturing).
pub(super) fn plan(args: &BenchArgs) -> Vec<Case> {
    let wants = |b: BackendChoice| {
        args.backend
            .iter()
            .any(|&c| c == b || (c == BackendChoice::All && in_all(b)))
    };
    let etherconn: Vec<Backend> = [
        (BackendChoice::Rawsock, Backend::Rawsock),
        (BackendChoice::Rudp, Backend::Rudp),
        #[cfg(feature = "pcap")]
        (BackendChoice::Pcap, Backend::Pcap),
        #[cfg(feature = "xdp")]
        (BackendChoice::Xdp, Backend::Xdp(args.queues)),
        #[cfg(feature = "xdp")]
        (BackendChoice::XdpRudp, Backend::XdpRudp(args.queues)),
    ]
    .into_iter()
    .filter(|&(c, _)| wants(c))
    .map(|(_, b)| b)
    .collect();
    let mut cases = Vec::new();
    for &payload in &args.payload {
        let payload = payload as usize;
        if wants(BackendChoice::Kernel) {
            cases.push(Case {
                backend: Backend::Kernel,
                payload,
                endpoints: 1,
                capture: false,
            });
        }
        for &backend in &etherconn {
            for &endpoints in &args.endpoints {
                for capture in [false, true] {
                    if capture && args.pcap.is_none() {
                        continue;
                    }
                    cases.push(Case {
                        backend,
                        payload,
                        endpoints: endpoints as usize,
                        capture,
                    });
                }
            }
        }
    }
    cases
}

//! The libpcap backend of etherconn: [`PcapRelay`], a [`PacketRelay`](etherconn_relay::PacketRelay) over a live capture
//! handle (libpcap on Linux, npcap on Windows).
//!
//! Where AF_PACKET is available (`etherconn-rawsock`) it is the faster choice; this relay is
//! for systems and setups where a capture library is what there is, and the same code then
//! runs over it: every [`EtherConn`](etherconn_relay::EtherConn), `RUdpConn` and
//! `SharedEtherConn` works over any `PacketRelay`.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use etherconn_core::wire::EtherType;
//! use etherconn_relay::{EtherConn, EtherConnConfig, PacketRelay};
//! use etherconn_pcap::{PcapRelay, PcapRelayConfig};
//!
//! let relay: Arc<dyn PacketRelay> = PcapRelay::new("eth0", PcapRelayConfig::default())?;
//! let cfg = EtherConnConfig::default().ethertypes(&[EtherType::IPV4]);
//! let conn = EtherConn::new(relay.clone(), "02:00:00:00:00:01".parse()?, &[], cfg)?;
//! conn.set_read_timeout(Some(Duration::from_secs(1)))?;
//! let mut buf = [0u8; 1514];
//! match conn.recv_from(&mut buf) {
//!     Ok((n, peer)) => println!("{n} bytes from {peer}"),
//!     Err(e) => println!("nothing: {e}"),
//! }
//! println!("{}", relay.stats());
//! relay.stop();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What it does
//!
//! - **Receive**: one thread, a capture in immediate mode with a bounded wait
//!   ([`PcapRelayConfig::poll_timeout`]), frames delivered in batches through the shared
//!   dispatch table ([`Dispatcher::delivery`](etherconn_relay::Dispatcher::delivery)).
//!   Outgoing frames are not captured (`pcap_setdirection(PCAP_D_IN)`).
//! - **Filter**: the AF_PACKET relay's classic BPF program (`etherconn_core::bpf`), installed
//!   as instructions with `pcap_setfilter` ([`sys`]); on Linux libpcap gives it to the
//!   kernel, which runs it as it does for AF_PACKET. See [`filter`] for npcap.
//! - **VLAN tags**: libpcap on Linux puts the tag the kernel moved out back into the frame.
//! - **Send**: `pcap_sendpacket` on a second handle whose filter takes nothing.
//! - **Sizes**: the interface's MTU, read when the relay is made (`SIOCGIFMTU`, [`sys`]), and
//!   the EtherTypes its filter passes answer
//!   [`PacketRelay::mtu`](etherconn_relay::PacketRelay::mtu) and
//!   [`PacketRelay::receives`](etherconn_relay::PacketRelay::receives), as for the AF_PACKET
//!   relay.
//! - **Capture**: every frame received and sent goes to the dispatcher's pcapng capture when
//!   there is one ([`PcapRelay::with_capture`], or `Dispatcher::start_capture`).
//! - **Counters**: `pcap_stats`' drops (buffer full, interface drops) are folded into
//!   [`RelayStats::rx_backend_dropped`](etherconn_relay::RelayStats::rx_backend_dropped).
//! - **UDP checksums** are always verified: libpcap does not say whether the kernel checked
//!   one, nor whether it is a partial checksum a local sender's offload has yet to fill in
//!   (a veth peer's stack). Turn the peer's transmit checksum offload off
//!   (`ethtool -K <peer> tx off`) or `DispatcherConfig::verify_udp_checksum` off there.
//!
//! # Platforms
//!
//! Built and tested on Linux only. What differs on Windows (npcap) is in [`platform`]; that
//! code has not been compiled or run on Windows by this project.
#![deny(unsafe_code)]

// Module order (each imports only modules before it): sys, platform (sys), error (platform),
// filter (platform), relay (error, filter, platform, sys).
pub mod error;
pub mod filter;
pub mod platform;
pub mod relay;
#[allow(unsafe_code)]
pub mod sys;

pub use error::{Error, Result};
/// The `pcap` crate, for listing devices ([`pcap::Device::list`]).
pub use pcap;
pub use relay::{PcapRelay, PcapRelayConfig};

//! A DHCPv4 client fleet on etherconn: N clients, each with its own MAC and VLAN stack, doing
//! DISCOVER / OFFER / REQUEST / ACK against a real server from one interface, without OS
//! interfaces, and reporting leases, NAKs, retransmissions, failures and setups per second.
//!
//! Each client follows RFC 2131: a transaction id of its own, retransmission with a doubling
//! timeout and a bounded number of tries, a return to DISCOVER after a NAK (or a REQUEST
//! never answered), the broadcast flag set unless turned off. A window bounds how many
//! clients are in flight at once, which is what keeps a server's socket from overflowing
//! (see `docs/dhcp-fleet.md`). The design (one receiving conn for the whole fleet,
//! demultiplexed by xid; each request sent with its client's own MAC and VLANs; two threads
//! in all) is explained in the [`fleet`] module.
//!
//! # Example
//!
//! On an AF_PACKET relay (Linux, root or `CAP_NET_RAW`), a thousand clients on VLAN 100 to 107:
//!
//! ```no_run
//! # #[cfg(target_os = "linux")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use etherconn_core::wire::EtherType;
//! use etherconn_dhcp_fleet::{Fleet, FleetConfig, VlanPlan};
//! use etherconn_rawsock::{RawSocketRelay, RawSocketRelayConfig};
//!
//! let relay = RawSocketRelay::new(
//!     "eth1",
//!     RawSocketRelayConfig::default().ethertypes(&[EtherType::IPV4]),
//! )?;
//! let config = FleetConfig::default()
//!     .clients(1000)
//!     .window(64)
//!     .vlans(VlanPlan::dot1q("100-107".parse()?));
//! let report = Fleet::new(relay.clone(), config)?.run()?;
//! println!("{report}");
//! for lease in &report.leases {
//!     println!("{} {}", lease.mac, lease.ip);
//! }
//! # Ok(())
//! # }
//! # #[cfg(not(target_os = "linux"))]
//! # fn main() {}
//! ```
#![deny(unsafe_code)]

mod client;
mod config;
pub mod fleet;
mod leasefile;
mod mac;
mod message;
mod plan;
mod report;

pub use client::FailReason;
pub use fleet::{Fleet, FleetConfig, FleetError};
pub use leasefile::{check_dnsmasq_lease_file, parse_dnsmasq_leases, LeaseFileCheck};
pub use mac::client_mac;
pub use message::{CLIENT_PORT, SERVER_PORT};
pub use plan::{VlanPlan, VlanRange};
pub use report::{Counters, Failure, FleetReport, Lease, RelayDelta, SetupTimes};

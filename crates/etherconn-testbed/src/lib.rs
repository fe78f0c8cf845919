//! Network-namespace and veth testbeds for etherconn's integration tests, benches and perf tool.
//!
//! Everything here needs root (`CAP_NET_ADMIN` and `CAP_SYS_ADMIN`): a [`Testbed`] is two fresh
//! network namespaces joined by a veth pair, and it removes both namespaces (and with them the
//! pair) when dropped, including while a panic unwinds. Nothing is ever created in the root
//! namespace, so a test cannot disturb the host's interfaces.
//!
//! ```
//! use std::net::UdpSocket;
//! use etherconn_testbed::{Side, Testbed};
//!
//! if !etherconn_testbed::require_root("crate doc example") {
//!     return;
//! }
//! let tb = Testbed::new("ectb-doc-").unwrap();
//! tb.add_addr(Side::A, "10.99.1.1/24").unwrap();
//! tb.add_addr(Side::B, "10.99.1.2/24").unwrap();
//! // A socket belongs to the namespace of the thread that created it.
//! let server = tb.b.run_in(|| UdpSocket::bind("10.99.1.2:0")).unwrap().unwrap();
//! let client = tb.a.run_in(|| UdpSocket::bind("10.99.1.1:0")).unwrap().unwrap();
//! client.send_to(b"ping", server.local_addr().unwrap()).unwrap();
//! let mut buf = [0u8; 16];
//! let (n, from) = server.recv_from(&mut buf).unwrap();
//! assert_eq!((&buf[..n], from), (&b"ping"[..], client.local_addr().unwrap()));
//! drop(tb);
//! assert!(etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix("ectb-doc-")).is_empty());
//! ```
#![deny(unsafe_code)]

pub mod cli_table;
mod cmd;
mod events;
mod netns;
mod root;
#[cfg(feature = "relay-suite")]
pub mod suite;
#[allow(unsafe_code)]
mod sys;
mod testbed;
mod tshark;

pub use events::{EventLog, LoggedEvent};
pub use netns::{leftover_namespaces, process_prefix, remove_stale_namespaces, Netns};
pub use root::{is_root, require_root, REQUIRE_ROOT_ENV};
pub use testbed::{Side, Testbed};
pub use tshark::{tshark_available, tshark_fields};

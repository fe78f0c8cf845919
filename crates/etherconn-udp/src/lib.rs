//! UDP endpoints over etherconn relays, with any source MAC and VLAN stack and no OS interface.
//!
//! - [`RUdpConn`]: one UDP endpoint over an `EtherConn` of its own (its own MAC and VLANs), as
//!   a DHCP or PPPoE load tester runs one per emulated client.
//! - [`SharedEtherConn`] + [`SharingRUdpConn`]: many UDP endpoints (local IP and port) over one
//!   MAC and VLAN stack; the relay thread demultiplexes datagrams straight into each one's
//!   queue by [`L4RecvKey`](etherconn_core::L4RecvKey).
//!
//! Both are shaped like [`std::net::UdpSocket`] (`send_to`, `recv_from`, `local_addr`,
//! timeouts, non-blocking mode), add `send_to_from` (any source address) and the batch calls
//! `send_batch` / `recv_batch`, speak IPv4 and IPv6, and take their next-hop MAC from a
//! [`NextHopResolver`] closure (default: broadcast; multicast and `255.255.255.255`
//! destinations always use their group MAC, see [`multicast_mac`]). Datagrams larger than
//! `max_payload()` (the link's MTU on the conn's VLAN stack less the IP and UDP headers: 1472
//! bytes over IPv4 on a 1500-byte MTU) are refused ([`UdpError::TooLarge`],
//! `io::ErrorKind::InvalidInput`), never fragmented, and so are destinations no receiver takes,
//! port 0 and the unspecified address ([`UdpError::BadDestination`]); received IP fragments
//! are never delivered (the relay counts them in `rx_fragments`). Sending and receiving
//! allocate nothing per datagram once warm.
//!
//! [`Neighbours`] (one per relay) answers ARP and IPv6 neighbour solicitations (and pings) for
//! the conns' addresses and resolves their next hops, so that kernel peers need no static
//! neighbour entries and conns reach peers by IP alone ([`RUdpConfig::neighbours`],
//! [`SharedConfig::neighbours`]; docs/neighbours.md).
//!
//! Like a host's IP stack, the conns never receive what a host drops: datagrams with a martian
//! source or destination address or port 0 ([`etherconn_core::martian`], counted by the relay
//! in `rx_martian`; `accept_martians` in a conn's config lets them through) and frames from a
//! group source MAC (`rx_group_source`).
//!
//! # Example: two endpoints talking through a loopback relay
//!
//! ```
//! use std::net::SocketAddr;
//! use std::sync::Arc;
//! use std::time::Duration;
//! use etherconn_relay::{LoopbackRelay, PacketRelay};
//! use etherconn_core::wire::{MacAddr, VlanTag};
//! use etherconn_udp::{RUdpConfig, RUdpConn};
//!
//! // A relay whose "wire" loops back to itself: no interface, no privileges.
//! let relay: Arc<dyn PacketRelay> = LoopbackRelay::new(Default::default());
//! let vlans = [VlanTag::dot1q(100).unwrap()];
//! let mac_a: MacAddr = "02:00:00:00:00:01".parse()?;
//! let mac_b: MacAddr = "02:00:00:00:00:02".parse()?;
//! let addr_a: SocketAddr = "192.0.2.1:4000".parse()?;
//! let addr_b: SocketAddr = "192.0.2.2:5000".parse()?;
//!
//! // The next hop of each destination: a static table here, an ARP cache in a real program.
//! let cfg = RUdpConfig::default().resolver(move |ip| {
//!     [(addr_a.ip(), mac_a), (addr_b.ip(), mac_b)]
//!         .into_iter()
//!         .find_map(|(a, m)| (a == ip).then_some(m))
//! });
//! let a = RUdpConn::new(relay.clone(), mac_a, &vlans, addr_a, cfg.clone())?;
//! let b = RUdpConn::new(relay.clone(), mac_b, &vlans, addr_b, cfg)?;
//! a.set_read_timeout(Some(Duration::from_secs(1)))?;
//! b.set_read_timeout(Some(Duration::from_secs(1)))?;
//!
//! a.send_to(b"ping", addr_b)?;
//! let mut buf = [0u8; 1500];
//! let (n, from) = b.recv_from(&mut buf)?;
//! assert_eq!((&buf[..n], from), (&b"ping"[..], addr_a));
//!
//! b.send_to(b"pong", from)?;
//! let (n, from) = a.recv_from(&mut buf)?;
//! assert_eq!((&buf[..n], from), (&b"pong"[..], addr_b));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The `std::net::UdpSocket` calls, and where they differ
//!
//! Both conns have `send_to`, `recv_from`, `local_addr`, `connect`, `peer_addr`, `send`,
//! `recv`, `peek_from`, `peek`, the timeouts and `set_nonblocking`, with std's meaning; the
//! differences, each on purpose:
//!
//! - **An expired read timeout is `TimedOut`; a non-blocking receive with nothing queued is
//!   `WouldBlock`.** std leaves the kind of a timeout to the platform (`WouldBlock` on Unix,
//!   `TimedOut` on Windows, as its `set_read_timeout` docs say), so portable code already
//!   accepts both; keeping them apart tells a caller whether a deadline passed or nothing was
//!   ready. Code written against std on Linux that matches only `WouldBlock` should match
//!   `WouldBlock | TimedOut`. `EtherConn` and the relay's queues answer the same way.
//! - **No `try_clone`.** Every call takes `&self` and the conns are `Send + Sync`: share one
//!   in an `Arc` (`Arc::clone` is the clone). A `try_clone` returning a second conn would make
//!   every conn a handle to shared state, one more allocation and indirection for each of the
//!   hundred thousand conns a load test holds, to give what `Arc` gives already.
//! - `connect` takes the first address of the conn's IP family, refuses port 0 and the
//!   unspecified address ([`UdpError::BadDestination`]), and sends nothing; once connected,
//!   datagrams from other senders are dropped when read. `recv` works on an unconnected conn
//!   too (as on Linux). `send` and `peer_addr` before `connect` are `NotConnected`
//!   ([`UdpError::NotConnected`]).
//! - `peek_from` takes the datagram off the queue and keeps it for the next receive call, so
//!   a [`ReadySet`](etherconn_relay::ReadySet) waiting on the conn no longer counts it.
//! - Beyond std: `set_local_addr` moves a conn to another address (it takes `&mut self`),
//!   and [`SharedEtherConn::bind_default`] makes a conn that receives the datagrams no bound
//!   conn claims.
//!
//! ```
//! use std::io::ErrorKind;
//! use std::time::Duration;
//! use etherconn_relay::LoopbackRelay;
//! use etherconn_udp::{RecvMeta, SharedConfig, SharedEtherConn, SharingConfig};
//!
//! let relay = LoopbackRelay::new(Default::default());
//! let mac = "02:00:00:00:00:01".parse()?;
//! // The loopback relay hands every frame back; the resolver sends to our own MAC.
//! let shared = SharedEtherConn::new(relay, mac, &[], SharedConfig::default().resolver(move |_| Some(mac)))?;
//! let client = shared.bind("192.0.2.1:5000".parse()?, SharingConfig::default())?;
//! let mut server = shared.bind("192.0.2.2:53".parse()?, SharingConfig::default())?;
//! let strays = shared.bind_default(SharingConfig::default())?;
//! for c in [&client, &server, &strays] {
//!     c.set_read_timeout(Some(Duration::from_millis(200)))?;
//! }
//!
//! // connect + send + recv; peek_from leaves the datagram for the next receive.
//! assert_eq!(client.send(b"x").unwrap_err().kind(), ErrorKind::NotConnected);
//! client.connect("192.0.2.2:53")?;
//! client.send(b"query")?;
//! let mut buf = [0u8; 64];
//! let (n, from) = server.peek_from(&mut buf)?;
//! assert_eq!((&buf[..n], from), (&b"query"[..], client.local_addr()?));
//! let (n, from) = server.recv_from(&mut buf)?;
//! server.send_to(&buf[..n], from)?;
//! assert_eq!(client.recv(&mut buf)?, 5);
//!
//! // Nothing came within the read timeout: TimedOut (WouldBlock when non-blocking).
//! assert_eq!(client.recv(&mut buf).unwrap_err().kind(), ErrorKind::TimedOut);
//!
//! // The server moves; a datagram to its old port is nobody's, and the default receiver gets it.
//! server.set_local_addr("192.0.2.2:5353".parse()?)?;
//! client.send_to_from(b"late", client.local_addr()?, "192.0.2.2:53".parse()?)?;
//! let mut bufs = [&mut buf[..]];
//! let mut meta = [RecvMeta::default()];
//! strays.recv_batch(&mut bufs, &mut meta)?;
//! assert_eq!(meta[0].local, "192.0.2.2:53".parse()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Example: many endpoints on one MAC, on a real interface
//!
//! With the AF_PACKET relay of `etherconn-rawsock` (Linux, root or `CAP_NET_RAW`): one
//! [`SharedEtherConn`] for a MAC and VLAN, a thousand UDP endpoints on it.
//!
//! ```no_run
//! # #[cfg(target_os = "linux")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::net::{IpAddr, SocketAddr};
//! use std::sync::Arc;
//! use etherconn_relay::PacketRelay;
//! use etherconn_core::wire::{MacAddr, VlanTag};
//! use etherconn_rawsock::{RawSocketRelay, RawSocketRelayConfig};
//! use etherconn_udp::{SharedConfig, SharedEtherConn, SharingConfig};
//!
//! let relay: Arc<dyn PacketRelay> = RawSocketRelay::new("eth0", RawSocketRelayConfig::default())?;
//! let gateway: MacAddr = "52:54:00:12:34:56".parse()?;
//! let shared = SharedEtherConn::new(
//!     relay.clone(),
//!     "02:00:00:00:00:01".parse()?,
//!     &[VlanTag::dot1q(100).unwrap()],
//!     SharedConfig::default().resolver(move |_: IpAddr| Some(gateway)),
//! )?;
//! let ip: IpAddr = "198.51.100.7".parse()?;
//! let conns = (0..1000u16)
//!     .map(|i| shared.bind(SocketAddr::new(ip, 20000 + i), SharingConfig::default()))
//!     .collect::<Result<Vec<_>, _>>()?;
//! conns[0].send_to(b"hello", "203.0.113.1:9".parse()?)?;
//! let mut buf = [0u8; 1500];
//! let (n, from) = conns[0].recv_from(&mut buf)?;
//! println!("{n} bytes from {from}");
//! relay.stop();
//! # Ok(())
//! # }
//! # #[cfg(not(target_os = "linux"))]
//! # fn main() {}
//! ```
//!
//! # Example: one thread serving many endpoints
//!
//! A [`ReadySet`](etherconn_relay::ReadySet) tells one thread which of its endpoints
//! have datagrams, so it neither blocks in one endpoint's `recv_from` nor polls them all.
//!
//! ```
//! use std::net::{IpAddr, SocketAddr};
//! use std::time::Duration;
//! use etherconn_relay::{LoopbackRelay, PacketRelay, ReadySet};
//! use etherconn_udp::{SharedConfig, SharedEtherConn, SharingConfig};
//!
//! let relay = LoopbackRelay::new(Default::default());
//! let mac = "02:00:00:00:00:01".parse()?;
//! // The loopback relay hands every frame back; the resolver sends to our own MAC.
//! let shared = SharedEtherConn::new(relay.clone(), mac, &[], SharedConfig::default().resolver(move |_| Some(mac)))?;
//! let ip: IpAddr = "192.0.2.1".parse()?;
//! let conns = (0..500u16)
//!     .map(|i| shared.bind(SocketAddr::new(ip, 10_000 + i), SharingConfig::default()))
//!     .collect::<Result<Vec<_>, _>>()?;
//! let set = ReadySet::new();
//! for c in &conns {
//!     c.set_nonblocking(true)?;
//!     set.add(c); // tokens 0, 1, 2, ... in order
//! }
//!
//! conns[0].send_to(b"to 123", SocketAddr::new(ip, 10_123))?;
//! conns[0].send_to(b"to 456", SocketAddr::new(ip, 10_456))?;
//! let (mut ready, mut got) = (Vec::new(), Vec::new());
//! let mut buf = [0u8; 1500];
//! while got.len() < 2 {
//!     set.wait(&mut ready, Some(Duration::from_secs(1)))?;
//!     // `read_ahead` reads each conn's queue lines a few tokens early, so that with thousands
//!     // of endpoints ready the reads do not wait for memory one after another.
//!     for (token, conn) in ReadySet::read_ahead(&ready, |t| &conns[t]) {
//!         while let Ok((n, _from)) = conn.recv_from(&mut buf) {
//!             got.push((token, buf[..n].to_vec()));
//!         }
//!     }
//! }
//! got.sort();
//! assert_eq!(got, [(123, b"to 123".to_vec()), (456, b"to 456".to_vec())]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Example: every endpoint's datagrams through one inbox
//!
//! With tens of thousands of endpoints receiving, reading each endpoint costs cache misses on
//! its queue for every datagram. An [`Inbox`](etherconn_relay::Inbox) is one queue the
//! relay fills with every attached endpoint's datagrams, each tagged with the token it was
//! attached under: one thread takes them in arrival order, in batches, and
//! [`read_datagram`] copies each one out as `recv_from` would. Over veth with 100,000
//! endpoints receiving, it keeps up with one endpoint's rate (docs/scale.md).
//!
//! ```
//! use std::net::{IpAddr, SocketAddr};
//! use std::time::Duration;
//! use etherconn_relay::{Inbox, LoopbackRelay, Mail};
//! use etherconn_udp::{read_datagram, SharedConfig, SharedEtherConn, SharingConfig};
//!
//! let relay = LoopbackRelay::new(Default::default());
//! let mac = "02:00:00:00:00:01".parse()?;
//! let shared = SharedEtherConn::new(relay.clone(), mac, &[], SharedConfig::default().resolver(move |_| Some(mac)))?;
//! let ip: IpAddr = "192.0.2.1".parse()?;
//! let conns = (0..500u16)
//!     .map(|i| shared.bind(SocketAddr::new(ip, 10_000 + i), SharingConfig::default()))
//!     .collect::<Result<Vec<_>, _>>()?;
//! let inbox = Inbox::new();
//! for (i, c) in conns.iter().enumerate() {
//!     inbox.attach(c, i)?; // token i: the index into `conns`
//! }
//!
//! conns[0].send_to(b"to 123", SocketAddr::new(ip, 10_123))?;
//! conns[0].send_to(b"to 456", SocketAddr::new(ip, 10_456))?;
//! let mut mail = Vec::with_capacity(64);
//! let mut buf = [0u8; 1500];
//! let mut got = Vec::new();
//! while got.len() < 2 {
//!     inbox.recv(&mut mail, 64, Some(Duration::from_secs(1)))?;
//!     for m in &mail {
//!         match m {
//!             Mail::Frame { token, frame } => {
//!                 let meta = read_datagram(frame, &mut buf).expect("a UDP datagram");
//!                 assert_eq!(meta.remote, conns[0].local_addr()?);
//!                 got.push((*token, buf[..meta.len].to_vec()));
//!             }
//!             Mail::Closed { token } => println!("endpoint {token} closed"),
//!         }
//!     }
//! }
//! assert_eq!(got, [(123, b"to 123".to_vec()), (456, b"to 456".to_vec())]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Memory
//!
//! An idle [`SharingRUdpConn`] with the default queue depth of
//! [`DEFAULT_SHARING_QUEUE_DEPTH`] costs about 0.6 KiB: measured on x86_64 as 566 bytes, of
//! which the struct is 128 (16 of them the pointer to the state `connect` and `peek_from`
//! make on first use), its receive queue 256 (a line of flags, a line holding up to four
//! queued frames, then the locks of sleeping readers; a queued frame is one pooled buffer),
//! and its entry in the shared endpoint's demultiplexing table the rest. An idle [`RUdpConn`] with its default depth of
//! [`DEFAULT_RUDP_QUEUE_DEPTH`] costs about 1.4 KiB. `tests/no_alloc.rs` measures both with a
//! counting allocator (and prints the figures with `--nocapture`) and fails if a
//! `SharingRUdpConn` reaches 4 KiB. Answered for by a [`Neighbours`], an endpoint costs about
//! 80 bytes more (`tests/neighbour_scale.rs`).
#![deny(unsafe_code)]

#[cfg(feature = "tokio")]
mod aio;
mod config;
mod error;
mod neighbour;
mod peer;
mod rudp;
mod rx;
mod shared;
mod sharing;
mod tx;

#[cfg(feature = "tokio")]
pub use aio::{Async, AsyncRUdpConn, AsyncSharingRUdpConn, PollUdp};
pub use config::{
    broadcast_resolver, multicast_mac, NextHopResolver, RUdpConfig, SharedConfig, SharingConfig,
    DEFAULT_RUDP_QUEUE_DEPTH, DEFAULT_SHARED_QUEUE_DEPTH, DEFAULT_SHARING_QUEUE_DEPTH, DEFAULT_TTL,
};
pub use error::UdpError;
pub use neighbour::{NeighbourAddr, NeighbourConfig, NeighbourStats, Neighbours};
pub use rudp::RUdpConn;
pub use rx::{read_datagram, RecvMeta};
pub use shared::SharedEtherConn;
pub use sharing::SharingRUdpConn;
pub use tx::BATCH_SIZE;

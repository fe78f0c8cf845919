//! Thin safe wrappers over the Linux calls the AF_PACKET backend makes.
//!
//! This is the only module of the crate that contains `unsafe`. Every `unsafe` block wraps one
//! call and says which invariant makes it sound; everything this module exports is safe to call
//! with any arguments. [`ring`](crate::ring), [`tx`](crate::tx) and [`socket`](crate::socket)
//! are built on it; prefer [`PacketSocket`](crate::PacketSocket) unless you need a call it does
//! not make.
//!
//! Integers cross this boundary in host byte order; the conversion to network order for
//! protocol numbers happens here.
//!
//! One private submodule per family of calls, all re-exported here: `socket` (the socket, its
//! options and filters, interface `ioctl`s, sending), `ring` (the `TPACKET_V3` ring and its
//! `mmap`) and `poll` (`poll`, `eventfd`). `ring` builds on `socket`; neither imports `poll`;
//! all three turn `-1`/`errno` into `io::Error` through `cvt`, and none imports this module.

mod cvt;
mod poll;
mod ring;
mod socket;

pub use poll::{poll, EventFd, PollFd, POLLERR, POLLIN, POLLOUT};
pub use ring::{
    offsets, page_size, MmapRegion, RxRingMap, UserBlock, TPACKET3_HDRLEN, TPACKET3_HDR_SIZE,
    TPACKET3_SLL_OFFSET, TPACKET_ALIGNMENT, TP_STATUS_CSUMNOTREADY, TP_STATUS_CSUM_VALID,
    TP_STATUS_KERNEL, TP_STATUS_LOSING, TP_STATUS_USER, TP_STATUS_VLAN_TPID_VALID,
    TP_STATUS_VLAN_VALID,
};
pub use socket::{
    if_nametoindex, InterfaceFlags, SendScratch, SockFilter, Socket, ETH_P_ALL, PACKET_FANOUT_CPU,
    PACKET_FANOUT_HASH, PACKET_FANOUT_LB, PACKET_FANOUT_QM,
};

//! What a UDP conn keeps besides its queue for the `std::net::UdpSocket` calls that need state:
//! the peer it is connected to (`connect`, `send`, `recv`, `peer_addr`) and a datagram taken
//! from the queue by `peek_from` and not yet received.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use etherconn_core::build::udp_destination_problem;
use etherconn_core::classify::UdpInfo;
use etherconn_relay::RxFrame;

use crate::error::UdpError;

/// The connected peer and the peeked datagram of one conn, made on the first `connect` or
/// peek: a conn that never calls either pays one pointer (idle conns are counted by the
/// hundred thousand) and one load per datagram.
#[derive(Default)]
pub(crate) struct PeerState(OnceLock<Box<Inner>>);

/// Each part is behind a flag read with one load: a conn that connected but never peeks (or
/// the other way round) takes no lock for the other.
#[derive(Default)]
struct Inner {
    connected: AtomicBool,
    peer: Mutex<Option<SocketAddr>>,
    has_peeked: AtomicBool,
    peeked: Mutex<Option<(RxFrame, UdpInfo)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The data (an address, a frame) stays consistent whatever panicked while holding it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PeerState {
    fn inner(&self) -> &Inner {
        self.0.get_or_init(Box::default)
    }

    /// Connects to the first address `addr` yields of `local`'s family; see [`Inner::connect`].
    pub(crate) fn connect<A: ToSocketAddrs>(
        &self,
        local: SocketAddr,
        addr: A,
    ) -> io::Result<SocketAddr> {
        self.inner().connect(local, addr)
    }

    /// The connected peer, or `NotConnected` ([`UdpError::NotConnected`]).
    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self.0.get() {
            Some(inner) => inner.peer_addr(),
            None => Err(UdpError::NotConnected.into()),
        }
    }

    /// Whether a datagram from `remote` is received: any while unconnected, only the peer's
    /// once connected (as a connected UDP socket).
    #[inline]
    pub(crate) fn admits(&self, remote: SocketAddr) -> bool {
        self.0.get().map_or(true, |inner| inner.admits(remote))
    }

    /// The datagram a peek left, if any.
    #[inline]
    pub(crate) fn take_peeked(&self) -> Option<(RxFrame, UdpInfo)> {
        self.0.get()?.take_peeked()
    }

    /// See [`Inner::peek`].
    pub(crate) fn peek<R>(
        &self,
        wait: impl FnOnce() -> io::Result<(RxFrame, UdpInfo)>,
        look: impl FnOnce(&RxFrame, &UdpInfo) -> R,
    ) -> io::Result<R> {
        self.inner().peek(wait, look)
    }
}

impl Inner {
    /// Connects to the first address `addr` yields of `local`'s family.
    ///
    /// Errors: `InvalidInput` with [`UdpError::FamilyMismatch`] when none is of that family,
    /// with [`UdpError::BadDestination`] for port 0 or the unspecified address; the resolver's
    /// error when `addr` does not resolve.
    fn connect<A: ToSocketAddrs>(&self, local: SocketAddr, addr: A) -> io::Result<SocketAddr> {
        let mut first = None;
        let mut found = None;
        for a in addr.to_socket_addrs()? {
            first.get_or_insert(a);
            if a.is_ipv4() == local.is_ipv4() {
                found = Some(a);
                break;
            }
        }
        let peer = match (found, first) {
            (Some(p), _) => p,
            (None, Some(remote)) => return Err(UdpError::FamilyMismatch { local, remote }.into()),
            (None, None) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "no address to connect to",
                ))
            }
        };
        if let Some(reason) = udp_destination_problem(peer) {
            return Err(UdpError::BadDestination { dst: peer, reason }.into());
        }
        *lock(&self.peer) = Some(peer);
        self.connected.store(true, Ordering::Release);
        Ok(peer)
    }

    /// The connected peer, or `NotConnected` ([`UdpError::NotConnected`]).
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        if !self.connected.load(Ordering::Acquire) {
            return Err(UdpError::NotConnected.into());
        }
        lock(&self.peer).ok_or_else(|| UdpError::NotConnected.into())
    }

    /// Whether a datagram from `remote` is received: any while unconnected, only the peer's
    /// once connected (as a connected UDP socket).
    #[inline]
    pub(crate) fn admits(&self, remote: SocketAddr) -> bool {
        !self.connected.load(Ordering::Relaxed) || *lock(&self.peer) == Some(remote)
    }

    /// The datagram `peek_from` left, if any.
    #[inline]
    pub(crate) fn take_peeked(&self) -> Option<(RxFrame, UdpInfo)> {
        if !self.has_peeked.load(Ordering::Acquire) {
            return None;
        }
        let mut slot = lock(&self.peeked);
        self.has_peeked.store(false, Ordering::Release);
        slot.take()
    }

    /// Lets `look` read the next datagram without receiving it: the one kept by an earlier
    /// peek, else the one `wait` returns, which is kept for the next receive. Peekers take
    /// turns (the slot stays locked while one waits), so none overwrites another's datagram.
    pub(crate) fn peek<R>(
        &self,
        wait: impl FnOnce() -> io::Result<(RxFrame, UdpInfo)>,
        look: impl FnOnce(&RxFrame, &UdpInfo) -> R,
    ) -> io::Result<R> {
        let mut slot = lock(&self.peeked);
        let (rx, udp) = match slot.take() {
            Some(kept) => slot.insert(kept),
            None => slot.insert(wait()?),
        };
        let r = look(rx, udp);
        self.has_peeked.store(true, Ordering::Release);
        Ok(r)
    }
}

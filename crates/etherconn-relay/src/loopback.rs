//! A relay with no interface: every frame sent is received by the same relay.

use std::io;
use std::time::Duration;

use std::sync::Arc;

use crate::capture::Direction;
use crate::dispatch::{Dispatcher, DispatcherConfig};
use crate::link::DEFAULT_MTU;
use crate::relay::PacketRelay;
use crate::stats::RelayCounters;

/// A relay whose "wire" loops back into its own dispatcher, like a hub joining its conns.
///
/// It needs no privileges and no interface, which makes it the relay for unit tests, examples
/// and for checking the dispatch rules; it runs the same [`Dispatcher`] the real backends run.
///
/// ```
/// use std::sync::Arc;
/// use etherconn_relay::{LoopbackRelay, PacketRelay};
/// use etherconn_relay::{EtherConn, EtherConnConfig};
/// use etherconn_core::wire::{EtherType, MacAddr, VlanTag};
///
/// let relay: Arc<dyn PacketRelay> = LoopbackRelay::new(Default::default());
/// let vlans = [VlanTag::dot1q(100).unwrap()];
/// let cfg = EtherConnConfig::default().ethertypes(&[EtherType(0x88b5)]);
/// let a = EtherConn::new(relay.clone(), "02:00:00:00:00:01".parse()?, &vlans, cfg.clone())?;
/// let b = EtherConn::new(relay.clone(), "02:00:00:00:00:02".parse()?, &vlans, cfg)?;
/// a.send_to(b"hello", EtherType(0x88b5), b.local_mac())?;
/// # b.set_read_timeout(Some(std::time::Duration::from_secs(1)))?;
/// let mut buf = [0u8; 1500];
/// let (n, peer) = b.recv_from(&mut buf)?;
/// // Short frames are padded to 60 bytes on the wire, so the payload comes back padded.
/// assert_eq!(&buf[..5], b"hello");
/// assert_eq!(peer.mac, a.local_mac());
/// assert_eq!(peer.vlans.as_slice(), &vlans);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct LoopbackRelay {
    dispatcher: Arc<Dispatcher>,
    mtu: usize,
}

impl LoopbackRelay {
    /// A loopback relay with its own dispatch table, on a link of [`DEFAULT_MTU`] (1500)
    /// bytes.
    pub fn new(config: DispatcherConfig) -> Arc<LoopbackRelay> {
        LoopbackRelay::with_mtu(config, DEFAULT_MTU)
    }

    /// A loopback relay whose link has an MTU of `mtu` bytes (frames are still bounded by the
    /// dispatcher's `buf_len`).
    ///
    /// ```
    /// use etherconn_relay::{EtherConn, EtherConnConfig, LoopbackRelay, PacketRelay};
    ///
    /// let relay = LoopbackRelay::with_mtu(Default::default(), 1280);
    /// assert_eq!(relay.mtu(), 1280);
    /// let conn = EtherConn::new(relay, "02:00:00:00:00:01".parse()?, &[], Default::default())?;
    /// assert_eq!(conn.max_payload(), 1280);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_mtu(config: DispatcherConfig, mtu: usize) -> Arc<LoopbackRelay> {
        Arc::new(LoopbackRelay {
            dispatcher: Dispatcher::new(config),
            mtu,
        })
    }
}

impl PacketRelay for LoopbackRelay {
    fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn send(&self, frame: &[u8], _timeout: Option<Duration>) -> io::Result<()> {
        if self.dispatcher.is_stopped() {
            RelayCounters::bump(&self.dispatcher.counters().tx_errors);
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the relay has stopped",
            ));
        }
        RelayCounters::bump(&self.dispatcher.counters().tx);
        if let Some(c) = self.dispatcher.capture() {
            // The frame leaves and arrives at once: one time for both records.
            let ts = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok();
            c.record(Direction::Outbound, frame, None, ts);
            c.record(Direction::Inbound, frame, None, ts);
        }
        self.dispatcher.deliver(frame, None, false);
        Ok(())
    }

    fn stop(&self) {
        self.dispatcher.stop();
        let _ = self.dispatcher.close_capture();
    }
}

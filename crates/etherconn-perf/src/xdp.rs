//! The AF_XDP relay as a `bench` backend (feature `xdp`): EtherConns (`xdp`) or RUdpConns
//! (`xdp-rudp`) on an `XdpRelay` at each end of the veth pair.

use std::path::Path;
use std::sync::Arc;

use etherconn_relay::{CaptureConfig, PacketRelay};
use etherconn_xdp::{XdpRelay, XdpRelayConfig};

use crate::error::{Failure, Result};

/// Opens an AF_XDP relay on `ifname` (in the calling thread's network namespace; its queue
/// threads inherit the calling thread's CPU pinning) serving queues `0..queues`, capturing to
/// `pcap` when given.
pub fn open_xdp_relay(
    ifname: &str,
    pcap: Option<&Path>,
    queues: u32,
) -> Result<Arc<dyn PacketRelay>> {
    let ids: Vec<u32> = (0..queues.max(1)).collect();
    let cfg = XdpRelayConfig::default().queues(&ids);
    let relay = match pcap {
        None => XdpRelay::new(ifname, cfg),
        Some(path) => {
            let capture = CaptureConfig::file(path).interface_name(ifname);
            XdpRelay::with_capture(ifname, cfg, capture)
        }
    };
    let relay = relay.map_err(|e| Failure::new(format!("cannot open an AF_XDP relay: {e}")))?;
    Ok(relay)
}

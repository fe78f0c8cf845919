//! What differs between libpcap on Linux and npcap on Windows, kept in one place.
//!
//! - **VLAN tags.** Linux moves a received frame's outer VLAN tag out of the frame before a
//!   packet socket sees it; the kernel runs the receive filter on the frame without it, so the
//!   filter reads the tag through the ancillary loads (`SKF_AD_VLAN_TAG_PRESENT`), and libpcap
//!   puts the tag back into the frame it hands over. npcap's filter machine has no ancillary
//!   loads: there the filter runs with them read as 0 ("no tag was moved out"), which walks
//!   the tags in the frame. Whether npcap shows a tag the NIC driver removed depends on the
//!   driver; nothing here checks it.
//! - **Device names.** Linux: the interface name (`eth0`). Windows: npcap's
//!   `\Device\NPF_{GUID}`; [`pcap::Device::list`] gives each with its description.
//! - **The library.** Linux links `libpcap.so` (Debian: `libpcap-dev` to build, `libpcap0.8`
//!   to run). Windows links npcap's `wpcap` (the npcap SDK's `Lib` folder must be on `LIB` to
//!   build); npcap installs `wpcap.dll` in [`NPCAP_DLL_DIR`], which is not on the DLL search
//!   path unless npcap was installed in "WinPcap API-compatible mode": otherwise add that
//!   folder to `PATH` before starting the program.
//!
//! - **Waiting.** libpcap on Linux does not honour the read timeout while no frame arrives
//!   (its wait for the ring in immediate mode ends only with a frame or `pcap_breakloop`), so
//!   there the handle is non-blocking and the relay waits on its descriptor with `poll` and
//!   the timeout itself. npcap honours the read timeout, so elsewhere
//!   `pcap_dispatch` itself is the bounded wait.
//!
//! - **The MTU.** On Linux the relay asks the kernel (`SIOCGIFMTU` on the capture handle's
//!   socket, so in the handle's network namespace). libpcap has no call for it, and npcap's
//!   device names are not interface names: elsewhere the relay assumes standard Ethernet's
//!   1500 bytes ([`DEFAULT_MTU`](etherconn_relay::DEFAULT_MTU)); a link with a smaller MTU then refuses the largest
//!   frames only when they are sent.
//!
//! Only the Linux side is built and run by this project's tests.

use std::time::Duration;

use pcap::{Active, Capture};

/// Whether the capture handle's filter can read the VLAN tag the system moved out of the frame
/// (Linux's ancillary BPF loads).
pub(crate) const ANCILLARY_VLAN_LOADS: bool = cfg!(target_os = "linux");

/// Where npcap installs `wpcap.dll` and `Packet.dll` (Windows).
pub const NPCAP_DLL_DIR: &str = r"C:\Windows\System32\Npcap";

/// What the device list says about a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeviceState {
    Missing,
    Down,
    Up,
}

/// Looks `name` up in libpcap's device list (`pcap_findalldevs`); `None` when the list cannot
/// be had. "Down" is reported on Linux only, where the flag is the interface's `IFF_UP`.
pub(crate) fn device_state(name: &str) -> Option<DeviceState> {
    let list = pcap::Device::list().ok()?;
    let dev = list.into_iter().find(|d| d.name == name);
    Some(match dev {
        None => DeviceState::Missing,
        Some(d) if cfg!(target_os = "linux") && !d.flags.is_up() => DeviceState::Down,
        Some(_) => DeviceState::Up,
    })
}

/// Makes `cap` ready for [`wait_for_frames`]: non-blocking on Unix, unchanged elsewhere.
pub(crate) fn prepare_receive(cap: Capture<Active>) -> Result<Capture<Active>, pcap::Error> {
    #[cfg(unix)]
    {
        cap.setnonblock()
    }
    #[cfg(not(unix))]
    {
        Ok(cap)
    }
}

/// Waits at most `timeout` for frames on a handle from [`prepare_receive`] after a
/// `pcap_dispatch` that found none. Elsewhere than Unix that dispatch already waited.
pub(crate) fn wait_for_frames(cap: &Capture<Active>, timeout: Duration) {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        if crate::sys::wait_readable(cap.as_fd(), timeout).is_err() {
            // A poll that fails at once must not make the receive thread spin.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (cap, timeout);
    }
}

/// The MTU of `device`, on which `cap` is open: the kernel's on Linux, [`DEFAULT_MTU`](etherconn_relay::DEFAULT_MTU)
/// elsewhere.
pub(crate) fn interface_mtu(cap: &Capture<Active>, device: &str) -> std::io::Result<usize> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsFd;
        crate::sys::interface_mtu(cap.as_fd(), device).map(|m| m as usize)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (cap, device);
        Ok(etherconn_relay::DEFAULT_MTU)
    }
}

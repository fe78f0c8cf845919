//! [`XdpRelayConfig`]: the settings of an [`XdpRelay`](crate::XdpRelay).

use etherconn_relay::DispatcherConfig;

/// How the AF_XDP sockets are bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum XdpMode {
    /// Zero-copy where the driver supports it, copy mode otherwise (the default).
    #[default]
    Auto,
    /// Zero-copy only: fail if the driver cannot.
    ZeroCopy,
    /// Copy mode only.
    Copy,
}

/// Settings of an [`XdpRelay`](crate::XdpRelay). Ring and UMEM sizes are per queue.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct XdpRelayConfig {
    /// The queues to serve, one AF_XDP socket and thread each; `None` (the default): all of
    /// the interface's receive queues. Frames arriving on a queue not served are passed to the
    /// kernel.
    pub queues: Option<Vec<u32>>,
    /// The dispatch table's settings (buffers, mirroring, checksum verification).
    /// `mirror_to_default` applies only to frames the XDP program redirects (see docs/xdp.md).
    pub dispatcher: DispatcherConfig,
    /// Zero-copy or copy mode.
    pub mode: XdpMode,
    /// Bytes per UMEM frame: a power of two of at least 2048 (the largest frame received or
    /// sent is this minus the 256-byte XDP headroom). Default 2048.
    pub frame_size: u32,
    /// Receive frames per queue, which is also the size of its fill and receive rings (a power
    /// of two). Default 4096.
    pub rx_ring: u32,
    /// Send frames per queue, which is also the size of its send and completion rings (a power
    /// of two). Default 2048.
    pub tx_ring: u32,
    /// Frames taken from the receive ring per batch. Default 64.
    pub rx_batch: usize,
    /// Bind with `XDP_USE_NEED_WAKEUP`, so the kernel is only kicked when it asks. Default on.
    pub need_wakeup: bool,
    /// Most registered endpoint keys the XDP program's map holds (one per EtherType of each
    /// conn: 100,000 conns with the default three EtherTypes are 300,000 keys); a
    /// registration beyond is refused. The map is not preallocated: kernel memory grows with
    /// the keys registered, not with this limit. Default 1,048,576.
    pub max_keys: u32,
    /// Detach an XDP program that another owner attached to the interface (through netlink)
    /// instead of refusing to start. Default off.
    pub replace_foreign_program: bool,
    /// With a default conn registered, also redirect untagged broadcast and multicast frames
    /// to the relay. Off by default, because the host then loses its own ARP requests,
    /// neighbour solicitations and DHCP on the interface (see docs/xdp.md).
    pub default_takes_untagged_group: bool,
    /// How long a queue thread sleeps in `poll` when idle before it checks for a stop, in
    /// milliseconds. Default 50.
    pub idle_poll_ms: i32,
    /// How many times a queue thread that finds its receive ring empty yields the CPU and
    /// looks again before it sleeps in `poll`. Each sleep costs a wake-up from the kernel's
    /// receive path and two context switches, which at a few hundred thousand frames a second
    /// cost more than the yields (docs/performance.md, section 9); an idle relay pays at most
    /// this many `sched_yield` calls per quiet spell. 0 sleeps at once. Default 64.
    pub idle_spins: u32,
}

impl Default for XdpRelayConfig {
    fn default() -> Self {
        XdpRelayConfig {
            queues: None,
            dispatcher: DispatcherConfig::default(),
            mode: XdpMode::Auto,
            frame_size: 2048,
            rx_ring: 4096,
            tx_ring: 2048,
            rx_batch: 64,
            need_wakeup: true,
            max_keys: 1 << 20,
            replace_foreign_program: false,
            default_takes_untagged_group: false,
            idle_poll_ms: 50,
            idle_spins: 64,
        }
    }
}

impl XdpRelayConfig {
    /// These settings serving only `queues`.
    pub fn queues(mut self, queues: &[u32]) -> Self {
        self.queues = Some(queues.to_vec());
        self
    }

    /// These settings with the dispatcher's settings.
    pub fn dispatcher(mut self, config: DispatcherConfig) -> Self {
        self.dispatcher = config;
        self
    }

    /// These settings with a bind mode.
    pub fn mode(mut self, mode: XdpMode) -> Self {
        self.mode = mode;
        self
    }

    /// These settings with `replace_foreign_program` set.
    pub fn replace_foreign_program(mut self, on: bool) -> Self {
        self.replace_foreign_program = on;
        self
    }

    /// These settings with `default_takes_untagged_group` set.
    pub fn default_takes_untagged_group(mut self, on: bool) -> Self {
        self.default_takes_untagged_group = on;
        self
    }

    /// These settings with `idle_spins` set.
    pub fn idle_spins(mut self, n: u32) -> Self {
        self.idle_spins = n;
        self
    }

    /// These settings with the ring sizes (frames per queue) set.
    pub fn rings(mut self, rx: u32, tx: u32) -> Self {
        self.rx_ring = rx;
        self.tx_ring = tx;
        self
    }
}

//! Command-line arguments.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use etherconn_core::wire::{MacAddr, VlanTag};
use etherconn_rawsock::RingConfig;

use crate::addr::{self, IpCidr, Qinq, VlanIdStack};
use crate::l2udp::TxPath;

const MIN_PAYLOAD: i64 = crate::payload::MIN_PAYLOAD as i64;

/// The highest `send --rate` and `bench --rate`: above 100 Gbit/s Ethernet's 148.8 million minimum-size frames per
/// second, so no link a run can reach is refused, and low enough that the pacing arithmetic
/// stays exact.
const MAX_RATE: u64 = 200_000_000;

/// The most frames of one `scale` throughput measurement (about a quarter of an hour at the
/// in-process rates `docs/scale.md` reports).
const MAX_FRAMES: u64 = 1_000_000_000;

/// Measures etherconn's relays against kernel UDP sockets on a namespace + veth testbed it
/// makes itself (`bench`, the default), serves (`echo`) or drives (`send`) UDP echo over
/// etherconn endpoints on an existing interface, and measures what 100,000 endpoints on one
/// relay cost (`scale`).
#[derive(Debug, Parser)]
#[command(
    name = "etherconn-perf",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do (default: bench).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `bench` options, when no command is given.
    #[command(flatten)]
    pub bench: BenchArgs,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure packets/s through each backend and the kernel UDP baseline on a fresh testbed
    /// (two network namespaces joined by a veth pair, removed on exit). Needs root.
    Bench(BenchArgs),
    /// Serve UDP echo on N etherconn endpoints (consecutive MACs and IPs) on an existing
    /// interface, answering ARP or IPv6 neighbour discovery (and pings) for them, until
    /// SIGINT/SIGTERM.
    Echo(EchoArgs),
    /// Send UDP datagrams from N etherconn endpoints to a peer (such as `echo`) and count the
    /// echoes that come back.
    Send(SendArgs),
    /// Measure what 100,000 endpoints on one relay cost: registration time and memory, receive
    /// throughput against one endpoint in process and (root) over a veth pair. Every run of a
    /// scenario is a fresh process; medians and spreads are printed, then the targets.
    Scale(ScaleArgs),
}

/// Which backends `bench` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// The kernel baseline, `rawsock` and `rudp`.
    All,
    /// The kernel UDP socket baseline.
    Kernel,
    /// EtherConns on the AF_PACKET relay (etherconn-rawsock), UDP built by the tool.
    Rawsock,
    /// etherconn-udp's RUdpConns (send_batch / recv_batch) on the AF_PACKET relay.
    Rudp,
    /// EtherConns on the libpcap relay (etherconn-pcap) on both ends, UDP built by the tool
    /// (feature `pcap`, on by default; not part of `all`).
    #[cfg(feature = "pcap")]
    Pcap,
    /// EtherConns on the AF_XDP relay (etherconn-xdp) on both ends, UDP built by the tool
    /// (feature `xdp`; not part of `all`).
    #[cfg(feature = "xdp")]
    Xdp,
    /// etherconn-udp's RUdpConns (send_batch / recv_batch) on the AF_XDP relay on both ends
    /// (feature `xdp`; not part of `all`).
    #[cfg(feature = "xdp")]
    XdpRudp,
}

/// An optional VLAN stack for every endpoint.
#[derive(Clone, Debug, Args)]
pub struct VlanArgs {
    /// One 802.1Q tag (TPID 0x8100) with this VLAN id (1 to 4094) on every endpoint's frames.
    #[arg(long, value_name = "ID", value_parser = addr::parse_vlan_id, conflicts_with = "qinq")]
    pub vlan: Option<u16>,
    /// Two tags, OUTER.INNER: the outer with TPID 0x88a8 (802.1ad), the inner with 0x8100.
    #[arg(long, value_name = "OUTER.INNER", value_parser = addr::parse_qinq)]
    pub qinq: Option<Qinq>,
    /// One to three tags, outermost first (e.g. 300.200.100): one is 802.1Q (0x8100); of two
    /// or three the outermost is 802.1ad (0x88a8), the others 802.1Q. Instead of --vlan/--qinq.
    #[arg(long, value_name = "ID[.ID[.ID]]", value_parser = addr::parse_vlan_ids,
          conflicts_with_all = ["vlan", "qinq"])]
    pub vlans: Option<VlanIdStack>,
}

impl VlanArgs {
    /// The stack, outermost first.
    pub fn stack(&self) -> Vec<VlanTag> {
        addr::vlan_stack(self.vlan, self.qinq, self.vlans.as_ref())
    }
}

/// The AF_PACKET relays' receive ring (`rawsock`, `rudp`); each flag left out keeps the
/// relay's default (`etherconn_rawsock::RingConfig`).
#[derive(Clone, Debug, Default, Args)]
pub struct RingArgs {
    /// Blocks of the AF_PACKET receive ring.
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..=65_536))]
    pub ring_blocks: Option<u32>,
    /// KiB per block of the AF_PACKET receive ring (a multiple of the page size).
    #[arg(long, value_parser = clap::value_parser!(u32).range(4..=65_536))]
    pub ring_block_kib: Option<u32>,
    /// Block retire timeout of the AF_PACKET receive ring, in milliseconds.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub ring_timeout_ms: Option<u32>,
}

impl RingArgs {
    /// The ring these flags ask for; `None` when none is given (the relay's default).
    pub fn config(&self) -> Option<RingConfig> {
        if self.ring_blocks.is_none()
            && self.ring_block_kib.is_none()
            && self.ring_timeout_ms.is_none()
        {
            return None;
        }
        let mut ring = RingConfig::default();
        if let Some(n) = self.ring_blocks {
            ring.block_count = n;
        }
        if let Some(kib) = self.ring_block_kib {
            ring.block_size = kib * 1024;
        }
        if let Some(ms) = self.ring_timeout_ms {
            ring.block_timeout = std::time::Duration::from_millis(u64::from(ms));
        }
        Some(ring)
    }
}

/// Options of `bench`.
#[derive(Clone, Debug, Args)]
pub struct BenchArgs {
    /// Backends to measure (a comma list: `kernel,rudp`); `all` is kernel, rawsock and rudp;
    /// `pcap`, `xdp` and `xdp-rudp` are measured only when listed.
    /// The kernel baseline runs only when listed (or with `all`).
    #[arg(
        long,
        value_enum,
        value_name = "B[,B..]",
        value_delimiter = ',',
        default_value = "all"
    )]
    pub backend: Vec<BackendChoice>,
    /// Endpoints (distinct MACs and IPs) per side; a comma list measures each.
    #[arg(long, value_name = "N[,N..]", value_delimiter = ',', default_value = "1",
          value_parser = clap::value_parser!(u32).range(1..=16_384))]
    pub endpoints: Vec<u32>,
    /// UDP payload bytes; a comma list measures each.
    #[arg(long, value_name = "BYTES[,BYTES..]", value_delimiter = ',', default_value = "64",
          value_parser = clap::value_parser!(u32).range(MIN_PAYLOAD..=1472))]
    pub payload: Vec<u32>,
    /// Seconds each measurement sends at full speed, after the warm-up.
    #[arg(long, default_value_t = 3.0, value_parser = parse_seconds)]
    pub seconds: f64,
    /// Runs of every measurement, interleaved (kernel, rawsock, kernel, ...); the run with
    /// the median rx pps is reported, with every run's rx pps beside it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub repeat: u32,
    /// Seconds of sending before each measurement starts counting.
    #[arg(long, default_value_t = 0.5, value_parser = parse_warmup)]
    pub warmup: f64,
    /// Datagrams per second each sender sends, warm-up included (default: as fast as it can):
    /// an offered load below the receivers' capacity, to see whether they lose any.
    #[arg(long, value_name = "PPS", value_parser = clap::value_parser!(u64).range(1..=MAX_RATE))]
    pub rate: Option<u64>,
    #[command(flatten)]
    pub vlans: VlanArgs,
    /// Move the receiver's kernel work (veth NAPI) to a kernel thread pinned to the receive
    /// CPU instead of the sender's CPU (docs/performance-tool.md, "veth caveats").
    #[arg(long)]
    pub threaded_rx: bool,
    /// Print one JSON object on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// How etherconn bursts reach the relay: `batch` (PacketRelay::send_batch of 32 frames)
    /// or `conn` (one EtherConn::send_built per datagram).
    #[arg(long, value_enum, default_value_t = TxPath::Batch)]
    pub tx_path: TxPath,
    /// Receive queue depth of each etherconn endpoint (default: 65536 / N, 64 to 4096).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub queue_depth: Option<u32>,
    #[command(flatten)]
    pub ring: RingArgs,
    /// Receive engine threads of every AF_PACKET relay of the run (`rawsock`, `rudp`), joined
    /// in a PACKET_FANOUT hash group. With one, the relay thread shares the CPU of the thread
    /// that opened it (--rx-cpu on the receiving side); with more, the relay threads may run on
    /// --tx-cpu and --rx-cpu, where the scheduler puts them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub relay_threads: u32,
    /// CPUs the AF_PACKET relays' receive threads may run on (a comma list), instead of the
    /// rule above: e.g. `--relay-threads 2 --relay-cpus 1` keeps both on the receiver's CPU.
    #[arg(long, value_name = "C[,C..]", value_delimiter = ',')]
    pub relay_cpus: Vec<usize>,
    /// CPU of the sending threads (namespace A).
    #[arg(long, default_value_t = 0)]
    pub tx_cpu: usize,
    /// CPU of the receiving threads and, with --threaded-rx, of the NAPI thread (namespace B).
    #[arg(long, default_value_t = 1)]
    pub rx_cpu: usize,
    /// Also measure each etherconn case with the receiving relay capturing every frame to
    /// this pcapng file (rows `rawsock+pcap`, `rudp+pcap`, right after the same case without):
    /// the cost of capture, in the same run. Each captured measurement rewrites the file.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Queues of the veth pair and of the AF_XDP relays (1 or 2; one thread each). With 2, the
    /// veth pair has two queues for every backend of the run, and each AF_XDP relay serves
    /// both (rows `xdp-2q`, `xdp-rudp-2q`).
    #[cfg(feature = "xdp")]
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=2))]
    pub queues: u32,
}

/// Options of `echo`.
#[derive(Clone, Debug, Args)]
pub struct EchoArgs {
    /// Interface to serve on (in this network namespace).
    #[arg(long, value_name = "IF")]
    pub iface: String,
    /// Address and prefix of endpoint 0, IPv4 or IPv6; endpoint i has address + i.
    #[arg(long, value_name = "A/PREFIX")]
    pub ip: IpCidr,
    /// MAC of endpoint 0 (unicast); endpoint i has MAC + i, which must not carry into the
    /// first octet.
    #[arg(long, value_name = "MAC", value_parser = addr::parse_unicast_mac)]
    pub mac: MacAddr,
    /// Number of endpoints.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub endpoints: u32,
    #[command(flatten)]
    pub vlans: VlanArgs,
    /// UDP port every endpoint serves.
    #[arg(long, default_value_t = 9000, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Receive queue depth of each endpoint.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub queue_depth: Option<u32>,
    /// Write every frame the relay receives and sends to this pcapng file (closed on
    /// SIGINT/SIGTERM).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
}

/// Options of `send`.
#[derive(Clone, Debug, Args)]
pub struct SendArgs {
    /// Interface to send on (in this network namespace).
    #[arg(long, value_name = "IF")]
    pub iface: String,
    /// Destination address and port (an `echo` endpoint, say): `10.0.0.1:9000` or
    /// `[2001:db8::1]:9000`.
    #[arg(long, value_name = "IP:PORT", value_parser = parse_destination)]
    pub dst: SocketAddr,
    /// MAC of endpoint 0 (unicast); endpoint i has MAC + i, which must not carry into the
    /// first octet.
    #[arg(long, value_name = "MAC", value_parser = addr::parse_unicast_mac)]
    pub mac: MacAddr,
    /// Address of endpoint 0, of the destination's family (a /prefix is accepted and
    /// ignored); endpoint i has address + i.
    #[arg(long, value_name = "A")]
    pub ip: IpCidr,
    /// Destination MAC (the peer's or the next hop's); found with ARP or IPv6 neighbour
    /// discovery when not given.
    #[arg(long, value_name = "MAC", value_parser = addr::parse_unicast_mac)]
    pub dst_mac: Option<MacAddr>,
    /// Number of sending endpoints (round robin).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub endpoints: u32,
    #[command(flatten)]
    pub vlans: VlanArgs,
    /// UDP payload bytes.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(MIN_PAYLOAD..=1472))]
    pub payload: u32,
    /// Seconds to send.
    #[arg(long, default_value_t = 3.0, value_parser = parse_seconds)]
    pub seconds: f64,
    /// Datagrams per second in all (default: as fast as possible).
    #[arg(long, value_name = "PPS", value_parser = clap::value_parser!(u64).range(1..=MAX_RATE))]
    pub rate: Option<u64>,
    /// Source UDP port of every endpoint.
    #[arg(long, default_value_t = 40000, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// How bursts reach the relay.
    #[arg(long, value_enum, default_value_t = TxPath::Batch)]
    pub tx_path: TxPath,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Write every frame the relay sends and receives to this pcapng file (closed at the
    /// end, and on SIGINT/SIGTERM).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
}

/// Options of `scale`.
#[derive(Clone, Debug, Args)]
pub struct ScaleArgs {
    /// Runs of each scenario, each in a fresh process (veth and rate scenarios: at most 3).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub reps: u32,
    /// Frames per throughput measurement of the in-process scenarios (dispatch, active,
    /// profile).
    #[arg(long, default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..=MAX_FRAMES))]
    pub frames: u64,
    /// Seconds of each veth phase; each trial of a rate search lasts a third of it.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0, value_parser = parse_seconds)]
    pub veth_secs: f64,
    /// Run only the scenarios whose name contains PATTERN (repeatable). Without it, every
    /// scenario but the profile ones.
    #[arg(long, value_name = "PATTERN")]
    pub only: Vec<String>,
    /// List the scenarios and their fleets.
    #[arg(long)]
    pub list: bool,
    /// Run one scenario once in this process and print its figures as `R name value` lines
    /// (what every run of a scenario is; alone, for a profiler).
    #[arg(long, num_args = 2, value_names = ["NAME", "SEED"])]
    pub child: Option<Vec<String>>,
    /// Print one JSON object on stdout (the text goes to stderr).
    #[arg(long)]
    pub json: bool,
}

impl SendArgs {
    /// Address of endpoint 0.
    pub fn base_ip(&self) -> IpAddr {
        self.ip.addr
    }
}

/// A destination `IP:PORT`: port 0 names no socket, and the address must name one host on a
/// link ([`addr::unusable_addr`]).
fn parse_destination(s: &str) -> Result<SocketAddr, String> {
    let dst: SocketAddr = s.parse().map_err(|_| {
        format!("{s:?} is not an address and port (10.0.0.1:9000, [2001:db8::1]:9000)")
    })?;
    if dst.port() == 0 {
        return Err("port 0 is not a destination port (1 to 65535)".to_owned());
    }
    if let Some(why) = addr::unusable_addr(dst.ip()) {
        return Err(format!("{} is {why}", dst.ip()));
    }
    Ok(dst)
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds from 0.1 to 3600")),
    }
}

fn parse_warmup(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=60.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds from 0 to 60")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_arguments_is_bench_with_defaults() {
        let cli = Cli::try_parse_from(["etherconn-perf"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.bench.endpoints, vec![1]);
        assert_eq!(cli.bench.payload, vec![64]);
        assert_eq!(cli.bench.backend, vec![BackendChoice::All]);
    }

    #[test]
    fn bench_flags_parse() {
        let cli = Cli::try_parse_from([
            "etherconn-perf",
            "bench",
            "--endpoints",
            "1,1000",
            "--payload",
            "64,512,1400",
            "--qinq",
            "200.100",
            "--json",
        ])
        .unwrap();
        let Some(Command::Bench(b)) = cli.command else {
            panic!("not bench")
        };
        assert_eq!(b.endpoints, vec![1, 1000]);
        assert_eq!(b.vlans.stack().len(), 2);
        assert!(Cli::try_parse_from(["etherconn-perf", "--vlan", "1", "--qinq", "2.3"]).is_err());
        let cli = Cli::try_parse_from(["etherconn-perf", "--vlans", "300.200.100"]).unwrap();
        let ids: Vec<u16> = cli.bench.vlans.stack().iter().map(|t| t.id.get()).collect();
        assert_eq!(ids, [300, 200, 100]);
        for bad in [
            &["--vlans", "1.2.3.4"][..],
            &["--vlans", "1.2", "--vlan", "3"],
            &["--vlans", "1.2", "--qinq", "3.4"],
        ] {
            let mut args = vec!["etherconn-perf"];
            args.extend_from_slice(bad);
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
        assert!(Cli::try_parse_from(["etherconn-perf", "--payload", "4"]).is_err());
        assert!(Cli::try_parse_from(["etherconn-perf", "--backend", "xdp"]).is_err());
        let cli = Cli::try_parse_from(["etherconn-perf", "--backend", "kernel,rudp"]).unwrap();
        assert_eq!(
            cli.bench.backend,
            vec![BackendChoice::Kernel, BackendChoice::Rudp]
        );
    }

    #[test]
    fn echo_and_send_parse() {
        let cli = Cli::try_parse_from([
            "etherconn-perf",
            "echo",
            "--iface",
            "eth0",
            "--ip",
            "10.0.0.1/24",
            "--mac",
            "02:00:00:00:00:01",
        ])
        .unwrap();
        assert!(matches!(cli.command, Some(Command::Echo(_))));
        assert!(Cli::try_parse_from([
            "etherconn-perf",
            "echo",
            "--iface",
            "eth0",
            "--ip",
            "10.0.0.1/24",
            "--mac",
            "nonsense",
        ])
        .is_err());
        let cli = Cli::try_parse_from([
            "etherconn-perf",
            "send",
            "--iface",
            "eth0",
            "--dst",
            "10.0.0.1:9000",
            "--mac",
            "02:00:00:00:00:02",
            "--ip",
            "10.0.0.2",
            "--rate",
            "1000",
        ])
        .unwrap();
        let Some(Command::Send(s)) = cli.command else {
            panic!("not send")
        };
        assert_eq!(s.rate, Some(1000));
        assert_eq!(s.base_ip(), IpAddr::from([10, 0, 0, 2]));
    }

    #[test]
    fn scale_flags_parse() {
        let cli = Cli::try_parse_from([
            "etherconn-perf",
            "scale",
            "--only",
            "veth",
            "--only",
            "rate",
            "--reps",
            "3",
        ])
        .unwrap();
        let Some(Command::Scale(s)) = cli.command else {
            panic!("not scale")
        };
        assert_eq!(s.only, ["veth", "rate"]);
        assert_eq!((s.reps, s.frames, s.veth_secs), (3, 1_000_000, 3.0));
        assert!(s.child.is_none() && !s.list && !s.json);
        let cli = Cli::try_parse_from([
            "etherconn-perf",
            "scale",
            "--child",
            "profile:one",
            "1",
            "--frames",
            "3000000",
        ])
        .unwrap();
        let Some(Command::Scale(s)) = cli.command else {
            panic!("not scale")
        };
        assert_eq!(s.child.unwrap(), ["profile:one", "1"]);
        assert_eq!(s.frames, 3_000_000);
        assert!(
            Cli::try_parse_from(["etherconn-perf", "scale", "--child", "reg:ether-10k"]).is_err()
        );
        assert!(Cli::try_parse_from(["etherconn-perf", "scale", "--reps", "0"]).is_err());
    }
}

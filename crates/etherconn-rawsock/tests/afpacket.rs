//! AF_PACKET sockets on a veth pair between two network namespaces made for each test.
//!
//! Root only: without root each test prints `SKIP <name>: needs root` and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use etherconn_rawsock::{
    Error, Fanout, FanoutMode, PacketSocket, RingConfig, RxMeta, SockFilter, SocketConfig,
    TxBatcher, TxConfig,
};

use netns::{in_netns, require_root, Testbed};

/// A test-only namespace fixture (the shared `etherconn-testbed` crate will replace it).
mod netns {
    use std::fs::File;
    use std::os::fd::AsRawFd;
    use std::process::Command;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
    /// `ip netns add/del` of parallel tests can race on the /run/netns mount; take turns.
    static IP_NETNS: Mutex<()> = Mutex::new(());

    /// Whether the test may run; prints the skip line if not.
    pub fn require_root(test: &str) -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            return true;
        }
        if std::env::var("ETHERCONN_REQUIRE_ROOT_TESTS").as_deref() == Ok("1") {
            panic!("{test} needs root and ETHERCONN_REQUIRE_ROOT_TESTS=1");
        }
        println!("SKIP {test}: needs root");
        false
    }

    fn ip(args: &[&str]) -> Result<(), String> {
        let out = Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| format!("ip {args:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Two namespaces joined by a veth pair, both ends up, IPv6 off (so the link is quiet).
    /// Dropping it (also while unwinding from a failed assertion) deletes both namespaces,
    /// and with them the veth pair.
    pub struct Testbed {
        pub ns_a: String,
        pub ns_b: String,
        pub veth_a: String,
        pub veth_b: String,
    }

    impl Testbed {
        pub fn new() -> Testbed {
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            let pid = std::process::id();
            let tb = Testbed {
                ns_a: format!("ecrawsock-{pid}-{id}-a"),
                ns_b: format!("ecrawsock-{pid}-{id}-b"),
                // Interface names have at most 15 bytes: "ecr" + pid (<= 6 hex) + id + side.
                veth_a: format!("ecr{pid:x}x{id:x}a"),
                veth_b: format!("ecr{pid:x}x{id:x}b"),
            };
            // `tb` exists from here on, so a failure below still deletes what was made.
            tb.setup().unwrap_or_else(|e| panic!("testbed setup: {e}"));
            tb
        }

        fn setup(&self) -> Result<(), String> {
            {
                let _turn = IP_NETNS.lock().unwrap_or_else(|e| e.into_inner());
                ip(&["netns", "add", &self.ns_a])?;
                ip(&["netns", "add", &self.ns_b])?;
            }
            for ns in [&self.ns_a, &self.ns_b] {
                for key in ["all", "default"] {
                    let path = format!("net.ipv6.conf.{key}.disable_ipv6=1");
                    ip(&["netns", "exec", ns, "sysctl", "-qw", &path])?;
                }
            }
            ip(&[
                "link",
                "add",
                &self.veth_a,
                "netns",
                &self.ns_a,
                "type",
                "veth",
                "peer",
                "name",
                &self.veth_b,
                "netns",
                &self.ns_b,
            ])?;
            self.set_link(true, true)?;
            self.set_link(false, true)
        }

        /// Sets veth end A (`a == true`) or B up or down.
        pub fn set_link(&self, a: bool, up: bool) -> Result<(), String> {
            let (ns, dev) = if a {
                (&self.ns_a, &self.veth_a)
            } else {
                (&self.ns_b, &self.veth_b)
            };
            ip(&["-n", ns, "link", "set", dev, if up { "up" } else { "down" }])
        }
    }

    impl Drop for Testbed {
        fn drop(&mut self) {
            let _turn = IP_NETNS.lock().unwrap_or_else(|e| e.into_inner());
            for ns in [&self.ns_a, &self.ns_b] {
                if let Err(e) = ip(&["netns", "del", ns]) {
                    eprintln!("testbed cleanup: {e}");
                }
            }
        }
    }

    /// Runs `f` on a new thread that has entered network namespace `ns`. Sockets it opens stay
    /// in that namespace wherever they are used afterwards.
    pub fn in_netns<T, F>(ns: &str, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let path = format!("/run/netns/{ns}");
        let handle = std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: `file` is an open namespace file that outlives the call; setns changes
            // only this thread's network namespace, and the thread ends with `f`.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        });
        handle
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }
}

const SRC_MAC: [u8; 6] = [0x02, 0xec, 0, 0, 0, 1];
const DST_MAC: [u8; 6] = [0x02, 0xec, 0, 0, 0, 2];
/// IEEE 802 local experimental EtherType, used for the bulk frames.
const TEST_ETHERTYPE: u16 = 0x88b5;

/// `ldh [12]; jeq #0x88b5, accept, drop`. The kernel's VLAN offload means an untagged test
/// frame has its EtherType at offset 12.
const ONLY_TEST_ETHERTYPE: [SockFilter; 4] = [
    SockFilter::new(0x28, 0, 0, 12),
    SockFilter::new(0x15, 0, 1, TEST_ETHERTYPE as u32),
    SockFilter::new(0x06, 0, 0, 0x0004_0000),
    SockFilter::new(0x06, 0, 0, 0),
];

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Ethernet + the given (TPID, TCI) tags + IPv4 + UDP (no UDP checksum) + payload, padded to
/// the minimum frame size.
fn udp_frame(tags: &[(u16, u16)], payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    for (tpid, tci) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let ip_start = f.len();
    let total = (20 + 8 + payload.len()) as u16;
    f.extend_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2,
    ]);
    f[ip_start + 2..ip_start + 4].copy_from_slice(&total.to_be_bytes());
    let csum = ipv4_checksum(&f[ip_start..ip_start + 20]);
    f[ip_start + 10..ip_start + 12].copy_from_slice(&csum.to_be_bytes());
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&9000u16.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f.resize(f.len().max(60 + 4 * tags.len()), 0);
    f
}

/// An untagged frame of [`TEST_ETHERTYPE`] carrying `seq`.
fn seq_frame(seq: u32) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[..6].copy_from_slice(&DST_MAC);
    f[6..12].copy_from_slice(&SRC_MAC);
    f[12..14].copy_from_slice(&TEST_ETHERTYPE.to_be_bytes());
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    f[18..].fill(0x5a);
    f
}

fn seq_of(frame: &[u8]) -> Option<u32> {
    let is_ours = frame.len() >= 18
        && frame[6..12] == SRC_MAC
        && frame[12..14] == TEST_ETHERTYPE.to_be_bytes();
    is_ours.then(|| u32::from_be_bytes([frame[14], frame[15], frame[16], frame[17]]))
}

fn open_in(ns: &str, ifname: &str, cfg: SocketConfig) -> PacketSocket {
    let ifname = ifname.to_owned();
    in_netns(ns, move || {
        PacketSocket::open(&ifname, &cfg).unwrap_or_else(|e| panic!("open {ifname}: {e}"))
    })
}

fn sender(tb: &Testbed) -> PacketSocket {
    open_in(&tb.ns_a, &tb.veth_a, SocketConfig::send_only())
}

fn send_all(tx: &PacketSocket, frames: impl IntoIterator<Item = Vec<u8>>) -> usize {
    let mut batch = TxBatcher::new(&TxConfig::default()).unwrap();
    let mut sent = 0;
    for f in frames {
        if batch.is_full() {
            sent += batch.flush(tx).unwrap();
        }
        batch.push(&f).unwrap();
    }
    sent += batch.flush(tx).unwrap();
    let stats = batch.stats();
    assert_eq!(stats.sent as usize, sent);
    sent
}

/// Receives until `want` frames of ours (from `SRC_MAC`) have arrived or `patience` passes
/// without one; returns them with their VLAN tag restored, and their metadata.
fn collect_ours(rx: &mut PacketSocket, want: usize, patience: Duration) -> Vec<(Vec<u8>, RxMeta)> {
    let mut got = Vec::new();
    let mut last = Instant::now();
    while got.len() < want && last.elapsed() < patience {
        let n = rx
            .poll_batch(Duration::from_millis(20), |frame, meta| {
                if frame.len() >= 12 && frame[6..12] == SRC_MAC {
                    let mut out = vec![0u8; frame.len() + 4];
                    let len = meta.restore_vlan(frame, &mut out).expect("restore_vlan");
                    out.truncate(len);
                    got.push((out, meta));
                }
            })
            .unwrap();
        if n > 0 {
            last = Instant::now();
        }
    }
    got
}

#[test]
fn sockets_can_move_between_and_be_shared_by_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    // A relay opens its socket in one thread and runs it in another; a send-only socket may
    // be shared by several sending threads, each with its own batcher.
    send_sync::<PacketSocket>();
    send_sync::<etherconn_rawsock::StopHandle>();
    send_sync::<Error>();
    send::<TxBatcher>();
}

#[test]
fn untagged_dot1q_and_qinq_frames_arrive_intact() {
    if !require_root("untagged_dot1q_and_qinq_frames_arrive_intact") {
        return;
    }
    let tb = Testbed::new();
    let mut rx = open_in(&tb.ns_b, &tb.veth_b, SocketConfig::default());
    let tx = sender(&tb);

    let dot1q = (5 << 13) | 100;
    let cases: Vec<(&str, Vec<(u16, u16)>)> = vec![
        ("untagged", vec![]),
        ("802.1Q id 100 pcp 5", vec![(0x8100, dot1q)]),
        (
            "QinQ 0x88a8 id 200 + 0x8100 id 100",
            vec![(0x88a8, 200), (0x8100, 100)],
        ),
        ("priority tag id 0 pcp 3", vec![(0x8100, 3 << 13)]),
        ("802.1Q id 4094 dei", vec![(0x8100, 0x1000 | 4094)]),
    ];
    let frames: Vec<Vec<u8>> = cases
        .iter()
        .enumerate()
        .map(|(i, (_, tags))| udp_frame(tags, format!("etherconn case {i}").as_bytes()))
        .collect();
    assert_eq!(send_all(&tx, frames.clone()), frames.len());

    let got = collect_ours(&mut rx, frames.len(), Duration::from_secs(2));
    assert_eq!(
        got.len(),
        frames.len(),
        "received {} of {} frames",
        got.len(),
        frames.len()
    );
    for (((name, tags), sent), (restored, meta)) in cases.iter().zip(&frames).zip(&got) {
        assert_eq!(
            restored, sent,
            "{name}: the frame (tag restored) differs from what was sent"
        );
        assert_eq!(meta.wire_len() as usize, sent.len(), "{name}");
        match (tags.first(), meta.vlan) {
            (None, vlan) => assert_eq!(vlan, None, "{name}: untagged frame reported a tag"),
            // The outer tag is either still in the bytes (checked above) or offloaded; when
            // offloaded its TCI and TPID must be exactly what was sent.
            (Some(&(tpid, tci)), Some(v)) => {
                assert_eq!((v.tci(), v.tpid.get()), (tci, tpid), "{name}")
            }
            (Some(_), None) => {}
        }
        println!("{name}: {} bytes, offloaded tag {:?}", meta.len, meta.vlan);
    }
    assert!(got.iter().all(|(_, m)| m.ifindex == rx.ifindex()));
}

#[test]
fn a_burst_of_10000_frames_is_received_or_counted_as_dropped() {
    if !require_root("a_burst_of_10000_frames_is_received_or_counted_as_dropped") {
        return;
    }
    const N: u32 = 10_000;
    let tb = Testbed::new();
    let cfg = SocketConfig {
        filter: Some(ONLY_TEST_ETHERTYPE.to_vec()),
        ..SocketConfig::default()
    };
    let mut rx = open_in(&tb.ns_b, &tb.veth_b, cfg);
    let tx = sender(&tb);

    let receiver = std::thread::spawn(move || {
        let mut seen = vec![false; N as usize];
        let (mut received, mut duplicates, mut foreign) = (0u32, 0u32, 0u32);
        let mut last = Instant::now();
        while received < N && last.elapsed() < Duration::from_secs(2) {
            let n = rx
                .poll_batch(Duration::from_millis(50), |frame, _| match seq_of(frame) {
                    Some(s) if (s as usize) < seen.len() => {
                        if std::mem::replace(&mut seen[s as usize], true) {
                            duplicates += 1;
                        } else {
                            received += 1;
                        }
                    }
                    _ => foreign += 1,
                })
                .unwrap();
            if n > 0 {
                last = Instant::now();
            }
        }
        (rx, received, duplicates, foreign)
    });

    let start = Instant::now();
    let sent = send_all(&tx, (0..N).map(|s| seq_frame(s).to_vec()));
    let send_time = start.elapsed();
    let (rx, received, duplicates, foreign) = receiver.join().unwrap();
    let stats = rx.stats().unwrap();
    println!(
        "sent {sent} in {send_time:?}; received {received}, kernel stats {stats:?}, duplicates {duplicates}, \
         foreign {foreign}"
    );
    assert_eq!(sent, N as usize, "the sender gave up on frames");
    assert_eq!((duplicates, foreign), (0, 0));
    assert_eq!(
        u64::from(received) + stats.drops,
        sent as u64,
        "received + ring drops != sent"
    );
    assert_eq!(
        stats.packets, sent as u64,
        "frames that passed the filter != sent"
    );
    assert_eq!(stats.delivered(), u64::from(received));
}

#[test]
fn a_full_ring_counts_what_it_drops() {
    if !require_root("a_full_ring_counts_what_it_drops") {
        return;
    }
    const N: u32 = 2_000;
    let tb = Testbed::new();
    // Two one-page blocks hold a few dozen frames; nobody reads while the burst arrives.
    let page = etherconn_rawsock::sys::page_size() as u32;
    let ring = RingConfig {
        block_size: page,
        block_count: 2,
        frame_size: page,
        ..RingConfig::default()
    };
    let cfg = SocketConfig {
        ring: Some(ring),
        filter: Some(ONLY_TEST_ETHERTYPE.to_vec()),
        ..SocketConfig::default()
    };
    let mut rx = open_in(&tb.ns_b, &tb.veth_b, cfg);
    let tx = sender(&tb);
    assert_eq!(
        send_all(&tx, (0..N).map(|s| seq_frame(s).to_vec())),
        N as usize
    );
    std::thread::sleep(Duration::from_millis(20));
    let got = collect_ours(&mut rx, N as usize, Duration::from_millis(200));
    let stats = rx.stats().unwrap();
    println!("tiny ring: received {}, kernel stats {stats:?}", got.len());
    assert!(stats.drops > 0, "expected the tiny ring to overflow");
    assert!(stats.freeze_q_cnt > 0);
    assert_eq!(got.len() as u64 + stats.drops, u64::from(N));
    assert_eq!(stats.packets, u64::from(N));
    // Frames arrive in order; the dropped ones are simply missing.
    let seqs: Vec<u32> = got.iter().filter_map(|(f, _)| seq_of(f)).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    // Counters are sums since open, not since the last read.
    assert_eq!(rx.stats().unwrap(), stats);
}

#[test]
fn a_missing_interface_is_reported_by_name() {
    // No root needed: the name is looked up before the socket is made.
    match PacketSocket::open("nonexistent0", &SocketConfig::default()) {
        Err(Error::NoSuchInterface { name }) => assert_eq!(name, "nonexistent0"),
        other => panic!("expected NoSuchInterface, got {other:?}"),
    }
    let long = "x".repeat(40);
    assert!(matches!(
        PacketSocket::open(&long, &SocketConfig::default()),
        Err(Error::NoSuchInterface { .. })
    ));
}

#[test]
fn a_down_interface_is_refused_and_going_down_is_reported() {
    if !require_root("a_down_interface_is_refused_and_going_down_is_reported") {
        return;
    }
    let tb = Testbed::new();
    let mut rx = open_in(&tb.ns_b, &tb.veth_b, SocketConfig::default());
    let tx = sender(&tb);

    tb.set_link(true, false).unwrap();
    let (ns, dev) = (tb.ns_a.clone(), tb.veth_a.clone());
    let res = in_netns(&ns, move || {
        PacketSocket::open(&dev, &SocketConfig::default()).map(drop)
    });
    match res {
        Err(Error::InterfaceDown { name }) => assert_eq!(name, tb.veth_a),
        other => panic!("expected InterfaceDown, got {other:?}"),
    }
    // Sending on a socket whose interface went down fails with the same error.
    let mut batch = TxBatcher::new(&TxConfig::default()).unwrap();
    batch.push(&seq_frame(0)).unwrap();
    assert!(
        matches!(batch.flush(&tx), Err(Error::InterfaceDown { .. })),
        "{:?}",
        batch.stats()
    );
    assert_eq!(batch.stats().dropped, 1);

    // A receiving socket learns it from poll_batch, once, and works again when the link is up.
    tb.set_link(false, false).unwrap();
    let res = rx.poll_batch(Duration::from_secs(1), |_, _| {});
    assert!(matches!(res, Err(Error::InterfaceDown { .. })), "{res:?}");
    tb.set_link(false, true).unwrap();
    tb.set_link(true, true).unwrap();
    assert_eq!(send_all(&tx, [seq_frame(1).to_vec()]), 1);
    let got = collect_ours(&mut rx, 1, Duration::from_secs(2));
    assert_eq!(got.len(), 1);
    assert_eq!(seq_of(&got[0].0), Some(1));
}

#[test]
fn without_privileges_open_says_permission_denied() {
    if !require_root("without_privileges_open_says_permission_denied") {
        return;
    }
    let res = std::thread::spawn(|| {
        // The raw syscall changes only this thread's credentials (glibc's setresuid would
        // change every thread's); with all its uids non-zero the thread loses its capabilities.
        // SAFETY: setresuid takes three integers; on success only this thread's ids change,
        // and the thread ends right after the check.
        let r = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        assert_eq!(r, 0, "setresuid: {}", std::io::Error::last_os_error());
        PacketSocket::open("lo", &SocketConfig::default()).map(drop)
    })
    .join()
    .unwrap();
    match res {
        Err(e @ Error::PermissionDenied { .. }) => {
            assert!(e.to_string().contains("CAP_NET_RAW"), "{e}");
        }
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
}

#[test]
fn stop_handle_ends_a_blocked_poll_promptly() {
    if !require_root("stop_handle_ends_a_blocked_poll_promptly") {
        return;
    }
    let tb = Testbed::new();
    // A reject-all filter keeps the socket silent, so only the handle can end the poll.
    let cfg = SocketConfig {
        filter: Some(SockFilter::REJECT_ALL.to_vec()),
        ..SocketConfig::default()
    };
    let mut rx = open_in(&tb.ns_b, &tb.veth_b, cfg);
    let handle = rx.stop_handle();

    // wake(): the poll returns Ok(0) early, and the socket keeps working.
    let waker = handle.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        let at = Instant::now();
        waker.wake();
        at
    });
    let start = Instant::now();
    let res = rx.poll_batch(Duration::from_secs(10), |_, _| {});
    let woke = t.join().unwrap().elapsed();
    assert_eq!(res.unwrap(), 0);
    assert!(
        start.elapsed() >= Duration::from_millis(100),
        "returned before the wake"
    );
    assert!(woke < Duration::from_millis(100), "wake took {woke:?}");
    let again = Instant::now();
    assert_eq!(
        rx.poll_batch(Duration::from_millis(60), |_, _| {}).unwrap(),
        0
    );
    assert!(
        again.elapsed() >= Duration::from_millis(50),
        "a wake must not be sticky"
    );

    // stop(): Stopped within 100 ms, and on every later call.
    let poller = std::thread::spawn(move || {
        let start = Instant::now();
        let res = rx.poll_batch(Duration::from_secs(10), |_, _| {});
        (res, start.elapsed(), Instant::now(), rx)
    });
    std::thread::sleep(Duration::from_millis(200));
    let stopped_at = Instant::now();
    handle.stop();
    let (res, blocked_for, returned_at, mut rx) = poller.join().unwrap();
    let latency = returned_at.duration_since(stopped_at);
    println!("poll blocked {blocked_for:?}, returned {latency:?} after stop()");
    assert!(matches!(res, Err(Error::Stopped)), "{res:?}");
    assert!(
        blocked_for >= Duration::from_millis(150),
        "the poll did not block"
    );
    assert!(
        latency < Duration::from_millis(100),
        "stop took {latency:?}"
    );
    assert!(handle.is_stopped());
    assert!(matches!(
        rx.poll_batch(Duration::from_secs(10), |_, _| {}),
        Err(Error::Stopped)
    ));
}

#[test]
fn a_reject_all_filter_receives_nothing_while_an_unfiltered_socket_does() {
    if !require_root("a_reject_all_filter_receives_nothing_while_an_unfiltered_socket_does") {
        return;
    }
    let tb = Testbed::new();
    let cfg = SocketConfig {
        filter: Some(SockFilter::REJECT_ALL.to_vec()),
        ..SocketConfig::default()
    };
    let mut filtered = open_in(&tb.ns_b, &tb.veth_b, cfg);
    let mut open = open_in(&tb.ns_b, &tb.veth_b, SocketConfig::default());
    let tx = sender(&tb);

    assert_eq!(send_all(&tx, (0..100).map(|s| seq_frame(s).to_vec())), 100);
    assert_eq!(
        collect_ours(&mut open, 100, Duration::from_secs(2)).len(),
        100
    );
    assert!(collect_ours(&mut filtered, 1, Duration::from_millis(200)).is_empty());
    assert_eq!(filtered.stats().unwrap().packets, 0);

    // Swap the filters at run time.
    open.set_filter(&SockFilter::REJECT_ALL).unwrap();
    filtered.set_filter(&ONLY_TEST_ETHERTYPE).unwrap();
    assert_eq!(send_all(&tx, (100..150).map(|s| seq_frame(s).to_vec())), 50);
    let got = collect_ours(&mut filtered, 50, Duration::from_secs(2));
    let seqs: Vec<u32> = got.iter().filter_map(|(f, _)| seq_of(f)).collect();
    assert_eq!(seqs, (100..150).collect::<Vec<_>>());
    assert!(collect_ours(&mut open, 1, Duration::from_millis(200)).is_empty());
    open.clear_filter().unwrap();
    open.clear_filter().unwrap(); // no filter left: still fine

    // A program the kernel cannot accept is reported as such.
    let bad = [SockFilter::new(0x15, 5, 5, 0)]; // jumps past the end, no return
    assert!(matches!(
        open.set_filter(&bad),
        Err(Error::FilterRejected {
            instructions: 1,
            ..
        })
    ));
}

#[test]
fn a_single_frame_arrives_within_a_few_milliseconds() {
    if !require_root("a_single_frame_arrives_within_a_few_milliseconds") {
        return;
    }
    let tb = Testbed::new();
    let mut rx = open_in(&tb.ns_b, &tb.veth_b, SocketConfig::default());
    let tx = sender(&tb);
    let mut delays = Vec::new();
    for seq in 0..20 {
        let sent_at = Instant::now();
        tx.send(&seq_frame(seq)).unwrap();
        let mut arrived = None;
        while arrived.is_none() && sent_at.elapsed() < Duration::from_secs(1) {
            rx.poll_batch(Duration::from_millis(200), |f, _| {
                if seq_of(f) == Some(seq) {
                    arrived = Some(sent_at.elapsed());
                }
            })
            .unwrap();
        }
        delays.push(arrived.expect("frame lost"));
    }
    delays.sort();
    let (median, worst) = (delays[delays.len() / 2], delays[delays.len() - 1]);
    println!("single-frame delay with a 1 ms block timeout: median {median:?}, worst {worst:?}");
    assert!(median < Duration::from_millis(20), "median {median:?}");
}

#[test]
fn a_fanout_group_shares_frames_between_its_sockets() {
    if !require_root("a_fanout_group_shares_frames_between_its_sockets") {
        return;
    }
    let tb = Testbed::new();
    let cfg = SocketConfig {
        fanout: Some(Fanout {
            group: 4242,
            mode: FanoutMode::LoadBalance,
        }),
        filter: Some(ONLY_TEST_ETHERTYPE.to_vec()),
        ..SocketConfig::default()
    };
    let mut a = open_in(&tb.ns_b, &tb.veth_b, cfg.clone());
    let mut b = open_in(&tb.ns_b, &tb.veth_b, cfg);
    let tx = sender(&tb);
    assert_eq!(send_all(&tx, (0..200).map(|s| seq_frame(s).to_vec())), 200);
    let got_a = collect_ours(&mut a, 200, Duration::from_millis(300));
    let got_b = collect_ours(&mut b, 200, Duration::from_millis(300));
    let seqs: HashSet<u32> = got_a
        .iter()
        .chain(&got_b)
        .filter_map(|(f, _)| seq_of(f))
        .collect();
    println!("fanout: {} + {} frames", got_a.len(), got_b.len());
    assert_eq!(got_a.len() + got_b.len(), 200);
    assert_eq!(seqs.len(), 200);
    assert!(!got_a.is_empty() && !got_b.is_empty());

    // Fanout needs a ring to fan out to.
    let bad = SocketConfig {
        ring: None,
        ..SocketConfig::default()
    };
    let bad = SocketConfig {
        fanout: Some(Fanout {
            group: 1,
            mode: FanoutMode::Hash,
        }),
        ..bad
    };
    assert!(matches!(
        PacketSocket::open("lo", &bad),
        Err(Error::InvalidConfig(_))
    ));
}

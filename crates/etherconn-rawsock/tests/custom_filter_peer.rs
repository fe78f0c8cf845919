//! A user's own classic BPF program on the AF_PACKET relay (`RawSocketRelayConfig::filter`),
//! against frames scapy sends (`etherconn-testbed`'s `peers/send_frames.py`, in namespace `a`
//! of a veth testbed). The program passes IPv4 UDP datagrams to port 7000 and nothing else, so
//! the kernel drops the rest before the relay sees them: they reach no conn (not even the
//! default conn, which takes every unicast frame no key matches) and no relay counter counts
//! them. A tagged datagram to port 7000 passes too (the kernel moved its tag out before the
//! program ran) and reaches its VLAN's conn with the tag put back.
//!
//! Root only (and python3 with scapy): without root the test prints a skip line and passes,
//! unless `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use etherconn_core::bpf::{
    Instruction, Program, BPF_ABS, BPF_B, BPF_H, BPF_IND, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_LDX,
    BPF_MSH, BPF_RET, DEFAULT_ACCEPT_LEN,
};
use etherconn_core::wire::{EtherType, Tpid};
use etherconn_rawsock::{RawSocketRelay, RawSocketRelayConfig};
use etherconn_relay::{EtherConnConfig, PacketRelay};
use etherconn_testbed::suite::{
    assert_no_leftovers, conn, mac, quiet, specs, tag, udp_payload, wait_stats, Scapy, Spec, X,
};
use etherconn_testbed::Testbed;

/// Accepts IPv4 frames carrying UDP to port 7000 (any IP header length), rejects the rest.
fn udp_port_7000() -> Program {
    let s = Instruction::stmt;
    let j = Instruction::jump;
    Program::from_instructions(vec![
        s(BPF_LD | BPF_H | BPF_ABS, 12),            // 0: A = EtherType
        j(BPF_JMP | BPF_JEQ | BPF_K, 0x0800, 0, 6), // 1: IPv4, else reject
        s(BPF_LD | BPF_B | BPF_ABS, 23),            // 2: A = IP protocol
        j(BPF_JMP | BPF_JEQ | BPF_K, 17, 0, 4),     // 3: UDP, else reject
        s(BPF_LDX | BPF_B | BPF_MSH, 14),           // 4: X = IP header length
        s(BPF_LD | BPF_H | BPF_IND, 16),            // 5: A = UDP destination port
        j(BPF_JMP | BPF_JEQ | BPF_K, 7000, 0, 1),   // 6: port 7000, else reject
        s(BPF_RET | BPF_K, DEFAULT_ACCEPT_LEN),     // 7: accept
        s(BPF_RET | BPF_K, 0),                      // 8: reject
    ])
}

/// The bytes of a frame that scapy builds from `expr`, as hex.
fn scapy_hex(expr: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "from scapy.all import *\nprint(bytes({expr}).hex())"
        ))
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "scapy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn custom_bpf_program_decides_what_the_relay_sees() {
    if !etherconn_testbed::require_root("custom_bpf_program_decides_what_the_relay_sees") {
        return;
    }
    let prefix = "ecbpfpeer-";
    let tb = Testbed::new(prefix).unwrap();
    quiet(&tb);
    let config = RawSocketRelayConfig::default().filter(udp_port_7000());
    let relay =
        tb.b.run_in(|| RawSocketRelay::new(&tb.b_if, config))
            .unwrap()
            .unwrap();
    let dyn_relay: Arc<dyn PacketRelay> = relay.clone();
    // A user's program: the relay cannot tell what passes, so it refuses no EtherType.
    assert!(dyn_relay.receives(EtherType::IPV6));
    assert!(dyn_relay.receives(EtherType(0x88b5)));

    let x = mac(X);
    let cfg = EtherConnConfig::default;
    let untagged = conn(&dyn_relay, x, &[], cfg());
    let v100 = conn(&dyn_relay, x, &[tag(Tpid::DOT1Q, 100)], cfg());
    let custom = conn(&dyn_relay, x, &[], cfg().ethertypes(&[EtherType(0x88b5)]));
    let default = conn(
        &dyn_relay,
        mac("02:ec:00:00:0d:ef"),
        &[],
        cfg().default_conn(true),
    );

    // send_frames.py takes numbers for IP fields only: scapy builds this one on its own.
    let with_ip_options = scapy_hex(&format!(
        "Ether(src='02:aa:00:00:00:01', dst='{X}') / IP(src='10.88.0.1', dst='10.88.0.2', \
         options=[IPOption_NOP()] * 4) / UDP(sport=1005, dport=7000) \
         / Raw(b'IPv4 options, port 7000: passed')"
    ));
    let mut scapy = Scapy::start(&tb);
    scapy.send(&specs(&[
        Spec::udp4(X, 1001, "to port 7001: rejected").n("dport", 7001),
        Spec::udp4(
            "02:ec:00:00:09:09",
            1002,
            "to another MAC, port 7001: rejected",
        )
        .n("dport", 7001),
        Spec::udp4(X, 1003, "UDPv6: rejected")
            .s("l3", "ipv6")
            .s("ipsrc", "2001:db8:88::1")
            .s("ipdst", "2001:db8:88::2"),
        // A UDP header to port 7000 after IP protocol 6: the protocol check rejects it.
        Spec::udp4(X, 1004, "IP protocol 6: rejected").ip("proto", 6),
        Spec(vec![])
            .s("dst", X)
            .s("src", "02:aa:00:00:00:01")
            .s("l3", "ether")
            .n("ethertype", 0x88b5)
            .s("payload", "EtherType 0x88b5: rejected"),
        Spec(vec![]).s("raw", &with_ip_options),
        Spec::udp4(X, 1006, "vlan 100, port 7000: passed").tags(&[(0x8100, 100)]),
        Spec::udp4(X, 1007, "port 7000: passed"),
    ]));

    let got = |c: &etherconn_relay::EtherConn, what: &str| {
        let rx = c.recv_frame().unwrap_or_else(|e| panic!("{what}: {e}"));
        let udp = rx.info.udp().expect("UDP");
        let ids: Vec<u16> = rx
            .info
            .vlans()
            .as_slice()
            .iter()
            .map(|t| t.id.get())
            .collect();
        (
            String::from_utf8_lossy(udp_payload(&rx)).into_owned(),
            udp.remote.port(),
            udp.local.port(),
            ids,
        )
    };
    assert_eq!(
        got(&v100, "vlan 100"),
        ("vlan 100, port 7000: passed".into(), 1006, 7000, vec![100])
    );
    // IPv4 options put the port further on: the program reads it through the header length,
    // and the options frame, sent earlier, is queued first.
    assert_eq!(
        got(&untagged, "options"),
        ("IPv4 options, port 7000: passed".into(), 1005, 7000, vec![])
    );
    assert_eq!(
        got(&untagged, "plain"),
        ("port 7000: passed".into(), 1007, 7000, vec![])
    );
    // The plain datagram went last on the one receive thread: everything before it that the
    // kernel passed has been dispatched.
    let s = wait_stats(&dyn_relay, "3 delivered", |s| s.rx_delivered == 3);
    for c in [&untagged, &v100, &custom, &default] {
        assert_eq!(c.queued(), 0, "{c:?}");
    }
    // The five rejected frames never reached the relay: offered, invalid, missed, defaulted
    // or dropped, they would be counted.
    assert_eq!(s.rx_offered, 3, "{s}");
    assert_eq!(
        (
            s.rx_invalid,
            s.rx_miss,
            s.rx_to_default,
            s.rx_multicast_delivered,
            s.rx_multicast_ignored,
            s.rx_fragments,
            s.rx_queue_full,
            s.rx_backend_dropped,
        ),
        (0, 0, 0, 0, 0, 0, 0, 0),
        "{s}"
    );
    // Nothing comes later either.
    default
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(default.recv_frame().is_err());

    drop(scapy);
    drop((untagged, v100, custom, default, dyn_relay));
    relay.stop();
    drop(relay);
    drop(tb);
    assert_no_leftovers(prefix);
}

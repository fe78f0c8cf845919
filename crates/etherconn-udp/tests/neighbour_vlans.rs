//! The neighbour responder's answers behind 802.1Q and QinQ, decoded by scapy
//! (`tests/peers/nd_peer.py`, in namespace `a` of a veth testbed; this kernel has no 802.1Q
//! module, so no kernel peer can be tagged): ARP requests and neighbour solicitations,
//! broadcast/multicast and unicast, are answered from the right MAC on the VLAN stack they
//! came on, and only there; forged or foreign ones are not.
//!
//! Root only (and python3 with scapy): without root the test prints a skip line and passes,
//! unless `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use etherconn_core::wire::{MacAddr, Tpid, VlanId, VlanTag};
use etherconn_rawsock::{RawSocketRelay, RawSocketRelayConfig};
use etherconn_relay::PacketRelay;
use etherconn_testbed::Testbed;
use etherconn_udp::{NeighbourConfig, Neighbours, RUdpConfig, RUdpConn};
use serde_json::{json, Value};

const PEER: &str = "02:aa:bb:cc:dd:01";
const M1: MacAddr = MacAddr([0x02, 0xec, 0x68, 0, 0, 1]);
const M2: MacAddr = MacAddr([0x02, 0xec, 0x68, 0, 0, 2]);
const M3: MacAddr = MacAddr([0x02, 0xec, 0x68, 0, 0, 3]);

fn tag(tpid: Tpid, id: u16) -> VlanTag {
    VlanTag::new(tpid, VlanId::new(id).unwrap())
}

fn run_peer(tb: &Testbed, request: &Value) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/nd_peer.py");
    let mut child =
        tb.a.command("python3")
            .arg(script)
            .arg(&tb.a_if)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3 nd_peer.py");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(request.to_string().as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "nd_peer.py failed");
    serde_json::from_slice(&out.stdout).expect("nd_peer.py prints JSON")
}

/// A neighbour solicitation from `2001:db8:68::1<n>` (each case its own source: the answers
/// are told apart by their destination).
fn ns(name: &str, n: u8, vlans: Value, target: &str) -> Value {
    let ipsrc = format!("2001:db8:68::1{n:02}");
    json!({"name": name, "kind": "ns", "vlans": vlans, "target": target, "ipsrc": ipsrc})
}

/// An ARP request from `10.68.0.1<n>`.
fn arp(name: &str, n: u8, vlans: Value, target: &str) -> Value {
    let ipsrc = format!("10.68.0.{}", 100 + n);
    json!({"name": name, "kind": "arp", "vlans": vlans, "target": target, "ipsrc": ipsrc})
}

#[test]
fn answers_behind_dot1q_and_qinq_as_scapy_decodes_them() {
    if !etherconn_testbed::require_root("answers_behind_dot1q_and_qinq_as_scapy_decodes_them") {
        return;
    }
    let prefix = "ecnd-v-";
    let tb = Testbed::new(prefix).unwrap();
    let relay: Arc<dyn PacketRelay> =
        tb.b.run_in(|| RawSocketRelay::new(&tb.b_if, RawSocketRelayConfig::default()))
            .unwrap()
            .unwrap();
    let nd = Neighbours::new(relay.clone(), NeighbourConfig::default()).unwrap();
    let cfg = RUdpConfig::default().neighbours(&nd);
    let dot1q = [VlanTag::dot1q(100).unwrap()];
    let qinq = [tag(Tpid::QINQ, 300), tag(Tpid::DOT1Q, 400)];
    let mut conns = Vec::new();
    for (mac, vlans, v4, v6) in [
        (M1, &dot1q[..], "10.68.0.2", "2001:db8:68::2"),
        (M2, &qinq[..], "10.68.0.3", "2001:db8:68::3"),
        (M3, &[][..], "10.68.0.4", "2001:db8:68::4"),
    ] {
        for ip in [v4, v6] {
            let local = SocketAddr::new(ip.parse().unwrap(), 7);
            conns.push(RUdpConn::new(relay.clone(), mac, vlans, local, cfg.clone()).unwrap());
        }
    }
    let v100 = json!([[0x8100, 100]]);
    let v300_400 = json!([[0x88a8, 300], [0x8100, 400]]);
    let mut unicast_arp = arp("arp unicast", 6, v100.clone(), "10.68.0.2");
    unicast_arp["dst"] = json!(M1.to_string());
    let mut unicast_ns = ns("ns unicast", 5, v100.clone(), "2001:db8:68::2");
    unicast_ns["dst"] = json!(M1.to_string());
    unicast_ns["ipdst"] = json!("2001:db8:68::2");
    let mut hop64 = ns("ns hop limit 64", 6, v100.clone(), "2001:db8:68::2");
    hop64["hlim"] = json!(64);
    let mut dad = ns("ns dad", 7, v100.clone(), "2001:db8:68::2");
    dad["ipsrc"] = json!("::");
    dad["slla"] = json!(false);
    let request = json!({
        "peer": PEER,
        "ours": [M1.to_string(), M2.to_string(), M3.to_string()],
        "cases": [
            arp("arp untagged", 1, json!([]), "10.68.0.4"),
            arp("arp dot1q", 2, v100.clone(), "10.68.0.2"),
            arp("arp wrong vlan", 3, json!([[0x8100, 101]]), "10.68.0.2"),
            arp("arp qinq", 4, v300_400.clone(), "10.68.0.3"),
            arp("arp qinq for the dot1q address", 5, v300_400.clone(), "10.68.0.2"),
            unicast_arp,
            ns("ns untagged", 1, json!([]), "2001:db8:68::4"),
            ns("ns dot1q", 2, v100.clone(), "2001:db8:68::2"),
            ns("ns qinq", 3, v300_400.clone(), "2001:db8:68::3"),
            ns("ns unknown target", 4, v100.clone(), "2001:db8:68::77"),
            unicast_ns,
            hop64,
            dad,
        ],
    });
    let got = run_peer(&tb, &request);
    println!("{got:#}");
    let answers = |name: &str| got[name].as_array().cloned().unwrap_or_default();
    let one = |name: &str| {
        let a = answers(name);
        assert_eq!(a.len(), 1, "{name}: {a:?}");
        a[0].clone()
    };

    let source = |name: &str| {
        request["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["ipsrc"]
            .clone()
    };
    for (name, mac, vlans, ip) in [
        ("arp untagged", M3, json!([]), "10.68.0.4"),
        ("arp dot1q", M1, v100.clone(), "10.68.0.2"),
        ("arp qinq", M2, v300_400.clone(), "10.68.0.3"),
        ("arp unicast", M1, v100.clone(), "10.68.0.2"),
    ] {
        let a = one(name);
        assert_eq!(a["kind"], "arp", "{name}");
        assert_eq!(a["op"], 2, "{name}: a reply");
        assert_eq!(a["eth_src"], mac.to_string(), "{name}");
        assert_eq!(a["eth_dst"], PEER, "{name}");
        assert_eq!(a["vlans"], vlans, "{name}");
        assert_eq!(
            (&a["hwsrc"], &a["psrc"]),
            (&json!(mac.to_string()), &json!(ip)),
            "{name}"
        );
        assert_eq!(
            (&a["hwdst"], &a["pdst"]),
            (&json!(PEER), &source(name)),
            "{name}"
        );
    }
    for (name, mac, vlans, ip) in [
        ("ns untagged", M3, json!([]), "2001:db8:68::4"),
        ("ns dot1q", M1, v100.clone(), "2001:db8:68::2"),
        ("ns qinq", M2, v300_400.clone(), "2001:db8:68::3"),
        ("ns unicast", M1, v100.clone(), "2001:db8:68::2"),
    ] {
        let a = one(name);
        assert_eq!(a["kind"], "na", "{name}");
        assert_eq!(a["eth_src"], mac.to_string(), "{name}");
        assert_eq!(a["eth_dst"], PEER, "{name}");
        assert_eq!(a["vlans"], vlans, "{name}");
        assert_eq!(
            (&a["ipsrc"], &a["ipdst"]),
            (&json!(ip), &source(name)),
            "{name}"
        );
        assert_eq!(
            (&a["tgt"], &a["lladdr"]),
            (&json!(ip), &json!(mac.to_string())),
            "{name}"
        );
        assert_eq!(
            (&a["R"], &a["S"], &a["O"]),
            (&json!(0), &json!(1), &json!(1)),
            "{name}"
        );
        assert_eq!(a["hlim"], 255, "{name}");
        assert_eq!(a["cksum_ok"], true, "{name}");
    }
    // A duplicate address detection probe is answered to all nodes, unsolicited.
    let a = one("ns dad");
    assert_eq!(
        (&a["ipdst"], &a["eth_dst"]),
        (&json!("ff02::1"), &json!("33:33:00:00:00:01"))
    );
    assert_eq!(
        (&a["S"], &a["O"], &a["cksum_ok"]),
        (&json!(0), &json!(1), &json!(true))
    );
    for silent in [
        "arp wrong vlan",
        "arp qinq for the dot1q address",
        "ns unknown target",
        "ns hop limit 64",
        "unattributed",
    ] {
        assert!(
            answers(silent).is_empty(),
            "{silent}: {:?}",
            answers(silent)
        );
    }
    let s = nd.stats();
    println!("{s}");
    assert_eq!((s.arp_replies, s.na_replies), (4, 5), "{s}");
    drop(conns);
    drop(nd);
    relay.stop();
    drop(relay);
    drop(tb);
    let left = etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix(prefix));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

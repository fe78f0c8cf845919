//! `dhcp_fleet --pcap` interrupted by Ctrl-C: three clients with no server keep sending
//! DISCOVERs behind QinQ tags; SIGINT ends the run as it does without a
//! capture (killed by SIGINT), and the file it leaves, read by tshark, holds those DISCOVERs,
//! outbound, with their VLAN tags and good checksums.
//!
//! Root only: without root the test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use etherconn_testbed::{
    leftover_namespaces, process_prefix, require_root, tshark_fields, Testbed,
};

const BIN: &str = env!("CARGO_BIN_EXE_dhcp_fleet");

#[test]
fn ctrl_c_leaves_a_complete_capture() {
    if !require_root("ctrl_c_leaves_a_complete_capture") {
        return;
    }
    let prefix = "ecdf-p-";
    let tb = Testbed::new(prefix).expect("testbed");
    let file = std::env::temp_dir().join(format!("dhcp-fleet-{}.pcapng", std::process::id()));
    let mut child =
        tb.b.command(BIN)
            .args([
                "--iface",
                &tb.b_if,
                "--clients",
                "3",
                "--qinq",
                "10",
                "--vlan",
                "200-202",
            ])
            .args(["--rto-ms", "100", "--timeout", "60", "--pcap"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dhcp_fleet");
    // Long enough for a few retransmissions of each DISCOVER.
    std::thread::sleep(Duration::from_millis(1500));
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dhcp_fleet still running 5 s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Killed by SIGINT (2 on every Linux architecture), as without a capture.
    assert_eq!(status.signal(), Some(2), "{status:?}");

    let rows = tshark_fields(
        &file,
        &[
            "frame.packet_flags_direction",
            "ieee8021ad.id",
            "vlan.id",
            "dhcp.option.dhcp",
            "ip.checksum.status",
            "udp.checksum.status",
            "udp.dstport",
        ],
    )
    .unwrap();
    let _ = std::fs::remove_file(&file);
    let discovers: Vec<_> = rows.iter().filter(|r| r[3] == "1").collect();
    assert!(discovers.len() >= 6, "a few DISCOVERs per client: {rows:?}");
    for r in &discovers {
        assert_eq!(r[0], "0x00000002", "sent: {r:?}");
        assert_eq!(r[1], "10", "outer tag 0x88a8, id 10: {r:?}");
        assert!(["200", "201", "202"].contains(&r[2].as_str()), "{r:?}");
        assert_eq!(
            (r[4].as_str(), r[5].as_str(), r[6].as_str()),
            ("1", "1", "67"),
            "{r:?}"
        );
    }
    drop(tb);
    assert!(leftover_namespaces(&process_prefix(prefix)).is_empty());
}

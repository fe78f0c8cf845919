//! Root-only tests: each builds real namespaces and veth pairs and checks they are gone after.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use etherconn_testbed::{
    leftover_namespaces, process_prefix, remove_stale_namespaces, require_root, Netns, Side,
    Testbed,
};

const TIMEOUT: Duration = Duration::from_secs(2);

/// Fails if a namespace of this process with `prefix` or one of `ifnames` still exists.
fn assert_all_gone(prefix: &str, ifnames: &[&str]) {
    assert_eq!(
        leftover_namespaces(&process_prefix(prefix)),
        Vec::<String>::new()
    );
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&out.stdout);
    for ifname in ifnames {
        let present = links.lines().any(|line| {
            line.split_whitespace()
                .nth(1)
                .is_some_and(|n| n.starts_with(ifname))
        });
        assert!(!present, "{ifname} still in the root namespace:\n{links}");
    }
}

/// The network namespace of the calling thread, as `net:[inode]`.
fn thread_netns() -> String {
    std::fs::read_link("/proc/thread-self/ns/net")
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// A UDP echo round trip from `a` to `b`: the server thread is started with `spawn_thread_in`,
/// the client socket is created with `run_in`, so both sockets must be in their namespaces.
fn udp_round_trip(tb: &Testbed, client_ip: &str, server_ip: &str) {
    let server_addr: SocketAddr = format!("{server_ip}:0").parse().unwrap();
    let client_addr: SocketAddr = format!("{client_ip}:0").parse().unwrap();
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = tb.b.spawn_thread_in(move || -> std::io::Result<()> {
        let socket = UdpSocket::bind(server_addr)?;
        socket.set_read_timeout(Some(TIMEOUT))?;
        ready_tx.send(socket.local_addr()?).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = socket.recv_from(&mut buf)?;
        socket.send_to(&buf[..n], from)?;
        Ok(())
    });
    let server_addr = ready_rx
        .recv_timeout(TIMEOUT)
        .expect("server did not start");
    let client =
        tb.a.run_in(|| UdpSocket::bind(client_addr))
            .unwrap()
            .unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    client.send_to(b"etherconn testbed", server_addr).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"etherconn testbed"[..], server_addr));
    server.join().unwrap().unwrap().unwrap();
}

#[test]
fn udp_round_trip_ipv4_then_everything_removed() {
    if !require_root("udp_round_trip_ipv4_then_everything_removed") {
        return;
    }
    const PREFIX: &str = "ectb-udp4-";
    let tb = Testbed::new(PREFIX).unwrap();
    assert!(tb.a_if.len() <= 15 && tb.b_if.len() <= 15);
    assert_ne!(tb.a_mac, tb.b_mac);
    assert_eq!(leftover_namespaces(&process_prefix(PREFIX)).len(), 2);
    tb.add_addr(Side::A, "10.99.0.1/24").unwrap();
    tb.add_addr(Side::B, "10.99.0.2/24").unwrap();
    udp_round_trip(&tb, "10.99.0.1", "10.99.0.2");
    let (a_if, b_if) = (tb.a_if.clone(), tb.b_if.clone());
    drop(tb);
    assert_all_gone(PREFIX, &[&a_if, &b_if]);
}

#[test]
fn udp_round_trip_ipv6_needs_no_dad_wait() {
    if !require_root("udp_round_trip_ipv6_needs_no_dad_wait") {
        return;
    }
    const PREFIX: &str = "ectb-udp6-";
    let tb = Testbed::new(PREFIX).unwrap();
    tb.add_addr(Side::A, "2001:db8:99::1/64").unwrap();
    tb.add_addr(Side::B, "2001:db8:99::2/64").unwrap();
    udp_round_trip(&tb, "[2001:db8:99::1]", "[2001:db8:99::2]");
    let dad =
        tb.b.exec(&[
            "sysctl",
            "-n",
            &format!("net.ipv6.conf.{}.accept_dad", tb.b_if),
        ])
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&dad.stdout).trim(), "0");
    drop(tb);
    assert_all_gone(PREFIX, &[]);
}

#[test]
fn ping_between_namespaces() {
    if !require_root("ping_between_namespaces") {
        return;
    }
    if Command::new("ping").arg("-V").output().is_err() {
        eprintln!("SKIP ping_between_namespaces: no ping binary (apt install iputils-ping)");
        return;
    }
    const PREFIX: &str = "ectb-ping-";
    let tb = Testbed::new(PREFIX).unwrap();
    tb.add_addr(Side::A, "10.99.0.1/24").unwrap();
    tb.add_addr(Side::B, "10.99.0.2/24").unwrap();
    tb.a.exec(&["ping", "-c1", "-W1", "10.99.0.2"]).unwrap();
    drop(tb);
    assert_all_gone(PREFIX, &[]);
}

#[test]
fn spawned_thread_and_run_in_are_inside_the_namespace() {
    if !require_root("spawned_thread_and_run_in_are_inside_the_namespace") {
        return;
    }
    const PREFIX: &str = "ectb-setns-";
    let ns = Netns::new(PREFIX).unwrap();
    let expected = ns.exec(&["readlink", "/proc/self/ns/net"]).unwrap();
    let expected = String::from_utf8_lossy(&expected.stdout).trim().to_owned();
    let outside = thread_netns();
    assert_ne!(expected, outside);
    assert_eq!(
        ns.spawn_thread_in(thread_netns).join().unwrap().unwrap(),
        expected
    );
    assert_eq!(ns.run_in(thread_netns).unwrap(), expected);
    // Entering changes only the entering thread.
    assert_eq!(thread_netns(), outside);
    let entered = std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter_current_thread().unwrap();
            thread_netns()
        })
        .join()
        .unwrap()
    });
    assert_eq!(entered, expected);
    assert_eq!(thread_netns(), outside);
    drop(ns);
    assert_all_gone(PREFIX, &[]);
}

#[test]
fn run_in_resumes_a_panic_and_the_namespace_still_goes() {
    if !require_root("run_in_resumes_a_panic_and_the_namespace_still_goes") {
        return;
    }
    const PREFIX: &str = "ectb-runpanic-";
    let ns = Netns::new(PREFIX).unwrap();
    let result = panic::catch_unwind(AssertUnwindSafe(|| ns.run_in(|| panic!("inside run_in"))));
    let payload = result.expect_err("the panic must reach the caller");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"inside run_in"));
    drop(ns);
    assert_all_gone(PREFIX, &[]);
}

#[test]
fn panic_while_a_testbed_exists_still_removes_it() {
    if !require_root("panic_while_a_testbed_exists_still_removes_it") {
        return;
    }
    const PREFIX: &str = "ectb-panic-";
    let mut names = Vec::new();
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let tb = Testbed::new(PREFIX).unwrap();
        names = vec![tb.a_if.clone(), tb.b_if.clone()];
        assert_eq!(leftover_namespaces(&process_prefix(PREFIX)).len(), 2);
        panic!("test body fails while the testbed exists");
    }));
    assert!(result.is_err());
    assert_eq!(names.len(), 2);
    assert_all_gone(PREFIX, &[&names[0], &names[1]]);
}

#[test]
fn drop_kills_processes_left_in_the_namespace() {
    if !require_root("drop_kills_processes_left_in_the_namespace") {
        return;
    }
    const PREFIX: &str = "ectb-procs-";
    let ns = Netns::new(PREFIX).unwrap();
    let mut child = ns.command("sleep").arg("60").spawn().unwrap();
    // `ip netns exec` execs the program, so the child itself ends up in the namespace.
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !ns.pids().unwrap().contains(&child.id()) {
        assert!(
            std::time::Instant::now() < deadline,
            "sleep never entered the namespace"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(ns);
    let status = child.wait().unwrap();
    assert!(!status.success(), "sleep should have been killed: {status}");
    assert_all_gone(PREFIX, &[]);
}

#[test]
fn exec_error_carries_stderr() {
    if !require_root("exec_error_carries_stderr") {
        return;
    }
    const PREFIX: &str = "ectb-exec-";
    let ns = Netns::new(PREFIX).unwrap();
    let out = ns.exec(&["ip", "-o", "link", "show", "dev", "lo"]).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("lo:"));
    let err = ns
        .exec(&["ip", "link", "show", "dev", "nosuch0"])
        .unwrap_err();
    assert!(err.to_string().contains("nosuch0"), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(ns.exec(&[]).is_err());
    assert!(Netns::new("bad/prefix").is_err());
    drop(ns);
    assert_all_gone(PREFIX, &[]);
}

#[test]
fn neighbours_promisc_mac_and_offloads() {
    if !require_root("neighbours_promisc_mac_and_offloads") {
        return;
    }
    const PREFIX: &str = "ectb-knobs-";
    let mut tb = Testbed::new(PREFIX).unwrap();
    let endpoint_mac = [0x02, 0x00, 0x00, 0x99, 0x00, 0x07];
    tb.add_neigh(Side::A, Ipv4Addr::new(10, 99, 0, 7), endpoint_mac)
        .unwrap();
    tb.add_neigh(
        Side::A,
        "2001:db8:99::7".parse::<std::net::IpAddr>().unwrap(),
        endpoint_mac,
    )
    .unwrap();
    let neigh = tb.a.ip(&["neigh", "show", "dev", &tb.a_if]).unwrap();
    let neigh = String::from_utf8_lossy(&neigh.stdout);
    assert!(
        neigh.contains("10.99.0.7 lladdr 02:00:00:99:00:07 PERMANENT"),
        "{neigh}"
    );
    assert!(
        neigh.contains("2001:db8:99::7 lladdr 02:00:00:99:00:07 PERMANENT"),
        "{neigh}"
    );

    tb.set_promisc(Side::B, true).unwrap();
    let link = tb.b.ip(&["link", "show", "dev", &tb.b_if]).unwrap();
    assert!(String::from_utf8_lossy(&link.stdout).contains("PROMISC"));

    let new_mac = [0x02, 0x00, 0x00, 0x99, 0x00, 0x0b];
    tb.set_mac(Side::B, new_mac).unwrap();
    assert_eq!(tb.mac(Side::B), new_mac);
    let link = tb.b.ip(&["link", "show", "dev", &tb.b_if]).unwrap();
    assert!(String::from_utf8_lossy(&link.stdout).contains("link/ether 02:00:00:99:00:0b"));

    tb.set_offloads(
        Side::B,
        &[("rx-vlan-offload", "off"), ("tx-vlan-offload", "off")],
    )
    .unwrap();
    let features = tb.b.exec(&["ethtool", "-k", &tb.b_if]).unwrap();
    let features = String::from_utf8_lossy(&features.stdout);
    assert!(features.contains("rx-vlan-offload: off"), "{features}");
    assert!(features.contains("tx-vlan-offload: off"), "{features}");
    assert!(tb
        .set_offloads(Side::B, &[("no-such-feature", "off")])
        .is_err());

    let key = format!("net.ipv6.conf.{}.disable_ipv6", tb.a_if);
    tb.set_sysctl(Side::A, &key, "1").unwrap();
    let value = tb.a.exec(&["sysctl", "-n", &key]).unwrap();
    assert_eq!(String::from_utf8_lossy(&value.stdout).trim(), "1");
    drop(tb);
    assert_all_gone(PREFIX, &[]);
}

#[test]
fn threaded_rx_mode_creates_a_pinnable_napi_thread() {
    if !require_root("threaded_rx_mode_creates_a_pinnable_napi_thread") {
        return;
    }
    const PREFIX: &str = "ectb-napi-";
    let tb = Testbed::new(PREFIX).unwrap();
    assert_eq!(tb.napi_threads(Side::B).unwrap(), Vec::<u32>::new());
    assert!(tb.pin_napi_threads(Side::B, 0).is_err());
    tb.threaded_rx_mode(Side::B).unwrap();
    let threaded =
        tb.b.exec(&["cat", &format!("/sys/class/net/{}/threaded", tb.b_if)])
            .unwrap();
    assert_eq!(String::from_utf8_lossy(&threaded.stdout).trim(), "1");
    let features = tb.a.exec(&["ethtool", "-k", &tb.a_if]).unwrap();
    assert!(String::from_utf8_lossy(&features.stdout).contains("tcp-segmentation-offload: off"));
    let cpu = std::thread::available_parallelism().map_or(0, |n| n.get() - 1);
    let pinned = tb.pin_napi_threads(Side::B, cpu).unwrap();
    assert!(!pinned.is_empty());
    for pid in &pinned {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_owned();
        assert_eq!(allowed, cpu.to_string());
    }
    // The other side stays in the default (softirq on the sender) mode.
    assert_eq!(tb.napi_threads(Side::A).unwrap(), Vec::<u32>::new());
    drop(tb);
    // The kernel frees a deleted namespace's devices from a work queue, so wait a little.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for pid in pinned {
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "napi thread {pid} outlived the pair"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert_all_gone(PREFIX, &[]);
}

#[test]
fn stale_namespaces_of_dead_processes_are_removed() {
    if !require_root("stale_namespaces_of_dead_processes_are_removed") {
        return;
    }
    const PREFIX: &str = "ectb-stale-";
    // No process has this id (above any pid_max), so its namespace is stale by definition.
    let stale = format!("{PREFIX}999999999-0-0000");
    let added = Command::new("ip")
        .args(["netns", "add", &stale])
        .status()
        .unwrap();
    assert!(added.success());
    let live = Netns::new(PREFIX).unwrap();
    assert_eq!(remove_stale_namespaces(PREFIX), vec![stale.clone()]);
    assert_eq!(leftover_namespaces(PREFIX), vec![live.name().to_owned()]);
    drop(live);
    assert_all_gone(PREFIX, &[]);
}

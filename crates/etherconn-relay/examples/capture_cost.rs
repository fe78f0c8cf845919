//! What a capture costs the relay thread, per frame, in instructions: the receive loop of a
//! relay (batches of 32 frames through `Dispatcher::delivery`, the capture looked up once per
//! batch) over N frames, with the capture off, on (every frame handed to the writer), or with every slot
//! taken (a writer that cannot keep up: every frame dropped from the capture and counted).
//!
//! Run under callgrind, one output file per thread, and compare the relay thread's totals for
//! two frame counts (docs/performance.md, "Capture"):
//!
//! ```text
//! cargo build --release -p etherconn-relay --example capture_cost
//! valgrind --tool=callgrind --separate-threads=yes target/release/examples/capture_cost on 100000
//! ```

use std::io::{self, Write};
use std::time::Duration;

use etherconn_core::build::{build_udp_frame, UdpFrame};
use etherconn_core::wire::{MacAddr, VlanTag};
use etherconn_relay::{CaptureConfig, Direction, Dispatcher, DispatcherConfig};

/// A writer that takes a second per write: with one slot, the capture is always full.
struct Stuck;

impl Write for Stuck {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        std::thread::sleep(Duration::from_secs(1));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Slots of the "on" mode.
const ON_SLOTS: usize = 100_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mode, n) = match &args[..] {
        [_, mode, n] => (mode.as_str(), n.parse::<usize>().expect("a frame count")),
        _ => {
            eprintln!("usage: capture_cost off|on|full FRAMES");
            std::process::exit(2);
        }
    };
    let d = Dispatcher::new(DispatcherConfig::default());
    match mode {
        "off" => {}
        // A slot for every frame (up to 100,000): each is handed over, none dropped, however
        // the writer thread is scheduled. The same number whatever N, so that the set-up's
        // cost cancels out between two runs.
        "on" => d
            .start_capture(CaptureConfig::writer(io::sink()).slots(ON_SLOTS))
            .expect("capture"),
        "full" => d
            .start_capture(CaptureConfig::writer(Stuck).slots(1))
            .expect("capture"),
        _ => panic!("mode: off, on or full"),
    }
    // 64-byte UDP payloads behind an offloaded 802.1Q tag, as AF_PACKET hands them over.
    let mut buf = [0u8; 256];
    let len = build_udp_frame(
        &mut buf,
        &UdpFrame {
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            vlans: &[],
            src: "10.0.0.1:1000".parse().unwrap(),
            dst: "10.0.0.2:2000".parse().unwrap(),
            ttl: 64,
            dscp: 0,
            payload: &[0x5a; 64],
        },
    )
    .unwrap();
    let frame = &buf[..len];
    let tag = VlanTag::dot1q(100);
    let ts = Some(Duration::from_secs(1_700_000_000));
    let mut batch = d.delivery();
    let mut left = n;
    while left > 0 {
        let k = left.min(32);
        let capture = d.capture();
        for _ in 0..k {
            if let Some(c) = capture {
                c.record(Direction::Inbound, frame, tag, ts);
            }
            batch.push(frame, tag, true);
        }
        batch.flush();
        left -= k;
    }
    drop(batch);
    let st = d.stats();
    eprintln!(
        "{mode}: offered {} captured {} dropped {}",
        st.rx_offered, st.captured, st.capture_dropped
    );
    if mode == "full" {
        // Do not wait for the stuck writer.
        std::process::exit(0);
    }
}

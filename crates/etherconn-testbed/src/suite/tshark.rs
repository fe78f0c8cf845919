//! The tshark peer: a capture in namespace `a`, decoded afterwards with checksum validation.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::Testbed;

/// tshark in namespace `a` capturing on `a_if` into a pcap file (for at most 30 s), printing
/// the UDP source port of each frame as it captures it.
pub struct Capture {
    child: Child,
    file: PathBuf,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Capture {
    /// Starts tshark and returns once it captures: tshark's "Capturing on" comes before the
    /// capture socket sees frames, so `probe` is called (it should send a non-UDP frame) every
    /// 100 ms until tshark shows a captured frame.
    pub fn start(tb: &Testbed, probe: impl Fn()) -> Capture {
        let file = std::env::temp_dir().join(format!(
            "etherconn-relay-veth-{}-{}.pcap",
            std::process::id(),
            tb.a_if
        ));
        let _ = std::fs::remove_file(&file);
        let mut child =
            tb.a.command("tshark")
                .args([
                    "-i",
                    &tb.a_if,
                    "-a",
                    "duration:30",
                    "-l",
                    "-P",
                    "-T",
                    "fields",
                ])
                .args(["-e", "frame.number", "-e", "udp.srcport", "-w"])
                .arg(&file)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start tshark");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let cap = Capture { child, file, lines };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline, "tshark did not start capturing");
            probe();
            if cap.lines.recv_timeout(Duration::from_millis(100)).is_ok() {
                break;
            }
        }
        cap
    }

    /// Waits until tshark has shown `n` UDP frames (or fails after 10 s).
    pub fn wait_udp(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = 0;
        while seen < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("tshark showed {seen} of {n} UDP frames"));
            if line.split('\t').nth(1).is_some_and(|p| !p.is_empty()) {
                seen += 1;
            }
        }
    }

    /// Stops tshark (SIGINT, so it completes the file).
    fn stop(&mut self) {
        // Our own child, not yet reaped, so the pid is still its.
        let _ = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
    }

    /// Waits for tshark to stop and returns the decoded fields, one line per frame.
    pub fn finish(mut self, fields: &[&str]) -> Vec<Vec<String>> {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(25);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "tshark capture exited with {st}");
                break;
            }
            assert!(Instant::now() < deadline, "tshark capture did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut cmd = std::process::Command::new("tshark");
        cmd.arg("-r").arg(&self.file).args([
            "-Y",
            "udp",
            "-o",
            "udp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
            "-T",
            "fields",
            "-E",
            "separator=/t",
        ]);
        for f in fields {
            cmd.args(["-e", f]);
        }
        let out = cmd.output().expect("run tshark -r");
        assert!(
            out.status.success(),
            "tshark -r: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.split('\t').map(str::to_owned).collect())
            .collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.file);
    }
}

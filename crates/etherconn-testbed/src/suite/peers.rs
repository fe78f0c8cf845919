//! The scapy peer: `peers/send_frames.py` driven over a pipe, and the frame specs it takes.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::time::{Duration, Instant};

use crate::Testbed;

/// The folder of the peer scripts (`crates/etherconn-testbed/peers`).
pub fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers")
}

/// `peers/send_frames.py` running in namespace `a` on `a_if`, fed one JSON list of frame
/// specs per line.
pub struct Scapy {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Scapy {
    /// Starts the script in namespace `a`, sending on `a_if`.
    pub fn start(tb: &Testbed) -> Scapy {
        let mut child =
            tb.a.command("python3")
                .arg(peers_dir().join("send_frames.py"))
                .arg(&tb.a_if)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start python3 send_frames.py");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Scapy {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends the frames (a JSON list) in order and waits until scapy has sent them all.
    pub fn send(&mut self, specs: &serde_like::Json) {
        let line = specs.to_string();
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).unwrap();
        assert!(
            reply.starts_with("sent "),
            "send_frames.py failed on {line}: {reply:?}"
        );
    }
}

impl Drop for Scapy {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tiny JSON writer for frame specs (no JSON crate among the dependencies).
mod serde_like {
    use std::fmt;

    /// A JSON value (written with `Display`).
    #[derive(Clone, Debug)]
    pub enum Json {
        /// A string.
        Str(String),
        /// An integer.
        Num(i64),
        /// `true` or `false`.
        Bool(bool),
        /// A list.
        Arr(Vec<Json>),
        /// An object, keys in order.
        Obj(Vec<(String, Json)>),
    }

    impl fmt::Display for Json {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Json::Str(s) => write!(f, "\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
                Json::Num(n) => write!(f, "{n}"),
                Json::Bool(b) => write!(f, "{b}"),
                Json::Arr(v) => {
                    f.write_str("[")?;
                    for (i, x) in v.iter().enumerate() {
                        if i > 0 {
                            f.write_str(",")?;
                        }
                        write!(f, "{x}")?;
                    }
                    f.write_str("]")
                }
                Json::Obj(v) => {
                    f.write_str("{")?;
                    for (i, (k, x)) in v.iter().enumerate() {
                        if i > 0 {
                            f.write_str(",")?;
                        }
                        write!(f, "\"{k}\":{x}")?;
                    }
                    f.write_str("}")
                }
            }
        }
    }
}
pub use serde_like::Json;

/// A frame spec for `send_frames.py`.
#[derive(Clone)]
pub struct Spec(pub Vec<(String, Json)>);

impl Spec {
    /// An IPv4/UDP frame from 02:aa:00:00:00:01 / 10.88.0.1:`sport` to `dst` / 10.88.0.2:7000.
    pub fn udp4(dst: &str, sport: u16, payload: &str) -> Spec {
        Spec(vec![])
            .s("dst", dst)
            .s("src", "02:aa:00:00:00:01")
            .s("ipsrc", "10.88.0.1")
            .s("ipdst", "10.88.0.2")
            .n("sport", i64::from(sport))
            .n("dport", 7000)
            .s("payload", payload)
    }

    /// Adds a string field.
    pub fn s(mut self, k: &str, v: &str) -> Spec {
        self.0.push((k.into(), Json::Str(v.into())));
        self
    }

    /// Adds a number field.
    pub fn n(mut self, k: &str, v: i64) -> Spec {
        self.0.push((k.into(), Json::Num(v)));
        self
    }

    /// Sets a flag field to true.
    pub fn b(mut self, k: &str) -> Spec {
        self.0.push((k.into(), Json::Bool(true)));
        self
    }

    /// Sets the VLAN stack, outermost first, as (TPID, VLAN id) pairs.
    pub fn tags(mut self, tags: &[(u16, u16)]) -> Spec {
        let v = tags
            .iter()
            .map(|&(tpid, id)| {
                Json::Arr(vec![
                    Json::Num(tpid.into()),
                    Json::Num(id.into()),
                    Json::Num(0),
                ])
            })
            .collect();
        self.0.push(("tags".into(), Json::Arr(v)));
        self
    }

    /// Sets one extra field of scapy's IP layer.
    pub fn ip(mut self, k: &str, v: i64) -> Spec {
        self.0
            .push(("ip".into(), Json::Obj(vec![(k.into(), Json::Num(v))])));
        self
    }
}

/// A JSON list of frame specs, one line for [`Scapy::send`].
pub fn specs(list: &[Spec]) -> Json {
    Json::Arr(list.iter().map(|s| Json::Obj(s.0.clone())).collect())
}

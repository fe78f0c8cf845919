//! Reading capture files back with tshark, the independent decoder the capture tests trust.

use std::io;
use std::path::Path;
use std::process::Command;

/// Whether `tshark` can be run.
pub fn tshark_available() -> bool {
    Command::new("tshark")
        .arg("-v")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Decodes the capture file at `path` with tshark (IPv4 and UDP checksum validation on, no
/// name resolution) and returns, for each frame, the values of `fields` in order; a field
/// that occurs more than once (the VLAN ids of a QinQ frame) has its values joined by `,`,
/// and an absent one is empty.
///
/// tshark's `*.checksum.status` values: 0 bad, 1 good, 2 unverified, 3 not present,
/// 4 illegal.
pub fn tshark_fields(path: &Path, fields: &[&str]) -> io::Result<Vec<Vec<String>>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n")
        .arg("-r")
        .arg(path)
        .args([
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
        ])
        .args(["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a"])
        .args(["-E", "aggregator=,"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "tshark failed on {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect())
}

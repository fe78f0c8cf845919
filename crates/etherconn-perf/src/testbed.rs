//! The testbed `bench` and `scale` measure on: two network namespaces joined by a veth pair,
//! with IPv6 off at both ends so that no router solicitation or MLD report lands in a count.

use etherconn_testbed::{Side, Testbed};

use crate::error::{Context, Result};

/// A fresh testbed whose namespace names start with `prefix` (then the pid), IPv6 off on both
/// ends; first removes the namespaces of earlier runs that were killed (SIGKILL) before they
/// could clean up.
pub fn quiet_testbed(prefix: &str) -> Result<Testbed> {
    quiet_testbed_with_queues(prefix, 1)
}

/// [`quiet_testbed`] with `queues` transmit and receive queues on each veth end.
pub fn quiet_testbed_with_queues(prefix: &str, queues: u32) -> Result<Testbed> {
    let _ = etherconn_testbed::remove_stale_namespaces(prefix);
    let tb =
        Testbed::with_queues(prefix, queues).context(|| "cannot create the namespace testbed")?;
    for side in [Side::A, Side::B] {
        let ifname = tb.ifname(side).to_owned();
        for conf in ["all", "default", ifname.as_str()] {
            // Best effort: a kernel without IPv6 has nothing to keep quiet.
            let _ = tb.set_sysctl(side, &format!("net.ipv6.conf.{conf}.disable_ipv6"), "1");
        }
    }
    Ok(tb)
}

//! The embedded XDP program (`etherconnkern/etherconn.bpf.o`): loading it from memory with
//! libbpf-rs, sizing its maps, and attaching it through a BPF link, which the kernel releases
//! when the link's last fd closes: when the relay stops, or the process exits or dies.

use std::os::fd::{AsFd, AsRawFd, RawFd};

use libbpf_rs::{
    Link, MapCore, MapFlags, MapHandle, Object, ObjectBuilder, OpenObject, Xdp, XdpFlags,
};

use crate::error::{Error, Result};

/// The prebuilt object, rebuilt by `etherconnkern/build.sh`.
pub(crate) static OBJECT: &[u8] = include_bytes!("../../../etherconnkern/etherconn.bpf.o");

/// The program's name in the object.
const PROGRAM: &str = "etherconn_xdp";

/// The loaded program and its maps (not attached yet).
pub(crate) struct Loaded {
    obj: Object,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded").finish_non_exhaustive()
    }
}

fn set_max_entries(open: &mut OpenObject, map: &str, n: u32) -> Result<()> {
    let mut m = open
        .maps_mut()
        .find(|m| m.name() == map)
        .ok_or(Error::Program {
            op: "find map",
            message: format!("the object has no map {map:?}"),
        })?;
    m.set_max_entries(n)
        .map_err(|e| Error::program("size map", &e))
}

/// Opens the embedded object, sizes the socket map for queues `0..=max_queue` and the
/// endpoint map for `max_keys` keys, and loads it into the kernel (the verifier runs here).
pub(crate) fn load(max_queue: u32, max_keys: u32) -> Result<Loaded> {
    let mut open = ObjectBuilder::default()
        .open_memory(OBJECT)
        .map_err(|e| Error::program("open object", &e))?;
    set_max_entries(&mut open, "xsks", max_queue + 1)?;
    set_max_entries(&mut open, "endpoints", max_keys.max(1))?;
    let obj = open.load().map_err(|e| Error::program("load", &e))?;
    Ok(Loaded { obj })
}

impl Loaded {
    /// A handle (its own fd) on map `name`.
    pub(crate) fn map(&self, name: &str) -> Result<MapHandle> {
        let m = self
            .obj
            .maps()
            .find(|m| m.name() == name)
            .ok_or(Error::Program {
                op: "find map",
                message: format!("the object has no map {name:?}"),
            })?;
        MapHandle::try_from(&m).map_err(|e| Error::program("dup map fd", &e))
    }

    /// The id of the XDP program attached to `ifindex` (any mode), if any.
    pub(crate) fn attached_id(&self, ifindex: u32) -> Result<Option<u32>> {
        let prog = self.program()?;
        let id = Xdp::new(prog.as_fd())
            .query_id(ifindex as i32, XdpFlags::NONE)
            .map_err(|e| Error::program("query attached program", &e))?;
        Ok((id != 0).then_some(id))
    }

    /// Detaches a program attached through netlink (driver or generic mode) from `ifindex`.
    pub(crate) fn detach_foreign(&self, ifindex: u32) -> Result<()> {
        let prog = self.program()?;
        let xdp = Xdp::new(prog.as_fd());
        for mode in [XdpFlags::DRV_MODE, XdpFlags::SKB_MODE] {
            let _ = xdp.detach(ifindex as i32, mode);
        }
        Ok(())
    }

    fn program(&self) -> Result<libbpf_rs::Program<'_>> {
        self.obj
            .progs()
            .find(|p| p.name() == PROGRAM)
            .ok_or(Error::Program {
                op: "find program",
                message: format!("the object has no program {PROGRAM:?}"),
            })
    }

    /// Attaches the program to interface `ifindex` (`name`) through a BPF link.
    pub(crate) fn attach(&mut self, ifindex: u32, name: &str) -> Result<Link> {
        let prog = self
            .obj
            .progs_mut()
            .find(|p| p.name() == PROGRAM)
            .ok_or(Error::Program {
                op: "find program",
                message: format!("the object has no program {PROGRAM:?}"),
            })?;
        prog.attach_xdp(ifindex as i32).map_err(|e| match e.kind() {
            libbpf_rs::ErrorKind::Unsupported => Error::XdpNotSupported {
                name: name.to_owned(),
                what: "XDP",
                source: std::io::Error::from_raw_os_error(libc::EOPNOTSUPP),
            },
            _ => Error::program("attach", &e),
        })
    }
}

/// Puts socket `fd` in the socket map at `queue`.
pub(crate) fn put_socket(xsks: &MapHandle, queue: u32, fd: RawFd) -> Result<()> {
    let fd = u32::try_from(fd.as_raw_fd()).map_err(|_| Error::InvalidConfig("negative fd"))?;
    xsks.update(&queue.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
        .map_err(|e| Error::program("add socket to the XSKMAP", &e))
}

/// Frames the program redirected and passed, summed over CPUs.
pub(crate) fn read_stats(stats: &MapHandle) -> (u64, u64) {
    let sum = |index: u32| -> u64 {
        stats
            .lookup_percpu(&index.to_ne_bytes(), MapFlags::ANY)
            .ok()
            .flatten()
            .map(|per_cpu| {
                per_cpu
                    .iter()
                    .filter_map(|v| v.get(..8))
                    .map(|b| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8])))
                    .sum()
            })
            .unwrap_or(0)
    };
    (
        sum(crate::maps::STAT_REDIRECTED),
        sum(crate::maps::STAT_PASSED),
    )
}

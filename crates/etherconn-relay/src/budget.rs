//! [`MemoryBudget`]: the most memory a relay's conns may hold in queued frames, reserved when a
//! conn is made and released when it goes.
//!
//! A conn's worst case is fixed when it registers: its queue can hold `queue_depth` frames, each
//! in a pooled receive buffer. So the budget is charged then, once, and never per frame: the
//! receive path does not know the budget exists. A registration that would take the relay past
//! its budget fails with [`RelayError::OverBudget`] before anything is allocated, and the conns
//! already there keep working.
//!
//! What one relay may take, for conns whose queues hold `F` frames in all:
//!
//! ```text
//! sum over conns of (CONN_FIXED_BYTES + depth x SLOT_BYTES)     queue rings and entries
//!   + min(F, rx_buffers) x frame_bytes(buf_len)                 receive buffers queued frames hold
//! ```
//!
//! The second term is capped by the relay's pool: queued frames live in its buffers, and it
//! never makes more than `rx_buffers`, however deep the queues together are. So 100,000 idle
//! endpoints cost their rings and entries plus at most the pool, not 100,000 full queues.

use core::mem::size_of;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::RelayError;
use crate::meminfo::MemInfo;
use crate::pool::FrameSlot;
use crate::queue::RxFrame;

/// Heap bytes of one conn besides its queue's slots and the frames in them, rounded up: its
/// table entry, its `RxQueue` (locks, wake-up state) and its keys. Measured: an idle `EtherConn`
/// with 64 slots took 2,614 bytes (`etherconn-perf scale --child reg:ether-10k`), of which
/// 1,536 were slots (24 bytes each then, 16 since a frame handle is one pointer); an idle
/// `SharingRUdpConn` 870 bytes with 4.
pub const CONN_FIXED_BYTES: u64 = 1536;

/// One receive queue slot, allocated when the queue is made: the frame handle and the
/// queue's stamp.
pub const SLOT_BYTES: u64 = (size_of::<RxFrame>() + size_of::<usize>()) as u64;

/// The budget when `/proc/meminfo` cannot be read.
pub const FALLBACK_BUDGET: u64 = 1 << 30;

/// One receive buffer of `buf_len` bytes while a queue holds it: the bytes, the slot that
/// describes them and the allocator's overhead of the two allocations.
pub const fn frame_bytes(buf_len: usize) -> u64 {
    (buf_len + size_of::<FrameSlot>() + 2 * size_of::<usize>()) as u64
}

/// How large a relay's [`MemoryBudget`] is; [`DispatcherConfig::memory_budget`](crate::DispatcherConfig::memory_budget).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryLimit {
    /// From the machine: half of `MemTotal`, but no more than `MemAvailable` when the relay
    /// is made ([`MemoryLimit::machine_default`]); [`FALLBACK_BUDGET`] (1 GiB) when
    /// `/proc/meminfo` cannot be read.
    #[default]
    Machine,
    /// This many bytes.
    Bytes(u64),
    /// No limit: every conn registers, as before budgets existed. For a program that sizes
    /// its fleet itself and would rather meet the OOM killer than a refusal.
    Unlimited,
}

impl MemoryLimit {
    /// The limit in bytes (`u64::MAX` for [`MemoryLimit::Unlimited`]); reads `/proc/meminfo`
    /// for [`MemoryLimit::Machine`].
    pub fn bytes(self) -> u64 {
        match self {
            MemoryLimit::Machine => Self::machine_default(MemInfo::read()),
            MemoryLimit::Bytes(b) => b,
            MemoryLimit::Unlimited => u64::MAX,
        }
    }

    /// The default for a machine with `mem` (`None`: unknown): half of its total memory, but
    /// no more than what is available now.
    pub fn machine_default(mem: Option<MemInfo>) -> u64 {
        match mem {
            Some(m) => (m.total / 2).min(m.available),
            None => FALLBACK_BUDGET,
        }
    }
}

/// What one conn reserves: the frames its queue can hold, and the bytes it takes whatever the
/// queue holds. See [`MemoryBudget::conn_cost`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnCost {
    /// Frames the conn's queue can hold.
    pub frames: u64,
    /// Bytes of the conn and its queue's slots.
    pub fixed: u64,
}

impl ConnCost {
    /// This cost and `other` together.
    pub fn plus(self, other: ConnCost) -> ConnCost {
        ConnCost {
            frames: self.frames.saturating_add(other.frames),
            fixed: self.fixed.saturating_add(other.fixed),
        }
    }

    /// `n` conns of this cost.
    pub fn times(self, n: u64) -> ConnCost {
        ConnCost {
            frames: self.frames.saturating_mul(n),
            fixed: self.fixed.saturating_mul(n),
        }
    }
}

/// The reservations of one relay, against its limit.
///
/// ```
/// use std::sync::Arc;
/// use etherconn_relay::{
///     DispatcherConfig, EtherConn, EtherConnConfig, LoopbackRelay, MemoryBudget, MemoryLimit,
///     PacketRelay, RelayError,
/// };
///
/// // Room for exactly two conns of 64 frames.
/// let base = DispatcherConfig::default();
/// let limit = base.budget().bytes(MemoryBudget::conn_cost(64).times(2));
/// let relay: Arc<dyn PacketRelay> =
///     LoopbackRelay::new(base.memory_budget(MemoryLimit::Bytes(limit)));
/// let cfg = EtherConnConfig::default().queue_depth(64);
/// let a = EtherConn::new(relay.clone(), "02:00:00:00:00:01".parse()?, &[], cfg.clone())?;
/// let _b = EtherConn::new(relay.clone(), "02:00:00:00:00:02".parse()?, &[], cfg.clone())?;
/// let third = EtherConn::new(relay.clone(), "02:00:00:00:00:03".parse()?, &[], cfg.clone());
/// let Err(e @ RelayError::OverBudget { .. }) = third else { panic!("not refused") };
/// println!("{e}"); // memory budget exceeded: the conn would take 139.5 KiB (its queue full), ...
/// drop(a); // gives its share back
/// let _c = EtherConn::new(relay.clone(), "02:00:00:00:00:03".parse()?, &[], cfg)?;
/// assert_eq!(relay.dispatcher().budget().reserved(), limit);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Shared by the relay's dispatcher and every conn on it ([`Dispatcher::budget`](crate::Dispatcher::budget)).
/// Registering a conn takes one uncontended lock here; receiving and sending frames never touch it.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    frame_bytes: u64,
    pool_frames: u64,
    reserved: Mutex<ConnCost>,
}

impl MemoryBudget {
    /// A budget of `limit` bytes for a relay of `rx_buffers` receive buffers of `buf_len`
    /// bytes each.
    pub fn new(limit: u64, rx_buffers: usize, buf_len: usize) -> MemoryBudget {
        MemoryBudget {
            limit,
            frame_bytes: frame_bytes(buf_len),
            pool_frames: rx_buffers.max(1) as u64,
            reserved: Mutex::new(ConnCost {
                frames: 0,
                fixed: 0,
            }),
        }
    }

    /// What a conn whose queue holds `queue_depth` frames reserves (a depth of 0 is a queue of
    /// one, as [`RxQueue::new`](crate::RxQueue::new) makes it).
    pub fn conn_cost(queue_depth: usize) -> ConnCost {
        let depth = queue_depth.max(1) as u64;
        ConnCost {
            frames: depth,
            fixed: CONN_FIXED_BYTES.saturating_add(depth.saturating_mul(SLOT_BYTES)),
        }
    }

    /// The limit in bytes (`u64::MAX`: unlimited).
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes reserved by the conns registered now.
    pub fn reserved(&self) -> u64 {
        self.bytes(*self.lock())
    }

    /// Bytes that conns costing `cost` in all take on this relay: their fixed part, and the
    /// buffers their queues can hold, no more than the relay's pool has.
    pub fn bytes(&self, cost: ConnCost) -> u64 {
        cost.frames
            .min(self.pool_frames)
            .saturating_mul(self.frame_bytes)
            .saturating_add(cost.fixed)
    }

    /// Checks, without reserving, that conns costing `cost` in all fit an empty relay with
    /// this budget: what a tool checks before it sets anything up.
    pub fn check(&self, cost: ConnCost) -> Result<(), RelayError> {
        let need = self.bytes(cost);
        if need > self.limit {
            return Err(self.refusal(need, 0));
        }
        Ok(())
    }

    /// Reserves `cost` for a conn until the returned [`Reservation`] drops; refused with
    /// [`RelayError::OverBudget`] when the relay would go past its limit.
    pub fn reserve(self: &Arc<Self>, cost: ConnCost) -> Result<Reservation, RelayError> {
        let mut reserved = self.lock();
        let before = self.bytes(*reserved);
        let after_cost = reserved.plus(cost);
        let after = self.bytes(after_cost);
        if after > self.limit {
            return Err(self.refusal(after - before, before));
        }
        *reserved = after_cost;
        Ok(Reservation {
            budget: Arc::clone(self),
            cost,
        })
    }

    fn refusal(&self, need: u64, reserved: u64) -> RelayError {
        RelayError::OverBudget {
            need,
            reserved,
            limit: self.limit,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConnCost> {
        self.reserved.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A conn's share of its relay's [`MemoryBudget`]; dropping it gives the share back.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    cost: ConnCost,
}

impl Reservation {
    /// What this reservation holds.
    pub fn cost(&self) -> ConnCost {
        self.cost
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut reserved = self.budget.lock();
        reserved.frames = reserved.frames.saturating_sub(self.cost.frames);
        reserved.fixed = reserved.fixed.saturating_sub(self.cost.fixed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_and_releases() {
        let per = MemoryBudget::conn_cost(4);
        let one = MemoryBudget::new(u64::MAX, 1000, 2048).bytes(per);
        let b = Arc::new(MemoryBudget::new(3 * one, 1000, 2048));
        let r1 = b.reserve(per).unwrap();
        let r2 = b.reserve(per).unwrap();
        let _r3 = b.reserve(per).unwrap();
        assert_eq!(b.reserved(), 3 * one);
        let e = b.reserve(per).unwrap_err();
        assert!(
            matches!(e, RelayError::OverBudget { need, reserved, limit }
                if need == one && reserved == 3 * one && limit == 3 * one),
            "{e:?}"
        );
        drop(r1);
        assert_eq!(b.reserved(), 2 * one);
        let _r4 = b.reserve(per).unwrap();
        drop(r2);
        assert_eq!(b.reserved(), 2 * one);
    }

    #[test]
    fn queued_frames_are_capped_by_the_pool() {
        let b = MemoryBudget::new(u64::MAX, 100, 2048);
        let per = MemoryBudget::conn_cost(64);
        // 10 conns of 64 frames could queue 640 frames, but the pool makes only 100.
        let ten = b.bytes(per.times(10));
        assert_eq!(ten, 100 * frame_bytes(2048) + 10 * per.fixed);
        assert_eq!(b.bytes(per.times(u64::MAX)), u64::MAX);
        assert_eq!(MemoryBudget::conn_cost(0), MemoryBudget::conn_cost(1));
    }

    #[test]
    fn limits() {
        let m = MemInfo {
            total: 8 << 30,
            available: 3 << 30,
        };
        assert_eq!(MemoryLimit::machine_default(Some(m)), 3 << 30);
        let m = MemInfo {
            total: 8 << 30,
            available: 6 << 30,
        };
        assert_eq!(MemoryLimit::machine_default(Some(m)), 4 << 30);
        assert_eq!(MemoryLimit::machine_default(None), FALLBACK_BUDGET);
        assert_eq!(MemoryLimit::Unlimited.bytes(), u64::MAX);
        assert_eq!(MemoryLimit::Bytes(7).bytes(), 7);
        assert!(MemoryLimit::Machine.bytes() > 0);
    }

    #[test]
    fn message() {
        let e = RelayError::OverBudget {
            need: 1 << 20,
            reserved: 3 << 20,
            limit: 4 << 20,
        };
        assert_eq!(
            e.to_string(),
            "memory budget exceeded: the conn would take 1.0 MiB (its queue full), the relay's \
             conns already hold 3.0 MiB and its budget is 4.0 MiB; raise \
             DispatcherConfig::memory_budget, or use shorter queues or fewer conns"
        );
    }
}

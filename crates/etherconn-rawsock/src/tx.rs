//! Batched transmit: frames are written into a fixed set of preallocated buffers and sent
//! with one `sendmmsg` per batch. Nothing is allocated after [`TxBatcher::new`].

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::socket::PacketSocket;
use crate::sys::{self, PollFd, SendScratch};

/// Sizes and retry policy of a [`TxBatcher`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxConfig {
    /// Frames per batch (one `sendmmsg`). Default [`TxConfig::DEFAULT_BATCH`].
    pub batch: usize,
    /// Size of each frame buffer: the largest frame that can be queued. Default 2048.
    pub buffer_size: usize,
    /// How many times one flush waits and retries when the kernel is out of buffer space
    /// (`EAGAIN`, `ENOBUFS`) before dropping what is left. Default 8.
    pub max_retries: u32,
    /// The longest single wait before a retry. Default 1 ms.
    pub retry_wait: Duration,
}

impl TxConfig {
    /// Default frames per batch: 64.
    pub const DEFAULT_BATCH: usize = 64;
    /// Default frame buffer size: 2048 bytes.
    pub const DEFAULT_BUFFER_SIZE: usize = 2048;
}

impl Default for TxConfig {
    fn default() -> Self {
        TxConfig {
            batch: Self::DEFAULT_BATCH,
            buffer_size: Self::DEFAULT_BUFFER_SIZE,
            max_retries: 8,
            retry_wait: Duration::from_millis(1),
        }
    }
}

/// Counters of a [`TxBatcher`], since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TxStats {
    /// Frames the kernel accepted.
    pub sent: u64,
    /// Frames given up on: rejected by the kernel, or still unsent when the retries ran out.
    pub dropped: u64,
    /// Waits for buffer space.
    pub retries: u64,
    /// Failed `sendmmsg` calls.
    pub errors: u64,
}

/// A fixed pool of frame buffers sent together with `sendmmsg`.
///
/// Queue frames with [`push`](TxBatcher::push) (a copy) or build them in place with
/// [`buffer_mut`](TxBatcher::buffer_mut) + [`commit`](TxBatcher::commit), then
/// [`flush`](TxBatcher::flush) on a socket.
#[derive(Debug)]
pub struct TxBatcher {
    buffers: Box<[u8]>,
    lens: Box<[usize]>,
    queued: usize,
    scratch: SendScratch,
    config: TxConfig,
    stats: TxStats,
}

impl TxBatcher {
    /// Allocates `config.batch` buffers of `config.buffer_size` bytes.
    pub fn new(config: &TxConfig) -> Result<TxBatcher> {
        if config.batch == 0 || config.batch > 1024 {
            return Err(Error::InvalidConfig(
                "tx batch must be between 1 and 1024 (UIO_MAXIOV)",
            ));
        }
        if config.buffer_size < 14 || config.buffer_size > 65535 {
            return Err(Error::InvalidConfig(
                "tx buffer_size must be between 14 and 65535 bytes",
            ));
        }
        let total = config.batch * config.buffer_size;
        Ok(TxBatcher {
            buffers: vec![0; total].into_boxed_slice(),
            lens: vec![0; config.batch].into_boxed_slice(),
            queued: 0,
            scratch: SendScratch::new(config.batch),
            config: config.clone(),
            stats: TxStats::default(),
        })
    }

    /// How many frames one batch holds.
    pub fn capacity(&self) -> usize {
        self.config.batch
    }

    /// Size of each frame buffer.
    pub fn buffer_size(&self) -> usize {
        self.config.buffer_size
    }

    /// Frames queued and not yet flushed.
    pub fn len(&self) -> usize {
        self.queued
    }

    /// Whether no frame is queued.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Whether every buffer holds a queued frame.
    pub fn is_full(&self) -> bool {
        self.queued == self.config.batch
    }

    /// Counters since creation.
    pub fn stats(&self) -> TxStats {
        self.stats
    }

    /// Queues a copy of `frame`. Fails with [`Error::TxBatchFull`] (flush first) or
    /// [`Error::FrameTooLarge`].
    pub fn push(&mut self, frame: &[u8]) -> Result<()> {
        let buf = self.buffer_mut().ok_or(Error::TxBatchFull)?;
        let max = buf.len();
        buf.get_mut(..frame.len())
            .ok_or(Error::FrameTooLarge {
                len: frame.len(),
                max,
            })?
            .copy_from_slice(frame);
        self.commit(frame.len())
    }

    /// The next free buffer (its whole `buffer_size`), to build a frame in place; `None` if
    /// the batch is full. The frame is queued by [`commit`](TxBatcher::commit).
    pub fn buffer_mut(&mut self) -> Option<&mut [u8]> {
        if self.is_full() {
            return None;
        }
        let size = self.config.buffer_size;
        let start = self.queued * size;
        Some(&mut self.buffers[start..start + size])
    }

    /// Queues the first `len` bytes of the buffer last returned by
    /// [`buffer_mut`](TxBatcher::buffer_mut).
    pub fn commit(&mut self, len: usize) -> Result<()> {
        if self.is_full() {
            return Err(Error::TxBatchFull);
        }
        if len > self.config.buffer_size {
            return Err(Error::FrameTooLarge {
                len,
                max: self.config.buffer_size,
            });
        }
        self.lens[self.queued] = len;
        self.queued += 1;
        Ok(())
    }

    /// Discards the queued frames.
    pub fn clear(&mut self) {
        self.queued = 0;
    }

    /// Sends every queued frame on `sock` and empties the batch; returns how many the kernel
    /// accepted.
    ///
    /// A partial send continues with the rest. When the kernel is out of buffer space
    /// (`EAGAIN`, `ENOBUFS`) it waits up to `retry_wait` and retries, at most `max_retries`
    /// times, then drops what is left. A frame the kernel rejects (`EMSGSIZE`, `EINVAL`) is
    /// dropped and the rest still sent. Drops are counted in [`TxBatcher::stats`]. Any other
    /// error (such as [`Error::InterfaceDown`]) drops the rest of the batch and is returned.
    pub fn flush(&mut self, sock: &PacketSocket) -> Result<usize> {
        let total = self.queued;
        self.queued = 0;
        let size = self.config.buffer_size;
        let mut next = 0;
        let mut sent = 0;
        let mut retries = 0;
        let mut outcome = Ok(());
        while next < total {
            let buffers = &self.buffers;
            let lens = &self.lens;
            let frames = (next..total).map(|i| &buffers[i * size..i * size + lens[i]]);
            let err = match sock.socket().send_batch(&mut self.scratch, frames) {
                Ok(0) => io::Error::from(io::ErrorKind::WouldBlock),
                Ok(n) => {
                    next += n;
                    sent += n;
                    retries = 0;
                    continue;
                }
                Err(e) => e,
            };
            self.stats.errors += 1;
            match err.raw_os_error() {
                Some(libc::EAGAIN | libc::ENOBUFS | libc::EINTR) | None
                    if retries < self.config.max_retries =>
                {
                    retries += 1;
                    self.stats.retries += 1;
                    self.wait_for_room(sock, &err, retries);
                }
                Some(libc::EAGAIN | libc::ENOBUFS | libc::EINTR) | None => {
                    self.stats.dropped += (total - next) as u64;
                    next = total;
                }
                Some(libc::EMSGSIZE | libc::EINVAL) => {
                    self.stats.dropped += 1;
                    next += 1;
                }
                Some(_) => {
                    self.stats.dropped += (total - next) as u64;
                    next = total;
                    outcome = Err(sock.send_error("sendmmsg", err));
                }
            }
        }
        self.stats.sent += sent as u64;
        outcome.map(|()| sent)
    }

    fn wait_for_room(&self, sock: &PacketSocket, err: &io::Error, attempt: u32) {
        if err.raw_os_error() == Some(libc::ENOBUFS) {
            // The device queue is full; the socket still polls writable, so back off instead:
            // 100 us, 200 us, ... up to retry_wait.
            let backoff = Duration::from_micros(50u64 << attempt.min(16));
            std::thread::sleep(backoff.min(self.config.retry_wait));
        } else {
            // The send buffer is full: wait until sent frames free some of it.
            let mut fds = [PollFd::new(sock.as_fd(), sys::POLLOUT)];
            let _ = sys::poll(&mut fds, self.config.retry_wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queueing_checks_sizes_and_capacity() {
        let mut b = TxBatcher::new(&TxConfig {
            batch: 2,
            buffer_size: 64,
            ..TxConfig::default()
        })
        .unwrap();
        assert!(b.is_empty());
        b.push(&[1; 60]).unwrap();
        assert!(matches!(
            b.push(&[0; 65]),
            Err(Error::FrameTooLarge { len: 65, max: 64 })
        ));
        let buf = b.buffer_mut().unwrap();
        assert_eq!(buf.len(), 64);
        buf[..3].copy_from_slice(b"abc");
        b.commit(3).unwrap();
        assert!(b.is_full());
        assert!(b.buffer_mut().is_none());
        assert!(matches!(b.push(&[0; 14]), Err(Error::TxBatchFull)));
        assert_eq!(&b.buffers[..60], &[1; 60]);
        assert_eq!(&b.buffers[64..67], b"abc");
        assert_eq!(&b.lens[..], &[60, 3]);
        b.clear();
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn config_is_checked() {
        for c in [
            TxConfig {
                batch: 0,
                ..TxConfig::default()
            },
            TxConfig {
                batch: 2000,
                ..TxConfig::default()
            },
            TxConfig {
                buffer_size: 10,
                ..TxConfig::default()
            },
        ] {
            assert!(matches!(TxBatcher::new(&c), Err(Error::InvalidConfig(_))));
        }
    }
}

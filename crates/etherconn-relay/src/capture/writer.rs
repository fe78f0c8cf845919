//! The writer thread of a capture: takes filled slots off the handoff, writes each as a pcapng
//! Enhanced Packet Block through the `pcap-file` crate, and gives the slot back.

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::{Block, PcapNgWriter};
use pcap_file::DataLink;

use super::handoff::{Handoff, Slot};

/// How long an idle writer sleeps before it looks at the closing flag again (closing rings
/// the bell too; this is only a backstop).
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// A pcapng file being written: the section header and the one interface description are
/// out when it is made, so a file cut short after any packet block is still readable.
pub(crate) struct PcapngSink {
    writer: PcapNgWriter<Box<dyn Write + Send>>,
    /// The packet block being written, kept between packets (its byte buffer and option list
    /// keep their capacity) so that writing one allocates nothing.
    block: Block<'static>,
}

impl core::fmt::Debug for PcapngSink {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PcapngSink").finish_non_exhaustive()
    }
}

/// `pcap-file`'s errors as `io::Error`s (its I/O errors unwrapped).
fn io_error(e: pcap_file::PcapError) -> io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

impl PcapngSink {
    /// Writes the section header and an Ethernet interface with nanosecond timestamps
    /// (`if_tsresol` 9), named `ifname` when given, and flushes them.
    pub(crate) fn new(
        out: Box<dyn Write + Send>,
        ifname: Option<&str>,
        snaplen: u32,
    ) -> io::Result<PcapngSink> {
        let mut writer = PcapNgWriter::new(out).map_err(io_error)?;
        let mut options = vec![InterfaceDescriptionOption::IfTsResol(9)];
        if let Some(name) = ifname {
            options.push(InterfaceDescriptionOption::IfName(Cow::Owned(
                name.to_owned(),
            )));
        }
        let idb = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen,
            options,
        };
        writer
            .write_block(&Block::InterfaceDescription(idb))
            .map_err(io_error)?;
        writer.get_mut().flush()?;
        let block = Block::EnhancedPacket(EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::ZERO,
            original_len: 0,
            data: Cow::Owned(Vec::with_capacity(snaplen as usize)),
            options: Vec::with_capacity(1),
        });
        Ok(PcapngSink { writer, block })
    }

    /// Writes one frame as an Enhanced Packet Block with its direction in `epb_flags`.
    fn write(&mut self, slot: &Slot) -> io::Result<()> {
        if let Block::EnhancedPacket(epb) = &mut self.block {
            epb.timestamp = slot.timestamp;
            epb.original_len = slot.orig_len;
            let data = epb.data.to_mut();
            data.clear();
            data.extend_from_slice(&slot.data[..slot.len]);
            epb.options.clear();
            epb.options
                .push(EnhancedPacketOption::Flags(slot.direction.epb_flags()));
        }
        self.writer
            .write_block(&self.block)
            .map(drop)
            .map_err(io_error)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.get_mut().flush()
    }
}

/// What the writer thread reports when it ends.
#[derive(Debug)]
pub(crate) struct WriterEnd {
    /// The first write error, after which frames were taken off the handoff and not written.
    pub(crate) error: Option<io::Error>,
}

/// The writer thread's body: writes every filled slot until the capture closes and the
/// handoff is empty, then flushes. After a write error it keeps emptying the handoff (so
/// relay threads never see it full for that reason) without writing.
pub(crate) fn run(handoff: &Handoff, mut sink: PcapngSink, written: &Arc<AtomicU64>) -> WriterEnd {
    let mut error: Option<io::Error> = None;
    let mut dirty = false;
    loop {
        while let Some(slot) = handoff.filled.pop() {
            if error.is_none() {
                match sink.write(&slot) {
                    Ok(()) => {
                        written.fetch_add(1, Ordering::Relaxed);
                        dirty = true;
                    }
                    Err(e) => error = Some(e),
                }
            }
            let _ = handoff.free.push(slot);
        }
        // Idle: what was written reaches the file now, so it is complete up to here even if
        // the process dies without closing the capture.
        if dirty && error.is_none() {
            if let Err(e) = sink.flush() {
                error = Some(e);
            }
            dirty = false;
        }
        if handoff.is_closed() && handoff.filled.is_empty() {
            break;
        }
        handoff.bell.sleep_until(
            || !handoff.filled.is_empty() || handoff.is_closed(),
            Some(Instant::now() + IDLE_WAIT),
        );
    }
    if error.is_none() {
        if let Err(e) = sink.flush() {
            error = Some(e);
        }
    }
    drop(sink);
    WriterEnd { error }
}

//! What the tool's datagrams carry, and the light check the receiver makes.
//!
//! Bytes 0..8: a sequence number per sending endpoint (little endian). Bytes 8..16: the send
//! time in nanoseconds since the sender started, or zero (the `send` command uses it for round
//! trip times). The rest: a fixed pattern, of which the receiver checks the last byte.

/// The smallest payload: room for the sequence number.
pub const MIN_PAYLOAD: usize = 8;

const PATTERN_START: usize = 16;

fn pattern(at: usize) -> u8 {
    (at as u8).wrapping_mul(31).wrapping_add(7)
}

/// Writes a payload of `len` bytes (at least [`MIN_PAYLOAD`]) into `buf`: the sequence number,
/// the time stamp if there is room, and the pattern. The pattern is written only when the last
/// byte shows it missing, so a reused buffer costs only the stamp.
pub fn write(buf: &mut [u8], len: usize, seq: u64, time_ns: u64) -> usize {
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    if len >= PATTERN_START {
        buf[8..16].copy_from_slice(&time_ns.to_le_bytes());
    }
    if len > PATTERN_START && buf[len - 1] != pattern(len - 1) {
        for (at, b) in buf[PATTERN_START..len].iter_mut().enumerate() {
            *b = pattern(at + PATTERN_START);
        }
    }
    len
}

/// The sequence number of a payload.
pub fn seq(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.get(..8)?.try_into().ok()?))
}

/// The send time stamp of a payload (nanoseconds since its sender started), if it has one.
pub fn time_ns(payload: &[u8]) -> Option<u64> {
    let t = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    (t != 0).then_some(t)
}

/// Per-endpoint sequence and content checks over received payloads.
#[derive(Debug, Clone)]
pub struct Checker {
    next: Vec<u64>,
    len: usize,
    /// Payloads that passed.
    pub good: u64,
    /// Payloads whose sequence number was below one already seen on their endpoint
    /// (reordered or duplicated).
    pub out_of_order: u64,
    /// Sequence numbers skipped (lost, or not yet arrived when reordered).
    pub gaps: u64,
    /// Payloads of the wrong length or content.
    pub bad: u64,
}

impl Checker {
    /// A checker for `endpoints` endpoints receiving payloads of `len` bytes.
    pub fn new(endpoints: usize, len: usize) -> Checker {
        Checker {
            next: vec![0; endpoints.max(1)],
            len,
            good: 0,
            out_of_order: 0,
            gaps: 0,
            bad: 0,
        }
    }

    /// Checks one payload that arrived at endpoint `endpoint`.
    pub fn check(&mut self, endpoint: usize, payload: &[u8]) {
        let Some(seq) = seq(payload) else {
            self.bad += 1;
            return;
        };
        if payload.len() != self.len
            || (self.len > PATTERN_START && payload[self.len - 1] != pattern(self.len - 1))
        {
            self.bad += 1;
            return;
        }
        let Some(next) = self.next.get_mut(endpoint) else {
            self.bad += 1;
            return;
        };
        if seq < *next {
            self.out_of_order += 1;
        } else {
            self.gaps += seq - *next;
            *next = seq + 1;
        }
        self.good += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_and_checks() {
        let mut buf = [0u8; 64];
        let mut c = Checker::new(2, 64);
        write(&mut buf, 64, 0, 5);
        assert_eq!(time_ns(&buf), Some(5));
        c.check(0, &buf);
        write(&mut buf, 64, 3, 0);
        assert_eq!(time_ns(&buf), None);
        c.check(0, &buf);
        write(&mut buf, 64, 1, 0);
        c.check(0, &buf);
        c.check(1, &buf);
        assert_eq!((c.good, c.gaps, c.out_of_order, c.bad), (4, 3, 1, 0));
        c.check(0, &buf[..63]);
        buf[63] ^= 1;
        c.check(0, &buf);
        c.check(2, &buf);
        assert_eq!(c.bad, 3);
    }

    #[test]
    fn short_payloads() {
        let mut buf = [0u8; 8];
        write(&mut buf, 8, 9, 1);
        assert_eq!(seq(&buf), Some(9));
        assert_eq!(time_ns(&buf), None);
        let mut c = Checker::new(1, 8);
        c.check(0, &buf);
        assert_eq!(c.good, 1);
    }
}

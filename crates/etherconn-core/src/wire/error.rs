/// Why a buffer could not be viewed, parsed or emitted as a protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The buffer is shorter than the header, or than a length field says it is.
    #[error("buffer truncated: {protocol} needs {needed} bytes, {available} available")]
    Truncated {
        /// The protocol whose header or payload does not fit.
        protocol: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// A field holds a value the protocol does not allow.
    #[error("malformed {protocol}: {reason}")]
    Malformed {
        /// The protocol whose field is wrong.
        protocol: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A checksum does not verify.
    #[error("bad {protocol} checksum")]
    Checksum {
        /// The protocol whose checksum failed.
        protocol: &'static str,
    },
    /// A value cannot be represented (a payload too long for a length field, say).
    #[error("cannot emit {protocol}: {reason}")]
    Unrepresentable {
        /// The protocol being emitted.
        protocol: &'static str,
        /// Which value does not fit.
        reason: &'static str,
    },
}

/// Result of a wire operation.
pub type Result<T> = core::result::Result<T, Error>;

impl Error {
    pub(crate) const fn truncated(protocol: &'static str, needed: usize, available: usize) -> Self {
        Error::Truncated {
            protocol,
            needed,
            available,
        }
    }

    pub(crate) const fn malformed(protocol: &'static str, reason: &'static str) -> Self {
        Error::Malformed { protocol, reason }
    }
}

/// Checks that `buf` holds at least `needed` bytes.
#[inline]
pub(crate) fn check_len(protocol: &'static str, buf: &[u8], needed: usize) -> Result<()> {
    if buf.len() < needed {
        Err(Error::truncated(protocol, needed, buf.len()))
    } else {
        Ok(())
    }
}

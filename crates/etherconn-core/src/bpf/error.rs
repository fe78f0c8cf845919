//! The one error type of the `bpf` module.

/// Why a filter could not be built or a program would not be accepted by the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BpfError {
    /// No EtherType was given: the filter would reject every frame.
    #[error("no EtherType to accept: the filter would reject every frame")]
    NoEtherTypes,
    /// More distinct EtherTypes than a jump can skip over.
    #[error("more than {max} distinct EtherTypes given")]
    TooManyEtherTypes {
        /// The most a filter holds ([`MAX_ETHERTYPES`](super::MAX_ETHERTYPES)).
        max: usize,
    },
    /// More VLAN tags than etherconn dispatches on.
    #[error("max_tags is {given}, etherconn dispatches on at most {max} VLAN tags")]
    TooManyTags {
        /// The `max_tags` asked for.
        given: usize,
        /// The most allowed ([`MAX_TAGS`](crate::wire::vlan::MAX_TAGS)).
        max: usize,
    },
    /// An accept length of 0, which would drop every frame the filter accepts.
    #[error("accept length 0 would drop every accepted frame")]
    ZeroAcceptLen,
    /// A program is empty or longer than [`BPF_MAXINSNS`](super::BPF_MAXINSNS).
    #[error("program has {len} instructions, the kernel accepts 1 to {max}")]
    BadLength {
        /// Instructions in the program.
        len: usize,
        /// [`BPF_MAXINSNS`](super::BPF_MAXINSNS).
        max: usize,
    },
    /// A jump goes backwards or further than its offset field can say.
    #[error("jump at instruction {at} cannot reach instruction {target}")]
    JumpOutOfRange {
        /// Index of the jump.
        at: usize,
        /// Index it should reach.
        target: usize,
    },
    /// An instruction the kernel would refuse.
    #[error("instruction {at} is invalid: {reason}")]
    InvalidInstruction {
        /// Index of the instruction.
        at: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
}

//! Classic BPF receive filters (in progress).

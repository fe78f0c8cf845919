//! ipv6 (in progress).

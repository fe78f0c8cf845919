//! Frame classification (in progress).

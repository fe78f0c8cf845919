//! Frame building (in progress).

//! Read models built from the global event log (built out in the projections issue).
#![forbid(unsafe_code)]

//! End-to-end scenarios live in this crate's `tests/` folder.

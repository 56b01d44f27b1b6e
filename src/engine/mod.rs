//! The executor: runs a compiled scenario with Make's bundle semantics.
pub mod error;
pub mod module;

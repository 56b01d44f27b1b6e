//! The executor: runs a compiled scenario with Make's bundle semantics (`DESIGN.md` §3).
//!
//! Flow control — routers, filters, iterators, aggregators, variables, if-else/merge, error
//! directives — is implemented here; every other module is called through the
//! [`module::Module`] trait, so the executor itself does no I/O.
pub mod bundle;
pub mod error;
pub mod executor;
pub mod filter;
pub mod module;
pub mod report;
pub mod trigger;

pub use executor::{Responder, Resume, RunInput, run};
pub use report::{Report, Status};
pub use trigger::{TriggerCommit, TriggerState};

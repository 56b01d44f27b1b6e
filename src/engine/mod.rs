//! The executor: runs a compiled scenario with Make's bundle semantics (`DESIGN.md` §3).
//!
//! Flow control — routers, filters, iterators, aggregators, variables, if-else/merge, error
//! directives — is implemented here; every other module is called through the
//! [`Module`](crate::module::Module) trait, so the executor itself does no I/O. Each
//! execution runs within a [`Budget`] (wall time, operations, bytes held, bundles logged).
pub mod budget;
pub mod bundle;
pub mod executor;
pub mod filter;
pub mod report;
pub mod system;

pub use budget::{Budget, BudgetError};
pub use executor::{Responder, Resume, RunInput, run};
pub use report::{Report, Status};

//! Switchyard: an automation scenario engine that runs Make (Integromat) blueprints.
//!
//! The crate reads bottom-up; lower layers never import higher ones:
//! - [`expr`]: IML, Make's mapping language — parser, evaluator, function catalogue;
//! - [`scenario`]: the blueprint model, validation with JSON paths, the compiled graph;
//! - [`engine`]: the executor — bundles, filters, flow control, error directives — and the
//!   [`module::Module`] trait it calls modules through;
//! - [`apps`]: module implementations (HTTP, JSON, regexp, …) behind that trait;
//! - [`cli`]: the `switchyard` command line, which wires everything together.
//!
//! `docs/architecture.md` has the data flow and the invariants.
pub mod api;
pub mod apps;
pub mod cli;
pub mod engine;
pub mod expr;
pub mod module;
pub mod queue;
pub mod scenario;
pub mod store;
pub mod triggers;

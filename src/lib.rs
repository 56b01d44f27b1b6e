//! Switchyard: an automation scenario engine that runs Make (Integromat) blueprints.
//!
//! The crate reads bottom-up; each module is a layer, and a layer imports only the layers
//! below it (`tests/layering.rs` checks every `crate::` path against one table, shown in
//! `docs/architecture.md`):
//! - [`expr`]: IML, Make's mapping language — parser, evaluator, function catalogue — and
//!   [`expr::regexp`], the ECMAScript regular expressions every higher layer uses;
//! - [`module`]: the module contract — the [`module::Module`] and [`module::Registry`]
//!   traits, one call's [`module::Invocation`] and its execution's context, Make's typed
//!   module errors, polling-trigger state;
//! - [`scenario`]: the blueprint model, validation with JSON paths, the compiled graph;
//! - [`engine`]: the executor — bundles, filters, flow control, error directives — which
//!   reaches modules only through the contract and does no I/O of its own;
//! - [`apps`]: module implementations (HTTP, RSS, JSON, regexp, …) and [`apps::AppRegistry`],
//!   the one registry a process builds;
//! - [`store`]: the durable store — every SQL statement, for SQLite and PostgreSQL — including
//!   Make's data stores ([`store::Store::datastores_handle`], the [`module::datastore::DataStores`]
//!   service the `datastore:*` modules of [`apps`] reach);
//! - [`catalog`]: stored scenarios — create, edit, (de)activate, delete, hooks, and the
//!   compiled form of each version, cached;
//! - [`queue`]: the job queue (its jobs are queued executions), the webhook intake, the
//!   runner and the store writer;
//! - [`triggers`]: schedules and the scheduler loop;
//! - [`connections`]: stored connections, sealed under a master key kept out of the database;
//! - [`api`]: the HTTP API, webhook ingest, health and metrics (axum);
//! - [`console`]: the web console served by `serve` at `/` — scenarios drawn as graphs, the
//!   execution inspector, the connect page (server-rendered, cookie sessions with CSRF);
//! - [`cli`]: the `switchyard` command line, the only place that wires everything together.
//!
//! `docs/architecture.md` has the data flow and the invariants.
pub mod api;
pub mod apps;
pub mod catalog;
pub mod cli;
pub mod connections;
pub mod console;
pub mod engine;
pub mod expr;
pub mod module;
pub mod queue;
pub mod scenario;
pub mod store;
pub mod triggers;

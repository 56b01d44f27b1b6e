//! Modules that do work: the built-in ones (HTTP, JSON, text parsing …) and, later, apps
//! defined as data under `modules/`. `transport` is the HTTP client they all send through.

pub mod builtin;
pub mod transport;

pub use builtin::{BuiltinRegistry, RegistryError};
pub use transport::{Auth, HttpOptions, Transport};

//! Modules that do work: the built-in ones (HTTP, JSON, text parsing …) and, later, apps
//! defined as data under `modules/`.

pub mod builtin;

pub use builtin::{BuiltinRegistry, HttpOptions, RegistryError};

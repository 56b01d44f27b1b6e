//! Calling app modules directly, without a store: the connections of an execution that holds
//! exactly one stored connection, found by its name or id as a blueprint names it.

use futures::future::BoxFuture;
use switchyard::module::ModuleError;
use switchyard::module::connection::{Connection, Connections};

/// An execution's connections: this one only; any other reference is a configuration error
/// naming it, as the vault's would be.
pub struct OneConnection(pub Connection);

impl Connections for OneConnection {
    fn resolve<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<Connection, ModuleError>> {
        Box::pin(async move {
            if reference == self.0.name || reference == self.0.id {
                Ok(self.0.clone())
            } else {
                Err(ModuleError::config(format!(
                    "no connection named \"{reference}\""
                )))
            }
        })
    }
}

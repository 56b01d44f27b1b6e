//! Calling app modules directly, without a store: the connections of an execution that holds
//! exactly one stored connection, found by its name or id as a blueprint names it.

use std::sync::Arc;

use futures::future::BoxFuture;
use switchyard::module::connection::{Connection, Connections, ConnectionsHandle};
use switchyard::module::{ExecutionContext, ModuleError};

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

/// A test execution's context whose connections are `connection` alone.
pub fn context_with(connection: Connection) -> ExecutionContext {
    let mut context = ExecutionContext::new("test");
    let handle: ConnectionsHandle = Arc::new(OneConnection(connection));
    context.extensions.insert(handle);
    context
}

//! The one credential path of every app: a stored connection's typed [`Credential`] becomes
//! the transport's [`Auth`] in one function ([`auth_of`]), and one authenticated send
//! ([`Signer::send`]) — used by the built-in HTTP modules and by every app defined as data —
//! puts it on a request, and when the service refuses it with 401 and the credential is
//! refreshable (an OAuth2 token), asks the connections source for a new one (its refresh is
//! single-flight: one per connection however many requests ask) and sends the request once
//! more.
//!
//! Invariants:
//! - A request is resent at most once per refusal, and only after a refresh that gave a
//!   credential; a second 401 is the caller's error (`InvalidAccessTokenError` for apps
//!   defined as data).
//! - The credentials a signer held — the first and every refreshed one — are scrubbed from the
//!   errors it returns ([`Signer::scrub`]) and, once the caller keeps them out of the
//!   execution's history ([`Signer::keep_out_of_history`]), from the outputs, inputs and
//!   errors the history keeps; they are never logged. Both go through
//!   [`crate::module::Scrubber`], in every spelling an API may echo: raw, percent-encoded,
//!   JSON-escaped, and a basic credential's base64 `user:password`.

use std::future::Future;
use std::sync::Mutex;

use reqwest::header::HeaderName;

use base64::Engine as _;

use crate::apps::transport::{Auth, Request, Response};
use crate::module::connection::{Connection, ConnectionsHandle, Credential, KeyPlacement};
use crate::module::{ExecutionContext, ModuleError, Redactions, Scrubber};

/// The transport credential of `credential`; a `secret` has none (only templates read it).
pub fn auth_of(credential: &Credential) -> Result<Auth, ModuleError> {
    Ok(match credential {
        Credential::ApiKey {
            name,
            key,
            placement: KeyPlacement::Header,
        } => Auth::ApiKeyHeader {
            name: HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ModuleError::config(format!("'{name}' is not a valid header name")))?,
            value: key.clone(),
        },
        Credential::ApiKey {
            name,
            key,
            placement: KeyPlacement::Query,
        } => Auth::ApiKeyQuery {
            name: name.clone(),
            value: key.clone(),
        },
        Credential::Bearer(token)
        | Credential::OAuth2 {
            access_token: token,
        }
        | Credential::ServiceAccount {
            access_token: token,
        } => Auth::Bearer(token.clone()),
        Credential::Basic { user, password } => Auth::Basic {
            user: user.clone(),
            password: password.clone(),
        },
        Credential::Secret(_) => Auth::None,
    })
}

/// The secret values of an [`Auth`] (what errors and history must not show), as sent: a
/// basic credential's password and the base64 of `user:password` its header carries.
fn secrets_of(auth: &Auth) -> Vec<String> {
    match auth {
        Auth::None => Vec::new(),
        Auth::Bearer(token) => vec![token.clone()],
        Auth::Basic { user, password } => vec![
            password.clone(),
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")),
        ],
        Auth::ApiKeyHeader { value, .. } | Auth::ApiKeyQuery { value, .. } => {
            vec![value.clone()]
        }
    }
}

/// Whether a service refused the request's credential (HTTP 401), as a response or as the
/// error the transport made of it.
pub fn is_refused(outcome: &Result<Response, ModuleError>) -> bool {
    match outcome {
        Ok(response) => response.status == reqwest::StatusCode::UNAUTHORIZED,
        Err(error) => error.status() == Some(401),
    }
}

/// Where a refreshable credential gets a new token.
struct Refresh {
    connections: ConnectionsHandle,
    connection_id: String,
}

/// The credential of one module call: applied to every request of the call, replaced when a
/// refusal is followed by a refresh (later requests of the call use the new one).
pub struct Signer {
    auth: Mutex<Auth>,
    refresh: Option<Refresh>,
    /// Every credential value held, for [`Signer::scrub`].
    secrets: Mutex<Vec<String>>,
    /// The execution's redactions once the call keeps its values out of the history
    /// ([`Signer::keep_out_of_history`]): every value held is added to them.
    history: Mutex<Option<Redactions>>,
}

impl Signer {
    /// A signer that applies `auth` and never refreshes.
    pub fn fixed(auth: Auth) -> Signer {
        Signer {
            secrets: Mutex::new(secrets_of(&auth)),
            auth: Mutex::new(auth),
            refresh: None,
            history: Mutex::new(None),
        }
    }

    /// A signer for `connection`'s own credential, refreshed through `connections` when the
    /// credential is refreshable.
    pub fn for_connection(
        connection: &Connection,
        connections: Option<ConnectionsHandle>,
    ) -> Result<Signer, ModuleError> {
        let credential = connection.credential()?;
        let mut signer = Signer::fixed(auth_of(&credential)?);
        if credential.is_refreshable()
            && let Some(connections) = connections
        {
            signer.refresh = Some(Refresh {
                connections,
                connection_id: connection.id.clone(),
            });
        }
        Ok(signer)
    }

    /// The credential applied now.
    pub fn auth(&self) -> Auth {
        self.auth.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sends `request` with the current credential through `send`; on a 401 with a
    /// refreshable credential, refreshes it once and sends the request again with the new one.
    pub async fn send<F, Fut>(&self, mut request: Request, send: F) -> Result<Response, ModuleError>
    where
        F: Fn(Request) -> Fut,
        Fut: Future<Output = Result<Response, ModuleError>>,
    {
        request.auth = self.auth();
        let Some(refresh) = &self.refresh else {
            return send(request).await;
        };
        let retry = request.clone();
        let outcome = send(request).await;
        if !is_refused(&outcome) {
            return outcome;
        }
        let stale = match &retry.auth {
            Auth::Bearer(token) => token.clone(),
            _ => String::new(),
        };
        let fresh = refresh
            .connections
            .refresh(&refresh.connection_id, &stale)
            .await?;
        // Sent again even when the provider handed back the same token (a JWT issued again
        // within the same second is the same text): the refresh may have revived it.
        let auth = auth_of(&fresh.credential()?)?;
        for secret in secrets_of(&auth) {
            self.hide(&secret);
        }
        *self.auth.lock().unwrap_or_else(|p| p.into_inner()) = auth.clone();
        let mut again = retry;
        again.auth = auth;
        send(again).await
    }

    /// Hides `secret` too (a refreshed credential): from errors and, when kept, from the
    /// history.
    fn hide(&self, secret: &str) {
        {
            let mut secrets = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
            if !secrets.iter().any(|s| s == secret) {
                secrets.push(secret.to_string());
            }
        }
        if let Some(history) = &*self.history.lock().unwrap_or_else(|p| p.into_inner()) {
            history.add(secret);
        }
    }

    /// Keeps every value this signer holds, and every one it is given later (a refreshed
    /// token), out of the history of the execution of `context`: they are
    /// added to its [`Redactions`], which the runner and `switchyard run` scrub from the
    /// outputs, inputs and errors they store or print. Without redactions (a connection test)
    /// there is no history to keep them out of.
    pub fn keep_out_of_history(&self, context: &ExecutionContext) {
        let Some(redactions) = context.extensions.get::<Redactions>() else {
            return;
        };
        for secret in self
            .secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            redactions.add(secret);
        }
        *self.history.lock().unwrap_or_else(|p| p.into_inner()) = Some(redactions.clone());
    }

    /// `error` with every credential value this signer held replaced by `[redacted]`, in
    /// every spelling ([`Scrubber`]).
    pub fn scrub(&self, error: ModuleError) -> ModuleError {
        let secrets = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
        Scrubber::of(secrets.iter()).error(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_credential_has_one_auth() {
        assert_eq!(
            auth_of(&Credential::OAuth2 {
                access_token: "t".into()
            })
            .unwrap(),
            Auth::Bearer("t".into())
        );
        assert_eq!(
            auth_of(&Credential::Basic {
                user: "u".into(),
                password: "p".into()
            })
            .unwrap(),
            Auth::Basic {
                user: "u".into(),
                password: "p".into()
            }
        );
        assert!(matches!(
            auth_of(&Credential::ApiKey {
                name: "k".into(),
                key: "v".into(),
                placement: KeyPlacement::Query
            })
            .unwrap(),
            Auth::ApiKeyQuery { .. }
        ));
        assert!(
            auth_of(&Credential::ApiKey {
                name: "bad name".into(),
                key: "v".into(),
                placement: KeyPlacement::Header
            })
            .is_err()
        );
        assert_eq!(
            auth_of(&Credential::Secret("s".into())).unwrap(),
            Auth::None
        );
    }

    #[test]
    fn a_signer_scrubs_what_it_held() {
        let signer = Signer::fixed(Auth::Bearer("tok-secret-1".into()));
        let error = ModuleError::data("echo tok-secret-1")
            .with_details(serde_json::json!({"body": "tok-secret-1"}));
        let scrubbed = signer.scrub(error);
        assert_eq!(scrubbed.message, "echo [redacted]");
        assert_eq!(scrubbed.details.unwrap()["body"], "[redacted]");
    }

    #[test]
    fn a_basic_credential_is_hidden_raw_and_as_its_header() {
        let signer = Signer::fixed(Auth::Basic {
            user: "ann".into(),
            password: "pa ss/wd".into(),
        });
        // base64("ann:pa ss/wd"), and the password as a query string would carry it.
        let error = ModuleError::data("got Basic YW5uOnBhIHNzL3dk for pa+ss%2Fwd (pa ss/wd)");
        assert_eq!(
            signer.scrub(error).message,
            "got Basic [redacted] for [redacted] ([redacted])"
        );
    }
}

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
//! - The credentials a signer held — the first and every refreshed one — are scrubbed from
//!   the errors it returns ([`Signer::scrub`]); they are never logged.

use std::future::Future;
use std::sync::Mutex;

use reqwest::header::HeaderName;

use crate::apps::transport::{Auth, Request, Response};
use crate::module::ModuleError;
use crate::module::connection::{Connection, ConnectionsHandle, Credential, KeyPlacement};

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

/// The secret values of an [`Auth`] (what errors must not show).
fn secrets_of(auth: &Auth) -> Vec<String> {
    match auth {
        Auth::None => Vec::new(),
        Auth::Bearer(token) => vec![token.clone()],
        Auth::Basic { password, .. } => vec![password.clone()],
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
}

impl Signer {
    /// A signer that applies `auth` and never refreshes.
    pub fn fixed(auth: Auth) -> Signer {
        Signer {
            secrets: Mutex::new(secrets_of(&auth)),
            auth: Mutex::new(auth),
            refresh: None,
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
        self.secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(secrets_of(&auth));
        *self.auth.lock().unwrap_or_else(|p| p.into_inner()) = auth.clone();
        let mut again = retry;
        again.auth = auth;
        send(again).await
    }

    /// `error` with every credential value this signer held replaced by `<redacted>`.
    pub fn scrub(&self, mut error: ModuleError) -> ModuleError {
        let secrets = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
        for secret in secrets.iter().filter(|s| s.len() >= 4) {
            if error.message.contains(secret.as_str()) {
                error.message = error.message.replace(secret.as_str(), "<redacted>");
            }
            if let Some(details) = &error.details {
                let text = details.to_string();
                if text.contains(secret.as_str()) {
                    error.details =
                        serde_json::from_str(&text.replace(secret.as_str(), "<redacted>")).ok();
                }
            }
        }
        error
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
        assert_eq!(scrubbed.message, "echo <redacted>");
        assert_eq!(scrubbed.details.unwrap()["body"], "<redacted>");
    }
}

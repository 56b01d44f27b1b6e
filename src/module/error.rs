//! Module errors, typed as Make types them (`imt-proto` `src/error.ts`): the kind decides what
//! happens when no error handler catches it (roll back, store an incomplete execution, retry later).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Make's error classes. Serialized (and read back, [`std::str::FromStr`]) under their Make
/// names (`DataError`, `RateLimitError` …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    RuntimeError,
    DataError,
    InconsistencyError,
    RateLimitError,
    ConnectionError,
    InvalidConfigurationError,
    InvalidAccessTokenError,
    IncompleteDataError,
    DuplicateDataError,
    ModuleTimeoutError,
    MaxResultsExceededError,
    UnexpectedError,
    /// The execution exceeded one of its budgets (wall time, operations, bytes of bundles
    /// held; `engine::Budget`) and was stopped. Never retried, and no error handler catches
    /// it: the execution ends, rolled back.
    ExecutionInterruptedError,
}

impl ErrorKind {
    /// Kinds Make retries automatically when stored as an incomplete execution.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimitError | ErrorKind::ConnectionError | ErrorKind::ModuleTimeoutError
        )
    }

    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 13] = [
        ErrorKind::RuntimeError,
        ErrorKind::DataError,
        ErrorKind::InconsistencyError,
        ErrorKind::RateLimitError,
        ErrorKind::ConnectionError,
        ErrorKind::InvalidConfigurationError,
        ErrorKind::InvalidAccessTokenError,
        ErrorKind::IncompleteDataError,
        ErrorKind::DuplicateDataError,
        ErrorKind::ModuleTimeoutError,
        ErrorKind::MaxResultsExceededError,
        ErrorKind::UnexpectedError,
        ErrorKind::ExecutionInterruptedError,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::RuntimeError => "RuntimeError",
            ErrorKind::DataError => "DataError",
            ErrorKind::InconsistencyError => "InconsistencyError",
            ErrorKind::RateLimitError => "RateLimitError",
            ErrorKind::ConnectionError => "ConnectionError",
            ErrorKind::InvalidConfigurationError => "InvalidConfigurationError",
            ErrorKind::InvalidAccessTokenError => "InvalidAccessTokenError",
            ErrorKind::IncompleteDataError => "IncompleteDataError",
            ErrorKind::DuplicateDataError => "DuplicateDataError",
            ErrorKind::ModuleTimeoutError => "ModuleTimeoutError",
            ErrorKind::MaxResultsExceededError => "MaxResultsExceededError",
            ErrorKind::UnexpectedError => "UnexpectedError",
            ErrorKind::ExecutionInterruptedError => "ExecutionInterruptedError",
        }
    }
}

/// A name that is not one of Make's error kinds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error kind {0:?}")]
pub struct UnknownErrorKind(pub String);

impl std::str::FromStr for ErrorKind {
    type Err = UnknownErrorKind;

    /// Reads a kind from its Make name ([`ErrorKind::name`]).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        ErrorKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| UnknownErrorKind(name.chars().take(64).collect()))
    }
}

/// An error raised by one module on one bundle.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct ModuleError {
    #[serde(rename = "name")]
    pub kind: ErrorKind,
    pub message: String,
    /// For `RateLimitError`: how long to wait before retrying, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Extra facts for the designer (an HTTP status and body, a JSON path …). Never secrets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl ModuleError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ModuleError {
            kind,
            message: message.into(),
            delay_ms: None,
            details: None,
        }
    }
    pub fn data(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::DataError, message)
    }
    pub fn runtime(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::RuntimeError, message)
    }
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidConfigurationError, message)
    }
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
    pub fn with_delay_ms(mut self, delay_ms: u64) -> Self {
        self.delay_ms = Some(delay_ms);
        self
    }

    /// The HTTP status of the response this error reports (`details.statusCode`), if any.
    pub fn status(&self) -> Option<u16> {
        let code = self.details.as_ref()?.get("statusCode")?.as_u64()?;
        u16::try_from(code).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_read_back_from_their_names() {
        for kind in ErrorKind::ALL {
            assert_eq!(kind.name().parse::<ErrorKind>(), Ok(kind));
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.name());
            assert_eq!(serde_json::from_value::<ErrorKind>(json).unwrap(), kind);
        }
        assert!("dataError".parse::<ErrorKind>().is_err());
        assert!("QueueError".parse::<ErrorKind>().is_err());
    }

    #[test]
    fn an_interrupted_execution_is_never_retried() {
        assert!(!ErrorKind::ExecutionInterruptedError.is_transient());
        assert_eq!(
            "ExecutionInterruptedError".parse::<ErrorKind>(),
            Ok(ErrorKind::ExecutionInterruptedError)
        );
    }
}

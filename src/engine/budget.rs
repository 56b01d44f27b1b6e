//! What one execution may spend: wall time, operations, bytes of bundle data held, and
//! bundles kept per module in the report's log ([`Budget`], Make-like defaults), and the
//! [`Meter`] that counts the bytes held while it runs.
//!
//! Invariants:
//! - a [`Budget`] is valid once built: every limit is at least 1 (the log may keep 0);
//! - exceeding a budget ends the execution with an `ExecutionInterruptedError` that names the
//!   budget, its limit and the flag that raises it ([`Exceeded::error`]); no error handler
//!   catches it and it is never retried;
//! - bytes are counted once: a bundle kept in the log counts until the execution ends, any
//!   other bundle while some work item still holds it ([`Held`] gives its bytes back when the
//!   last one lets go), an aggregator's items while its accumulation is open, a parked bundle
//!   until the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;

use super::report::ReportError;
use crate::module::ErrorKind;

/// The limits of one execution. `Default` is the documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    wall_time: Duration,
    operations: u64,
    bundle_bytes: u64,
    log_bundles_per_module: u64,
}

impl Budget {
    /// Make's limit on one execution's run time: 40 minutes.
    pub const DEFAULT_WALL_TIME: Duration = Duration::from_secs(40 * 60);
    /// Operations per execution (Make counts none per execution, only per plan). Ten million
    /// is far above what a Make execution reaches in 40 minutes (a module that calls out
    /// takes milliseconds), while flow control alone spends it in seconds (10,000 × 10,000
    /// nested repeaters reach it in about 13 s, release build, on a busy 2-core machine), so
    /// it stops a runaway loop long before the wall time does.
    pub const DEFAULT_OPERATIONS: u64 = 10_000_000;
    /// Bytes of bundle data held at once: 256 MiB.
    pub const DEFAULT_BUNDLE_BYTES: u64 = 256 * 1024 * 1024;
    /// Output bundles of each module kept in the report's log (and stored as the module's
    /// data); the others are counted ([`ModuleStats`](super::report::ModuleStats)) but not
    /// kept.
    pub const DEFAULT_LOG_BUNDLES_PER_MODULE: u64 = 1_000;

    /// How long the execution may run, module calls included.
    pub fn wall_time(&self) -> Duration {
        self.wall_time
    }

    /// Operations (counted as Make counts them) the execution may run.
    pub fn operations(&self) -> u64 {
        self.operations
    }

    /// Bytes of bundle data the execution may hold at once (see [`Meter`]).
    pub fn bundle_bytes(&self) -> u64 {
        self.bundle_bytes
    }

    /// Output bundles of each module the report's log keeps (the first ones).
    pub fn log_bundles_per_module(&self) -> u64 {
        self.log_bundles_per_module
    }

    /// This budget with another wall time (at least 1 ms).
    pub fn with_wall_time(self, wall_time: Duration) -> Result<Budget, BudgetError> {
        if wall_time < Duration::from_millis(1) {
            return Err(BudgetError::Zero("the wall time"));
        }
        Ok(Budget { wall_time, ..self })
    }

    /// This budget with another number of operations (at least 1).
    pub fn with_operations(self, operations: u64) -> Result<Budget, BudgetError> {
        if operations == 0 {
            return Err(BudgetError::Zero("the operations"));
        }
        Ok(Budget { operations, ..self })
    }

    /// This budget with another number of bytes of bundles held (at least 1).
    pub fn with_bundle_bytes(self, bundle_bytes: u64) -> Result<Budget, BudgetError> {
        if bundle_bytes == 0 {
            return Err(BudgetError::Zero("the bytes of bundles"));
        }
        Ok(Budget {
            bundle_bytes,
            ..self
        })
    }

    /// This budget keeping another number of bundles per module in the log (0 keeps none).
    pub fn with_log_bundles_per_module(self, log_bundles_per_module: u64) -> Budget {
        Budget {
            log_bundles_per_module,
            ..self
        }
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            wall_time: Self::DEFAULT_WALL_TIME,
            operations: Self::DEFAULT_OPERATIONS,
            bundle_bytes: Self::DEFAULT_BUNDLE_BYTES,
            log_bundles_per_module: Self::DEFAULT_LOG_BUNDLES_PER_MODULE,
        }
    }
}

/// A limit a budget cannot have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    #[error("{0} budget must be more than 0")]
    Zero(&'static str),
}

/// Which budget an execution ran out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    WallTime,
    Operations,
    BundleBytes,
}

impl Exceeded {
    /// The name of the budget in an error's details.
    pub fn name(self) -> &'static str {
        match self {
            Exceeded::WallTime => "wallTime",
            Exceeded::Operations => "operations",
            Exceeded::BundleBytes => "bundleBytes",
        }
    }

    /// The command-line flag that sets this budget.
    pub fn flag(self) -> &'static str {
        match self {
            Exceeded::WallTime => "--max-execution-seconds",
            Exceeded::Operations => "--max-operations",
            Exceeded::BundleBytes => "--max-bundle-bytes",
        }
    }

    /// The error that ends an execution stopped at module `module`: which budget, its limit
    /// and the flag to raise it, in the message and in `details` (with `spent`: the
    /// operations or bytes it would have taken; 0 for the wall time).
    pub fn error(self, budget: &Budget, module: u32, spent: u64) -> ReportError {
        let flag = self.flag();
        let (message, limit) = match self {
            Exceeded::WallTime => {
                let seconds = seconds(budget.wall_time);
                (
                    format!("the execution ran for {seconds} s, its time limit ({flag} {seconds})"),
                    json!(budget.wall_time.as_secs_f64()),
                )
            }
            Exceeded::Operations => {
                let limit = budget.operations;
                (
                    format!("the execution ran {limit} operations, its limit ({flag} {limit})"),
                    json!(limit),
                )
            }
            Exceeded::BundleBytes => {
                let limit = budget.bundle_bytes;
                (
                    format!(
                        "the execution's bundles would take more than {limit} bytes, its limit ({flag} {limit})"
                    ),
                    json!(limit),
                )
            }
        };
        ReportError {
            module,
            name: ErrorKind::ExecutionInterruptedError.name().to_string(),
            message,
            details: Some(json!({
                "budget": self.name(),
                "limit": limit,
                "spent": spent,
                "flag": flag
            })),
        }
    }
}

/// Seconds as a user writes them: `2400`, or `0.25` for a limit under a whole second.
fn seconds(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        duration.as_secs().to_string()
    } else {
        format!("{}", duration.as_secs_f64())
    }
}

/// What holding one bundle costs besides its value (as `expr::value::estimated_size` counts
/// it): its shared pointer, the ancestry frame that carries it and the work item that
/// waits on it.
pub const BUNDLE_OVERHEAD: u64 = 128;

/// Bytes of bundle data one execution holds right now. Cloning shares the count.
#[derive(Debug, Clone, Default)]
pub struct Meter(Arc<AtomicU64>);

impl Meter {
    /// Counts `bytes` more; returns the new total.
    pub fn add(&self, bytes: u64) -> u64 {
        self.0
            .fetch_add(bytes, Ordering::Relaxed)
            .saturating_add(bytes)
    }

    /// Counts `bytes` less.
    pub fn sub(&self, bytes: u64) {
        self.0.fetch_sub(bytes, Ordering::Relaxed);
    }

    pub fn held(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts `bytes` for as long as the returned guard lives.
    pub fn hold(&self, bytes: u64) -> Held {
        self.add(bytes);
        Held {
            meter: self.clone(),
            bytes,
        }
    }
}

/// Bytes counted by a [`Meter`] until this is dropped.
#[derive(Debug)]
pub struct Held {
    meter: Meter,
    bytes: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.meter.sub(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_validated_once() {
        let budget = Budget::default();
        assert_eq!(budget.wall_time(), Duration::from_secs(2400));
        assert_eq!(budget.operations(), 10_000_000);
        assert_eq!(budget.bundle_bytes(), 256 << 20);
        assert_eq!(budget.log_bundles_per_module(), 1_000);
        assert!(budget.with_operations(0).is_err());
        assert!(budget.with_bundle_bytes(0).is_err());
        assert!(budget.with_wall_time(Duration::ZERO).is_err());
        assert_eq!(
            budget.with_operations(0).unwrap_err().to_string(),
            "the operations budget must be more than 0"
        );
        let custom = budget
            .with_operations(5)
            .and_then(|b| b.with_wall_time(Duration::from_millis(250)))
            .map(|b| b.with_log_bundles_per_module(0))
            .unwrap();
        assert_eq!(
            (custom.operations(), custom.log_bundles_per_module()),
            (5, 0)
        );
        let error = Exceeded::WallTime.error(&custom, 3, 0);
        assert_eq!(
            error.message,
            "the execution ran for 0.25 s, its time limit (--max-execution-seconds 0.25)"
        );
        assert_eq!(error.name, "ExecutionInterruptedError");
        assert_eq!(error.module, 3);
        let error = Exceeded::Operations.error(&custom, 1, 5);
        assert_eq!(
            error.message,
            "the execution ran 5 operations, its limit (--max-operations 5)"
        );
        assert_eq!(
            error.details,
            Some(json!({
                "budget": "operations",
                "limit": 5,
                "spent": 5,
                "flag": "--max-operations"
            }))
        );
    }

    #[test]
    fn held_bytes_are_given_back() {
        let meter = Meter::default();
        assert_eq!(meter.add(10), 10);
        let held = meter.hold(5);
        let shared = meter.clone();
        assert_eq!(shared.held(), 15);
        drop(held);
        assert_eq!(meter.held(), 10);
        meter.sub(10);
        assert_eq!(shared.held(), 0);
    }
}

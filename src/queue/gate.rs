//! Bounds the memory large trigger payloads take at once. A JSON payload read as a value
//! takes about ten times its text (16 webhook bodies of 5 MB each, accepted and run at
//! once, took 1.8 GB), so work on a payload of [`GATED_PAYLOAD_BYTES`] or more — reading a
//! webhook body, running an execution from it — first takes its size from a budget shared by
//! the process ([`PayloadGate::new`]), and gives it back when done. Smaller payloads, nearly
//! every one, pass without touching the gate.
//!
//! Invariants: a payload larger than the whole budget takes all of it (it runs alone rather
//! than never); one piece of work holds one [`Admission`] from the body's first byte to the
//! end of its run, so it never waits for a second one while holding the first.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Payloads from this size on go through the gate.
pub const GATED_PAYLOAD_BYTES: usize = 64 * 1024;

/// The budget by default: large payloads in flight at once, in bytes of JSON text.
pub const DEFAULT_PAYLOAD_BUDGET: usize = 16 * 1024 * 1024;

/// A process's budget for large payloads.
#[derive(Clone)]
pub struct PayloadGate {
    permits: Arc<Semaphore>,
    /// The budget in KiB (one permit each).
    capacity: u32,
}

/// A payload's share of the budget, given back when dropped (none for a small payload).
#[derive(Debug, Default)]
pub struct Admission {
    _permit: Option<OwnedSemaphorePermit>,
}

impl PayloadGate {
    /// A gate letting `budget_bytes` of large payloads in at once.
    pub fn new(budget_bytes: usize) -> PayloadGate {
        let capacity = u32::try_from(budget_bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, Semaphore::MAX_PERMITS as u32);
        PayloadGate {
            permits: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
        }
    }

    /// Waits until a payload of `bytes` fits in the budget (at once when it is small).
    pub async fn admit(&self, bytes: usize) -> Admission {
        if bytes < GATED_PAYLOAD_BYTES {
            return Admission::default();
        }
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(self.capacity);
        // The semaphore is never closed.
        Admission {
            _permit: self.permits.clone().acquire_many_owned(kib).await.ok(),
        }
    }

    /// Bytes of the budget not taken right now.
    pub fn available_bytes(&self) -> usize {
        self.permits.available_permits() * 1024
    }
}

impl Default for PayloadGate {
    fn default() -> Self {
        PayloadGate::new(DEFAULT_PAYLOAD_BUDGET)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn large_payloads_wait_for_room_small_ones_never() {
        let gate = PayloadGate::new(1024 * 1024);
        let first = gate.admit(600 * 1024).await;
        assert_eq!(gate.available_bytes(), 424 * 1024);
        // A second large one waits until the first is done.
        let waiting = tokio::time::timeout(Duration::from_millis(50), gate.admit(600 * 1024));
        assert!(waiting.await.is_err(), "admitted over the budget");
        // Small ones pass, and take nothing.
        let _small = gate.admit(GATED_PAYLOAD_BYTES - 1).await;
        assert_eq!(gate.available_bytes(), 424 * 1024);
        drop(first);
        let second = tokio::time::timeout(Duration::from_millis(50), gate.admit(600 * 1024));
        assert!(second.await.is_ok(), "not admitted once there was room");
        // One larger than the whole budget takes all of it, and is not refused.
        let gate = PayloadGate::new(1024 * 1024);
        let huge = gate.admit(5 * 1024 * 1024).await;
        assert_eq!(gate.available_bytes(), 0);
        drop(huge);
        assert_eq!(gate.available_bytes(), 1024 * 1024);
    }
}

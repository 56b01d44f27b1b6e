//! What starts executions on its own: schedules ([`schedule`] computes occurrences,
//! [`scheduler`] claims and queues them). Webhooks arrive through the API.
pub mod schedule;
pub mod scheduler;

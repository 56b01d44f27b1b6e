//! What starts executions: schedules (this file's [`schedule`]) and, in the service, webhooks.
pub mod schedule;

//! The agent's library: the configuration and the domain rules the binary,
//! the fuzz targets and the tests all call. Each rule is a pure function
//! given `now`: the alert state (`alert_state`), "due by" and overdue
//! (`due`), the No.151 assessment (`report`), the scheduler's decisions
//! (`schedule`), and a job's drill with its rotation slice (`plan`).

pub mod alert_state;
pub mod config;
pub mod describe;
pub mod due;
pub mod escape;
pub mod plan;
pub mod report;
pub mod schedule;
pub mod store;

//! The agent's library: the configuration and the domain rules the binary,
//! the fuzz targets and the tests all call. Each rule is a pure function
//! given `now`: the alert state (`alert_state`), "due by" and overdue
//! (`due`), the No.151 assessment (`report`), and the scheduler's decisions
//! (`schedule`).

pub mod alert_state;
pub mod config;
pub mod describe;
pub mod due;
pub mod escape;
pub mod report;
pub mod schedule;
pub mod store;

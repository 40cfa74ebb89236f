//! The agent's configuration, as a library: the binary reads it, and the
//! fuzz targets and tests drive the parser directly.

pub mod alert_state;
pub mod config;
pub mod describe;
pub mod due;
pub mod store;

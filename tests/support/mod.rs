//! The shared harness of the end-to-end tests: the fixture tree
//! (`fixtures`, also used by the library's tests), the site and the binary
//! (`site`), real backup tools (`tools`), a live PostgreSQL (`pg`) and the
//! agent as a daemon (`daemon`). Test files take what they need from here and
//! never from each other.

mod daemon;
mod fixtures;
mod pg;
mod site;
mod tools;

pub use daemon::*;
pub use fixtures::*;
pub use pg::*;
pub use site::*;
pub use tools::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

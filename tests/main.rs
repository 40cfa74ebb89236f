//! End-to-end tests: the real `restore-verifier` binary on the committed
//! fixtures and on backups real tools write. One file per area; the shared
//! harness is `support/`.

mod agent;
mod alerts;
mod borg;
mod cli;
mod config;
mod conformance;
mod deploy;
mod evidence;
mod faults;
mod fuzz;
mod guides;
mod isolation;
mod outputs;
mod pg_dumps;
mod pg_server;
mod postgres;
mod report;
mod restic;
mod runbook;
mod store;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rstest::rstest;
use serde_json::{Value, json};
use support::*;

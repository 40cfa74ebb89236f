//! Period reports for auditors and the JAMA/JAPIA No.151 assessment.
//!
//! `assess` is the rule: a pure function of the records, the systems in
//! scope, the period, the ledger's verification and `now`, so it is tested on
//! synthetic years of records with a fixed clock. `words` holds every
//! sentence in both languages; `markdown`, `html` and `csv` render an
//! [`Assessment`]. Reading the records from the ledger or the evidence store
//! is the binary's part.

mod assess;
mod csv;
mod html;
mod markdown;
#[cfg(test)]
mod tests;
mod words;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use assess::*;
pub use csv::csv;
pub use html::html;
pub use markdown::markdown;
pub use words::{rotation_text, signing_text};

/// CIS Controls 11.5: test recovery at least quarterly.
pub const DEFAULT_POLICY: Duration = Duration::from_secs(90 * 86_400);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    En,
    Ja,
}

#[derive(Debug, Clone, Serialize)]
pub struct Period {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

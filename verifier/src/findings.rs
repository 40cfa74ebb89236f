//! Findings are data: a capped list of paths with an exact count.

use serde::{Deserialize, Serialize};

/// How many items of each finding list a record keeps; counts stay exact.
pub const LIST_CAP: usize = 100;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Finding {
    pub path: String,
    /// What is wrong or different, e.g. "content differs at byte 1234".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub what: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Findings {
    /// Exact number of paths in this category.
    pub count: u64,
    /// The first `LIST_CAP` of them, in tree order.
    pub items: Vec<Finding>,
}

impl Findings {
    pub fn push(&mut self, path: String, what: String) {
        self.count += 1;
        if self.items.len() < LIST_CAP {
            self.items.push(Finding { path, what });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn contains(&self, path: &str) -> bool {
        self.items.iter().any(|f| f.path == path)
    }
}

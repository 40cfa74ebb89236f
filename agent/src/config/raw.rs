//! Each section as written, before any value is checked: serde structs that
//! deny unknown keys and keep the span of each value for its diagnostic.

use super::*;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvidence {
    pub(super) store: Option<Spanned<String>>,
    pub(super) password_file: Option<Spanned<String>>,
    pub(super) ca_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlert {
    pub(super) name: Option<Spanned<String>>,
    #[serde(rename = "type")]
    pub(super) kind: Spanned<String>,
    pub(super) url: Option<Spanned<String>>,
    pub(super) run: Option<Spanned<Vec<String>>>,
    pub(super) on: Option<Vec<Spanned<String>>>,
    pub(super) jobs: Option<Vec<Spanned<String>>>,
    pub(super) repeat_interval: Option<Spanned<String>>,
    pub(super) smtp: Option<Spanned<String>>,
    pub(super) tls: Option<Spanned<String>>,
    pub(super) credentials_file: Option<Spanned<String>>,
    pub(super) from: Option<Spanned<String>>,
    pub(super) to: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgent {
    pub(super) state_dir: Option<Spanned<String>>,
    pub(super) sandbox_dir: Option<Spanned<String>>,
    pub(super) max_concurrent_drills: Option<Spanned<i64>>,
    pub(super) timezone: Option<Spanned<String>>,
    pub(super) listen: Option<Spanned<String>>,
    pub(super) api_token_file: Option<Spanned<String>>,
    pub(super) signing_key_file: Option<Spanned<String>>,
    pub(super) previous_signing_key_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJob {
    pub(super) name: Spanned<String>,
    pub(super) system: Option<String>,
    pub(super) schedule: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) rto: Option<Spanned<String>>,
    pub(super) rpo: Option<Spanned<String>>,
    pub(super) max_interval: Option<Spanned<String>>,
    pub(super) catch_up: Option<bool>,
    pub(super) jitter: Option<Spanned<String>>,
    pub(super) max_restore_bytes: Option<Spanned<String>>,
    pub(super) run_as: Option<Spanned<String>>,
    pub(super) network: Option<Spanned<String>>,
    pub(super) source: Option<Spanned<String>>,
    /// Read by its type (`backup/`); named here so that serde requires it
    /// and lists it among a job's keys.
    #[allow(dead_code)]
    pub(super) backup: serde::de::IgnoredAny,
    pub(super) verify: Option<RawVerify>,
    pub(super) check: Option<Vec<RawCheck>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVerify {
    pub(super) content: Option<Spanned<String>>,
    pub(super) sample_files: Option<Spanned<i64>>,
    pub(super) rotate_over: Option<Spanned<i64>>,
    pub(super) seed: Option<Spanned<i64>>,
    pub(super) exclude: Option<Vec<Spanned<String>>>,
    pub(super) min_files: Option<Spanned<i64>>,
    pub(super) expect: Option<Vec<Spanned<String>>>,
    pub(super) manifest: Option<Spanned<String>>,
    pub(super) metadata: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    pub(super) run: Spanned<Vec<String>>,
    pub(super) expect_exit: Option<i32>,
    pub(super) expect_stdout: Option<Spanned<RawExpect>>,
    pub(super) timeout: Option<Spanned<String>>,
}

/// `expect_stdout = "ok"` (exact) or `expect_stdout = { regex = "^ok$" }`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawExpect {
    Exact(String),
    Regex { regex: String },
}

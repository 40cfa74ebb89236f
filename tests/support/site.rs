//! The site every end-to-end test drills in: a temporary directory with the
//! fixture source, its backups and a config, and the real binary run on it.

use super::*;

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_restore-verifier"));
    c.env_remove("RESTORE_VERIFIER_CONFIG");
    c
}

pub struct Site {
    pub tmp: tempfile::TempDir,
    pub config: PathBuf,
}

pub const AGENT: &str = r#"[agent]
state_dir = "state"
sandbox_dir = "sandbox"
timezone = "Asia/Tokyo"
"#;

pub fn job(name: &str, backup_glob: &str) -> String {
    format!(
        r#"
[[job]]
name = "{name}"
system = "Fixture file server"
source = "source"
  [job.backup]
  type = "tar"
  path = "{backup_glob}"
"#
    )
}

impl Site {
    /// A directory with the fixture source, a good and a corrupted backup, and
    /// a config made of AGENT plus `jobs`.
    pub fn new(jobs: &str) -> Site {
        let tmp = tempfile::tempdir().unwrap();
        source_tree(&tmp.path().join("source"));
        let good = archive("good.tar", &tmp.path().join("backups/good"));
        std::fs::rename(&good, good.with_file_name("share-2026-01-02.tar")).unwrap();
        let bad = archive("byte-changed.tar", &tmp.path().join("backups/bad"));
        std::fs::rename(&bad, bad.with_file_name("share-2026-01-02.tar")).unwrap();
        let config = tmp.path().join("config.toml");
        std::fs::write(&config, format!("{AGENT}{jobs}")).unwrap();
        Site { tmp, config }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    /// `wrapper wrapper_args…` running the binary on this site's config
    /// (faketime, unshare, /usr/bin/time); the caller adds the binary's own
    /// arguments.
    pub fn under(&self, wrapper: &str, wrapper_args: &[&str]) -> Command {
        let mut c = Command::new(wrapper);
        c.args(wrapper_args)
            .arg(env!("CARGO_BIN_EXE_restore-verifier"))
            .arg("-c")
            .arg(&self.config)
            .env_remove("RESTORE_VERIFIER_CONFIG");
        c
    }

    /// Runs the binary on this site's config. A drill (`run`) must leave the
    /// source exactly as it was: content, mode and mtime of every entry.
    pub fn run(&self, args: &[&str]) -> Output {
        let source = self.path("source");
        let before = (args.first() == Some(&"run")).then(|| fingerprint(&source));
        let out = bin()
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        if let Some(before) = before {
            assert!(
                before == fingerprint(&source),
                "the drill changed the source {}",
                source.display()
            );
        }
        out
    }
}

/// The system `name` of a JSON report.
pub fn report_system(report: &Value, name: &str) -> Value {
    report["systems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no system {name:?} in the report: {report}"))
        .clone()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn records(out: &Output) -> Vec<Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn two_jobs() -> Site {
    Site::new(&format!(
        "{}{}",
        job("good", "backups/good/share-*.tar"),
        job("bad", "backups/bad/share-*.tar")
    ))
}

/// A command job that restores the fixture source with `restore` (a shell
/// snippet run by `sh -c`, with the mirror in $1 and the sandbox in $2).
pub fn command_site(restore: &str, extra: &str) -> Site {
    let site = Site::new("");
    copy_tree(&site.path("source"), &site.path("mirror"));
    let snippet = restore.replace('"', "\\\"");
    let jobs = format!(
        "\n[[job]]\nname = \"faulty\"\nsource = \"source\"\n{extra}[job.backup]\ntype = \"command\"\npath = \"{}\"\nbackup_time = \"2026-06-01T00:00:00Z\"\nrestore = [[\"sh\", \"-c\", \"{snippet}\", \"restore\", \"{{backup}}\", \"{{sandbox}}\"]]\n",
        site.path("mirror").display()
    );
    std::fs::write(&site.config, format!("{AGENT}{jobs}")).unwrap();
    site
}

pub fn one_record(out: &Output) -> Value {
    let recs = records(out);
    assert_eq!(recs.len(), 1, "{}", text(&out.stderr));
    recs.into_iter().next().unwrap()
}

pub fn manifest_paths(site: &Site, rec: &Value) -> Vec<String> {
    let p = site
        .path("state")
        .join(rec["artifacts"].as_str().unwrap())
        .join("manifest.jsonl");
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["path"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

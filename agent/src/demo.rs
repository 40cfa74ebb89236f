//! `demo`: a self-contained tour. Makes realistic sample data, backs it up to a
//! tar.zst, drills it (pass), drills a copy with one byte changed inside one
//! member (fail), and verifies the ledger. No external tool is needed.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use verifier::{TriggerKind, Verdict};

use crate::config::{self, Check};
use crate::exit::{CliError, Outcome};
use crate::{drills, evidence, output};

const MARKER: &str = ".restore-verifier-demo";
/// The member whose copy gets one byte changed.
pub const CORRUPTED_MEMBER: &str = "finance/ledger-2026.csv";

/// A small deterministic generator (xorshift64*), so every demo has the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn prepare(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let empty = fs::read_dir(dir)?.next().is_none();
        if !empty && !dir.join(MARKER).exists() {
            anyhow::bail!(
                "{} exists and is not a demo directory; pass --dir with a new or empty directory",
                dir.display()
            );
        }
        if !empty {
            fs::remove_dir_all(dir)
                .with_context(|| format!("removing the old demo in {}", dir.display()))?;
        }
    }
    fs::create_dir_all(dir)?;
    fs::write(
        dir.join(MARKER),
        "made by restore-verifier demo; safe to delete\n",
    )?;
    Ok(())
}

const WORDS: &[&str] = &[
    "backup", "restore", "drill", "ledger", "invoice", "supplier", "engine", "torque", "batch",
    "audit", "control", "sample", "quality", "line", "shift", "part", "order", "lot", "press",
    "weld",
];

fn text(rng: &mut Rng, lines: u64) -> String {
    let mut s = String::new();
    for i in 0..lines {
        let n = 4 + rng.below(10);
        let words: Vec<&str> = (0..n)
            .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
            .collect();
        s.push_str(&format!("{i:05} {}\n", words.join(" ")));
    }
    s
}

/// Writes about 3,000 files of mixed kinds under `root`; returns the file count.
pub fn sample_data(root: &Path) -> anyhow::Result<u64> {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut n = 0u64;
    let mut put = |rel: String, data: &[u8]| -> anyhow::Result<()> {
        let p = root.join(&rel);
        fs::create_dir_all(p.parent().expect("has parent"))?;
        fs::write(&p, data).with_context(|| format!("writing {}", p.display()))?;
        n += 1;
        Ok(())
    };
    for d in 0..25 {
        for f in 0..80 {
            let lines = 5 + rng.below(120);
            put(
                format!("docs/dept-{d:02}/memo-{f:03}.txt"),
                text(&mut rng, lines).as_bytes(),
            )?;
        }
    }
    for d in 0..10 {
        for f in 0..80 {
            let size = 1024 + rng.below(48 * 1024) as usize;
            let data: Vec<u8> = (0..size).map(|_| rng.next() as u8).collect();
            put(format!("drawings/line-{d}/part-{f:04}.bin"), &data)?;
        }
    }
    for y in 2019..2027 {
        for m in 1..=12 {
            for day in [1, 15] {
                let lines = 20 + rng.below(200);
                put(
                    format!("logs/{y}/{m:02}/{day:02}/press.log"),
                    text(&mut rng, lines).as_bytes(),
                )?;
            }
        }
    }
    let mut csv = String::from("date,supplier,part,qty,amount_jpy\n");
    for i in 0..2000 {
        csv.push_str(&format!(
            "2026-{:02}-{:02},S{:03},P{:05},{},{}\n",
            1 + i % 12,
            1 + i % 28,
            rng.below(400),
            rng.below(90000),
            1 + rng.below(100),
            rng.below(9_000_000)
        ));
    }
    put(CORRUPTED_MEMBER.to_string(), csv.as_bytes())?;
    put(
        "経理/請求書_2026年11月.txt".to_string(),
        "請求書\n株式会社サンプル部品 御中\n合計 1,234,567 円\n".as_bytes(),
    )?;
    put("empty.txt".to_string(), b"")?;
    std::os::unix::fs::symlink("docs/dept-00/memo-000.txt", root.join("latest-memo.txt"))?;
    Ok(n + 1)
}

/// Sets every entry's mtime to `t`, so the data predates its backup.
fn age_tree(root: &Path, t: SystemTime) -> anyhow::Result<()> {
    let ft = filetime::FileTime::from_system_time(t);
    for e in walk_sorted(root) {
        let e = e?;
        filetime::set_symlink_file_times(e.path(), ft, ft)?;
    }
    Ok(())
}

fn walk_sorted(root: &Path) -> impl Iterator<Item = walkdir::Result<walkdir::DirEntry>> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
}

/// Archives `root` into a tar.zst at `out`, with one byte of `corrupt` flipped.
fn archive(root: &Path, out: &Path, corrupt: Option<&str>) -> anyhow::Result<()> {
    let f = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let enc = zstd::stream::write::Encoder::new(f, 3)?.auto_finish();
    let mut b = tar::Builder::new(enc);
    b.follow_symlinks(false);
    for e in walk_sorted(root) {
        let p = e?.into_path();
        let rel = p.strip_prefix(root)?;
        let meta = p.symlink_metadata()?;
        if corrupt.is_some_and(|c| Path::new(c) == rel) {
            let mut data = fs::read(&p)?;
            let mid = data.len() / 2;
            data[mid] ^= 0x01;
            let mut h = tar::Header::new_gnu();
            h.set_metadata(&meta);
            b.append_data(&mut h, rel, data.as_slice())?;
        } else {
            b.append_path_with_name(&p, rel)?;
        }
    }
    b.into_inner()?.flush()?;
    Ok(())
}

fn write_config(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("config.toml");
    let text = format!(
        r#"# Written by `restore-verifier demo`.
[agent]
state_dir = "state"
sandbox_dir = "sandbox"
timezone = "Asia/Tokyo"

[[job]]
name = "demo-fileserver"
system = "Demo engineering file server"
source = "source"
rpo = "26h"
rto = "1h"
  [job.backup]
  type = "tar"
  path = "backups/share-*.tar.zst"
  [job.verify]
  content = "all"
  expect = ["{CORRUPTED_MEMBER}", "経理/請求書_2026年11月.txt"]
  min_files = 1000

[[job]]
name = "demo-corrupted"
system = "Demo engineering file server (a copy of the backup with one changed byte)"
source = "source"
rpo = "26h"
  [job.backup]
  type = "tar"
  path = "backups-corrupted/share-*.tar.zst"
"#
    );
    fs::write(&path, text)?;
    Ok(path)
}

pub fn run(dir: Option<PathBuf>, quiet: bool) -> Result<Outcome, CliError> {
    let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("restore-verifier-demo"));
    prepare(&dir)?;
    let dir = dir.canonicalize().context("demo directory")?;
    let source = dir.join("source");
    eprintln!("Making sample data in {} …", source.display());
    let files = sample_data(&source)?;
    age_tree(&source, SystemTime::now() - Duration::from_secs(2 * 3600))?;
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M");
    for sub in ["backups", "backups-corrupted"] {
        fs::create_dir_all(dir.join(sub)).context("creating the backup folders")?;
    }
    let good = dir.join(format!("backups/share-{stamp}.tar.zst"));
    let bad = dir.join(format!("backups-corrupted/share-{stamp}.tar.zst"));
    eprintln!("Backing up {files} files to {} …", good.display());
    archive(&source, &good, None)?;
    archive(&source, &bad, Some(CORRUPTED_MEMBER))?;
    let cfg_path = write_config(&dir)?;
    let cfg = config::load(&cfg_path, Check::Paths)?;

    let mut results = Vec::new();
    let stop = drills::interrupt_flag();
    for job in &cfg.jobs {
        eprintln!("\nDrilling {} …", job.name);
        let bar = crate::progress::Bar::start(&job.name, quiet);
        let rec = drills::drill(
            &cfg,
            job,
            drills::trigger(TriggerKind::Manual, Some("demo".into())),
            None,
            Some(stop.clone()),
            crate::progress::counters(&bar),
        );
        drop(bar);
        let rec = rec?;
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            eprint!("{}", output::summary(&rec));
            return Ok(Outcome::Interrupted);
        }
        eprint!("{}", output::summary(&rec));
        results.push(rec.result);
    }
    eprintln!("\nVerifying the evidence ledger …");
    let ledger = drills::ledger(&cfg);
    let (text, chain) = evidence::verify_text(&ledger, &[])?;
    eprint!("{text}");
    let as_expected = results == [Verdict::Pass, Verdict::Fail] && chain == Outcome::Success;
    // The auditor's view of what just happened.
    let now = chrono::Utc::now();
    let period = crate::report::Period {
        since: now - chrono::Duration::days(365),
        until: now,
    };
    let assessment = crate::cli::report::for_config(&cfg, &period, now)?;
    let report_en = dir.join("report.en.html");
    let report_ja = dir.join("report.ja.html");
    fs::write(
        &report_en,
        crate::report::html(&assessment, crate::report::Lang::En),
    )
    .context("writing the report")?;
    fs::write(
        &report_ja,
        crate::report::html(&assessment, crate::report::Lang::Ja),
    )
    .context("writing the report")?;
    eprintln!(
        "\n{}\n  data      {}\n  backups   {}\n  config    {}\n  ledger    {}\n  runs      {}\n  report    {} (日本語: {})\n\nTry:\n  restore-verifier -c {} evidence list\n  restore-verifier -c {} evidence show <ID>\n  restore-verifier -c {} run demo-fileserver",
        if as_expected {
            "Demo finished: the good backup passed, the corrupted copy failed and named the changed file."
        } else {
            "Demo finished, but not as expected: see the drills above."
        },
        source.display(),
        dir.join("backups").display(),
        cfg_path.display(),
        ledger.path().display(),
        cfg.agent.state_dir.join("runs").display(),
        report_en.display(),
        report_ja.display(),
        cfg_path.display(),
        cfg_path.display(),
        cfg_path.display(),
    );
    Ok(if as_expected {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}

//! The deployment files in deploy/: systemd units that `systemd-analyze verify`
//! accepts and whose command lines the binary accepts.

use super::*;

const BIN_IN_UNITS: &str = "/usr/local/bin/restore-verifier";

/// The units, with the binary's path replaced by this build's and each
/// template instantiated for job `instance`, written into `dir`.
fn units_for(dir: &Path, instance: &str) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        let name = e
            .file_name()
            .to_string_lossy()
            .replace("@.", &format!("@{instance}."));
        let text = std::fs::read_to_string(e.path())
            .unwrap()
            .replace(BIN_IN_UNITS, env!("CARGO_BIN_EXE_restore-verifier"));
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        out.push(p);
    }
    out.sort();
    out
}

#[test]
fn systemd_units_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let units = units_for(tmp.path(), "fileserver");
    assert_eq!(units.len(), 3, "{units:?}");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .expect("systemd-analyze is missing: install Debian's systemd (scripts/test.sh does)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// `Key=` lines of a unit, in order.
fn unit_values(unit: &Path, key: &str) -> Vec<String> {
    std::fs::read_to_string(unit)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")).map(String::from))
        .collect()
}

#[test]
fn the_units_command_lines_work() {
    let site = Site::new(&job("good", "backups/good/share-*.tar"));
    let tmp = tempfile::tempdir().unwrap();
    let units = units_for(tmp.path(), "good");
    for unit in &units {
        if unit.extension().is_none_or(|e| e != "service") {
            continue;
        }
        let env = unit_values(unit, "Environment");
        assert_eq!(
            env,
            ["RESTORE_VERIFIER_CONFIG=/etc/restore-verifier/config.toml"],
            "{}",
            unit.display()
        );
        let mut commands = unit_values(unit, "ExecStartPre");
        commands.extend(unit_values(unit, "ExecStart"));
        assert_eq!(commands.len(), 2, "{}", unit.display());
        for line in commands {
            // systemd's specifier for the instance: the job name.
            let line = line.replace("%i", "good");
            let argv: Vec<&str> = line.split_whitespace().collect();
            if argv[1..] == ["agent"] {
                // The daemon: its start is tested in tests/agent.rs.
                continue;
            }
            let out = Command::new(argv[0])
                .args(&argv[1..])
                .env("RESTORE_VERIFIER_CONFIG", &site.config)
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "{line}: {}{}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
    }
    let recs = text(&site.run(&["evidence", "list", "--json"]).stdout);
    assert!(
        recs.contains("\"kind\":\"schedule\"") && recs.contains("\"job\":\"good\""),
        "the timer's drill is recorded as scheduled: {recs}"
    );
}

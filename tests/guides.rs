//! The guides' commands, run as written: every ```sh block of
//! docs/operator-guide.md, in order, as root on a fresh machine state. The
//! script runs in its own mount and network namespaces: /etc, /var and
//! /usr/local are overlays whose changes go to a temp dir, /srv, /mnt and /tmp
//! are empty tmpfs, so the host is left as it was.

use super::*;

/// The `sh` blocks of a Markdown file, in order.
fn sh_blocks(markdown: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in markdown.lines() {
        if inside {
            if line.trim_start().starts_with("```") {
                inside = false;
                out.push('\n');
            } else {
                out.push_str(line);
                out.push('\n');
            }
        } else if line.trim() == "```sh" {
            inside = true;
        }
    }
    out
}

#[test]
fn the_operator_guide_runs_as_written() {
    let me = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap());
    assert_eq!(me, 0, "the guide installs software: run as root (CI does)");
    for tool in ["curl", "jq", "ip"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(found, "{tool} is missing (scripts/test.sh installs it)");
    }
    let guide = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operator-guide.md"),
    )
    .unwrap();
    let script = sh_blocks(&guide);
    assert!(script.lines().count() > 30, "{script}");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_restore-verifier"),
        tmp.path().join("restore-verifier"),
    )
    .unwrap();
    let ov = tmp.path().join("overlays");
    let mut setup = String::from("set -euo pipefail\nip link set lo up\n");
    for dir in ["etc", "var", "usr/local"] {
        let (u, w) = (ov.join(dir).join("upper"), ov.join(dir).join("work"));
        std::fs::create_dir_all(&u).unwrap();
        std::fs::create_dir_all(&w).unwrap();
        setup.push_str(&format!(
            "mount -t overlay overlay -o lowerdir=/{dir},upperdir={},workdir={} /{dir}\n",
            u.display(),
            w.display()
        ));
    }
    for dir in ["srv", "mnt", "tmp"] {
        setup.push_str(&format!("mount -t tmpfs tmpfs /{dir}\n"));
    }
    // Bounded: a guide that hangs fails the test instead of holding the suite.
    let out = Command::new("timeout")
        .args([
            "300",
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--net",
            "--",
        ])
        .args(["bash", "-c", &format!("{setup}set -x\n{script}")])
        .current_dir(tmp.path())
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .output()
        .unwrap();
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "the guide failed:\n{so}\n{se}");
    for said in [
        "fileserver: PASS",
        "fileserver: FAIL",
        "content mismatch: finance/ledger.csv",
        "fileserver pass change CHG-1234 kernel update",
        "OK: the hash chain holds",
    ] {
        assert!(
            so.contains(said) || se.contains(said),
            "the guide's run did not say {said:?}:\n{so}\n{se}"
        );
    }
    // The alert the failed drill sent, through the guide's command sink.
    let alerts = std::fs::read_to_string(ov.join("var/upper/log/restore-verifier-alerts.jsonl"))
        .expect("the failed drill's alert was written");
    assert!(alerts.contains("fileserver"), "{alerts}");
    // Nothing of it outside its namespaces.
    assert!(!Path::new("/etc/restore-verifier/config.toml").exists());
    assert!(!Path::new("/usr/local/bin/restore-verifier").exists());
}

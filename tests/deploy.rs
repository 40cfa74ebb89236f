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

/// Runs the binary with `args` on `site`'s config, found as a unit or a
/// container finds it (`RESTORE_VERIFIER_CONFIG`), and asserts it exits 0.
fn runs_on(site: &Site, args: &[&str], what: &str) {
    let out = bin()
        .args(args)
        .env("RESTORE_VERIFIER_CONFIG", &site.config)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: {}{}",
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
            let line = line.replace("%I", "good");
            let argv: Vec<&str> = line.split_whitespace().collect();
            if argv[1..] == ["agent"] {
                // The daemon: its start is tested in tests/agent.rs.
                continue;
            }
            assert_eq!(argv[0], env!("CARGO_BIN_EXE_restore-verifier"), "{line}");
            runs_on(&site, &argv[1..], &line);
        }
    }
    let recs = text(&site.run(&["evidence", "list", "--json"]).stdout);
    assert!(
        recs.contains("\"kind\":\"schedule\"") && recs.contains("\"job\":\"good\""),
        "the timer's drill is recorded as scheduled: {recs}"
    );
}

/// The offline Kubernetes schema validator scripts/test.sh installs (the
/// `kubernetes-validate` package, which carries the API schemas).
fn kubernetes_validate() -> PathBuf {
    let venv =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/k8s/bin/kubernetes-validate");
    assert!(
        venv.exists(),
        "{} is missing: scripts/test.sh installs it (python3 -m venv target/tools/k8s && target/tools/k8s/bin/pip install kubernetes-validate)",
        venv.display()
    );
    venv
}

#[test]
fn kubernetes_manifests_match_the_api_schema_and_their_config_and_commands_work() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let out = Command::new(kubernetes_validate())
        .args(["--strict", "--kubernetes-version", "1.31.0"])
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let said = text(&out.stdout);
    for kind in [
        "deployment",
        "cronjob",
        "configmap",
        "persistentvolumeclaim",
    ] {
        assert!(
            said.contains(&format!("passed for resource {kind}/")),
            "{said}"
        );
    }

    // The ConfigMap's config.toml is a valid configuration.
    let yaml = std::fs::read_to_string(dir.join("config.yaml")).unwrap();
    let toml: String = yaml
        .lines()
        .skip_while(|l| l.trim() != "config.toml: |")
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    assert!(toml.contains("[[job]]"), "{toml}");
    let cfg = restore_verifier::config::parse(
        Path::new("/etc/restore-verifier/config.toml"),
        &toml,
        restore_verifier::config::Check::Values,
    )
    .unwrap_or_else(|e| panic!("the ConfigMap's config.toml: {e}"));
    assert_eq!(cfg.jobs[0].name, "fileserver");

    // The containers' arguments are ones the binary takes: run them on a
    // fixture site with a job of the same name.
    let site = Site::new(&job("fileserver", "backups/good/share-*.tar"));
    let args_re = regex::Regex::new(r#"args: (\[.*\])"#).unwrap();
    let mut ran = 0;
    for f in &files {
        for cap in args_re.captures_iter(&std::fs::read_to_string(f).unwrap()) {
            let args: Vec<String> = serde_json::from_str(&cap[1]).unwrap();
            if args.iter().any(|a| a == "agent") {
                continue;
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            runs_on(&site, &args, &format!("{args:?}"));
            ran += 1;
        }
    }
    assert_eq!(ran, 2, "the init container's check and the CronJob's drill");
}

#[test]
fn the_container_build_copies_enough_to_build_the_binary() {
    // No Docker engine here: load the workspace from exactly what the build
    // stage copies, as cargo would in the image (dependencies already
    // fetched by this build, so offline).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dockerfile = std::fs::read_to_string(root.join("deploy/container/Dockerfile")).unwrap();
    let build_stage = dockerfile.split("\nFROM ").nth(1).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut copied = 0;
    for line in build_stage.lines() {
        let Some(rest) = line.strip_prefix("COPY ") else {
            continue;
        };
        let parts: Vec<&str> = rest.split_whitespace().collect();
        let (sources, dest) = parts.split_at(parts.len() - 1);
        for s in sources {
            let to = if dest[0].ends_with('/') {
                tmp.path().join(dest[0]).join(s)
            } else {
                tmp.path().join(dest[0])
            };
            let st = Command::new("cp")
                .args(["-r", "--no-target-directory"])
                .arg(root.join(s))
                .arg(&to)
                .status()
                .unwrap();
            assert!(st.success(), "COPY {s}");
            copied += 1;
        }
    }
    assert!(copied >= 4, "{build_stage}");
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--locked",
            "--offline",
            "-p",
            "restore-verifier",
            "--depth",
            "1",
        ])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the image's build context does not load: {}",
        text(&out.stderr)
    );
}

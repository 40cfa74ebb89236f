use super::*;

fn errs(text: &str) -> Vec<String> {
    match parse(Path::new("/etc/rv.toml"), text, Check::Values) {
        Ok(_) => vec![],
        Err(e) => e.0.iter().map(|d| d.to_string()).collect(),
    }
}

/// The alert state keeps what each sink was told under its name: an
/// unnamed sink keeps its name when another is added above it.
#[test]
fn unnamed_sinks_keep_their_names_when_sinks_are_added() {
    let hook = "[[alert]]\ntype = \"webhook\"\nurl = \"http://hook.example/a\"\n";
    let other = "[[alert]]\ntype = \"webhook\"\nurl = \"http://hook.example/b\"\n";
    let names = |text: &str| -> Vec<String> {
        parse(Path::new("/etc/rv.toml"), text, Check::Values)
            .unwrap()
            .alerts
            .into_iter()
            .map(|a| a.name)
            .collect()
    };
    let alone = names(hook);
    let below = names(&format!("{other}{hook}"));
    assert_eq!(below[1], alone[0]);
    assert_ne!(below[0], below[1]);
    assert!(alone[0].starts_with("webhook-"), "{alone:?}");
    // Two unnamed sinks to one target are numbered, in file order.
    let twice = names(&format!("{hook}{hook}"));
    assert_eq!(twice, [alone[0].clone(), format!("{}-2", alone[0])]);
    // A URL's password and query are not part of what names it.
    let secret = names(
        &hook
            .replace("http://hook", "http://u:pw@hook")
            .replace("/a", "/a?token=1"),
    );
    assert_eq!(secret, alone);
}

#[test]
fn crontab_weekdays_follow_crontab() {
    // 0 and 7 are Sunday in crontab; the cron crate would read 0 as invalid.
    let s = parse_cron("30 2 * * 0").unwrap();
    let sun = parse_cron("30 2 * * Sun").unwrap();
    use chrono::TimeZone;
    let t = chrono_tz::UTC
        .with_ymd_and_hms(2026, 11, 25, 0, 0, 0)
        .unwrap();
    assert_eq!(s.after(&t).next(), sun.after(&t).next());
    let fri_sun = parse_cron("0 0 * * 5-7").unwrap();
    let days: Vec<_> = fri_sun
        .after(&t)
        .take(3)
        .map(|d| d.format("%a").to_string())
        .collect();
    assert_eq!(days, ["Fri", "Sat", "Sun"]);
    assert!(parse_cron("* * * *").is_err());
    assert!(parse_cron("61 * * * *").is_err());
    assert!(parse_cron("*/5 * * * * *").is_ok());
}

#[test]
fn shipped_example_config_parses() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/config.example.toml"
    ));
    let text = std::fs::read_to_string(path).unwrap();
    let cfg = parse(path, &text, Check::Values).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.jobs.len(), 5);
    assert_eq!(cfg.agent.timezone, chrono_tz::Asia::Tokyo);
    assert_eq!(cfg.jobs.iter().filter(|j| j.schedule.is_some()).count(), 4);
    assert_eq!(cfg.jobs[3].checks.len(), 1);
    assert_eq!(cfg.alerts.len(), 2);
}

#[test]
fn canaries_are_normalised_and_must_not_be_excluded() {
    let base = "[[job]]\nname = \"a\"\n[job.backup]\ntype = \"dir\"\npath = \"/x\"\n[job.verify]\n";
    let ok = format!("{base}expect = [\"./finance//ledger.csv\"]\n");
    let cfg = parse(Path::new("/etc/rv.toml"), &ok, Check::Values).unwrap();
    assert_eq!(
        cfg.jobs[0].verify.expect,
        [PathBuf::from("finance/ledger.csv")]
    );
    let bad = format!("{base}exclude = [\"*.tmp\"]\nexpect = [\"a/b.tmp\"]\n");
    let e = errs(&bad);
    assert!(
        e[0].contains("job[0].verify.expect: canary a/b.tmp is excluded"),
        "{e:?}"
    );
}

#[test]
fn sandbox_inside_a_source_is_refused() {
    let text = "[agent]\nsandbox_dir = \"/srv/share/.rv\"\n[[job]]\nname = \"a\"\nsource = \"/srv/share\"\n[job.backup]\ntype = \"dir\"\npath = \"/x\"\n";
    let e = errs(text);
    assert!(
        e.iter().any(
            |m| m.contains("job[0].source: sandbox_dir /srv/share/.rv and this source overlap")
        ),
        "{e:?}"
    );
}

#[test]
fn passwords_in_connection_strings_are_spotted() {
    assert!(has_password("host=db dbname=erp password=secret"));
    assert!(has_password("postgresql://erp:secret@db/erp"));
    assert!(has_password("host=db password = secret dbname=erp"));
    assert!(has_password("postgresql://db/erp?password=secret"));
    assert!(!has_password("postgresql://erp@db/erp"));
    assert!(!has_password("host=/run/postgresql dbname=erp"));
}

#[test]
fn percentages() {
    assert_eq!(parse_percent("10%"), Ok(10.0));
    assert_eq!(parse_percent(" 2.5 % "), Ok(2.5));
    assert_eq!(parse_percent("0%"), Ok(0.0));
    for bad in ["10", "101%", "-1%", "ten%", ""] {
        assert!(parse_percent(bad).is_err(), "{bad}");
    }
}

#[test]
fn durations() {
    assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
    assert_eq!(
        parse_duration("7d").unwrap(),
        Duration::from_secs(7 * 86400)
    );
    assert!(parse_duration("2 fortnights").is_err());
    assert!(parse_duration("0s").is_err());
}

#[test]
fn every_error_is_reported_with_its_position() {
    let text = r#"[agent]
timezone = "Mars/Olympus"

[[job]]
name = "a"
schedule = "not cron"
rpo = "soon"
[job.backup]
type = "dir"
path = "/x"

[[job]]
name = "a"
[job.backup]
type = "tar"
path = "/y/*.tar"
[job.verify]
sample_filez = 3
"#;
    let e = errs(text);
    assert!(
        e.iter()
            .any(|m| m.starts_with("/etc/rv.toml:2:12: agent.timezone:")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("/etc/rv.toml:6:12: job[0].schedule:")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("/etc/rv.toml:7:7: job[0].rpo:")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains(":18:1: job[1].verify") && m.contains("sample_filez")),
        "{e:#?}"
    );
}

/// Every key the parser accepts: each backup type's declared keys, the
/// fields of the other serde structs that deny unknown keys (read from their
/// source, or the `rename` above one), and the top-level tables `parse`
/// matches. A key is found by name, not by section.
fn accepted_keys() -> Vec<String> {
    let sources = [
        include_str!("raw.rs"),
        include_str!("model.rs"),
        include_str!("parse.rs"),
    ];
    // The top-level tables, as `parse` matches them, and the one key inside
    // a value: `expect_stdout = { regex = "…" }`.
    let mut keys = vec!["regex".to_string(), "type".to_string()];
    // Each backup type's keys, as its section declares them.
    for t in super::backup::TYPES {
        keys.extend(t.keys.iter().map(|k| k.to_string()));
    }
    keys.extend(include_str!("parse.rs").lines().filter_map(|l| {
        let l = l.trim().strip_prefix('"')?;
        let (name, rest) = l.split_once('"')?;
        rest.trim_start()
            .starts_with("=>")
            .then(|| name.to_string())
    }));
    for src in sources {
        let mut in_struct = false;
        let mut rename: Option<String> = None;
        for line in src.lines().map(str::trim) {
            if line == "#[serde(deny_unknown_fields)]" {
                in_struct = true;
                continue;
            }
            if !in_struct {
                continue;
            }
            if line == "}" {
                in_struct = false;
                continue;
            }
            if let Some(r) = line
                .strip_prefix("#[serde(rename = \"")
                .and_then(|r| r.strip_suffix("\")]"))
            {
                rename = Some(r.to_string());
                continue;
            }
            let field = line
                .strip_prefix("pub(super) ")
                .or_else(|| line.strip_prefix("pub "))
                .and_then(|l| l.split_once(':'))
                .map(|(name, _)| name.trim());
            if let Some(name) = field.filter(|n| !n.contains(' ')) {
                keys.push(rename.take().unwrap_or_else(|| name.to_string()));
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// docs/design.md is the contract: a key the parser accepts and the contract
/// does not name is a key no operator can learn of.
#[test]
fn every_accepted_config_key_is_in_the_design_contract() {
    let design = include_str!("../../../docs/design.md");
    let keys = accepted_keys();
    assert!(
        keys.len() > 60 && keys.iter().any(|k| k == "max_restore_bytes"),
        "the key scan found too little: {keys:?}"
    );
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| {
            // Named as a key: `key`, key = …, key (…) in the annotated
            // example, or a section's table header.
            let named = [
                format!("`{k}`"),
                format!(" {k} ="),
                format!(" {k} ("),
                format!("[{k}]"),
                format!("[[{k}]]"),
                format!("[job.{k}]"),
                format!("[[job.{k}]]"),
            ];
            !named.iter().any(|n| design.contains(n.as_str()))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "config keys missing from docs/design.md: {missing:?}"
    );
}

/// `[job.backup]` is read by its type: the messages an operator sees for
/// each way a section can be wrong.
#[rstest::rstest]
#[case::another_types_key(
    "type = \"restic\"\nrepository = \"/r\"\npassword_file = \"/p\"\nkey_file = \"/k\"\n",
    "/etc/rv.toml:8:12: job[0].backup.key_file: `key_file` does not apply to backup type \"restic\" (it takes repository, password_file, snapshot, host, tags, path)"
)]
#[case::a_key_no_type_takes(
    "type = \"tar\"\npath = \"/b/*.tar\"\ncolour = \"red\"\n",
    "/etc/rv.toml:7:1: job[0].backup.colour: unknown field `colour`, expected one of `type`, `path`, `backup_time`, `root`"
)]
#[case::no_type(
    "path = \"/b\"\n",
    "/etc/rv.toml:4:1: job[0].backup: missing field `type`"
)]
#[case::an_unknown_type(
    "type = \"zip\"\npath = \"/b\"\n",
    "/etc/rv.toml:5:8: job[0].backup.type: unknown backup type \"zip\"; expected dir, tar, restic, borg, postgres or command"
)]
#[case::a_required_key_missing(
    "type = \"restic\"\nrepository = \"/r\"\n",
    "/etc/rv.toml:5:8: job[0].backup.password_file: backup type \"restic\" needs `password_file`"
)]
#[case::a_value_of_the_wrong_type(
    "type = \"restic\"\nrepository = \"/r\"\npassword_file = \"/p\"\ntags = \"x\"\n",
    "/etc/rv.toml:8:8: job[0].backup.tags: invalid type: string \"x\", expected a sequence"
)]
#[case::credentials_in_a_repository_url(
    "type = \"borg\"\nrepository = \"ssh://u:secret@h/r\"\n",
    "/etc/rv.toml:6:14: job[0].backup.repository: credentials in the repository URL"
)]
#[case::a_command_without_steps(
    "type = \"command\"\n",
    "/etc/rv.toml:5:8: job[0].backup.restore: backup type \"command\" needs `restore`"
)]
fn a_backup_section_is_read_by_its_type(#[case] section: &str, #[case] want: &str) {
    let text = format!("[[job]]\nname = \"a\"\nschedule = \"0 3 * * *\"\n[job.backup]\n{section}");
    let got = errs(&text);
    assert!(
        got.iter().any(|e| e.starts_with(want)),
        "{want:?} not in {got:#?}"
    );
}

#[test]
fn a_job_without_a_backup_section_is_an_error() {
    let got = errs("[[job]]\nname = \"a\"\n");
    assert_eq!(
        got,
        vec!["/etc/rv.toml:1:1: job[0]: missing field `backup`".to_string()]
    );
}

/// Every backup type builds its driver from its own section: a drill of it
/// reaches the driver with what the section said.
#[rstest::rstest]
#[case::dir("type = \"dir\"\npath = \"/b\"\n", "dir /b")]
#[case::tar("type = \"tar\"\npath = \"/b/*.tar\"\n", "tar /b/*.tar")]
#[case::restic(
    "type = \"restic\"\nrepository = \"/r\"\npassword_file = \"/p\"\n",
    "restic /r snapshot latest"
)]
#[case::borg(
    "type = \"borg\"\nrepository = \"/r\"\narchive = \"x-*\"\n",
    "borg /r archive x-*"
)]
#[case::postgres(
    "type = \"postgres\"\npath = \"/d/*.dump\"\n",
    "postgres dump /d/*.dump"
)]
#[case::command(
    "type = \"command\"\nrestore = [[\"true\"], [\"true\"]]\n",
    "command, 2 step(s)"
)]
fn every_backup_type_is_described_and_builds_a_driver(#[case] section: &str, #[case] what: &str) {
    let text = format!("[[job]]\nname = \"a\"\n[job.backup]\n{section}");
    let cfg = parse(Path::new("/etc/rv.toml"), &text, Check::Values).unwrap();
    let job = &cfg.jobs[0];
    assert_eq!(job.backup.describe(), what);
    let driver = job.backup.driver(job, Path::new("/var/lib/rv"));
    assert_eq!(driver.kind(), what.split([' ', ',']).next().unwrap());
}

/// A misspelt section of a job is told with every key a job takes,
/// `backup` among them.
#[test]
fn a_misspelt_backup_section_lists_backup_among_the_job_keys() {
    let got = errs("[[job]]\nname = \"a\"\n[job.bakup]\ntype = \"dir\"\npath = \"/b\"\n");
    assert!(
        got.len() == 1
            && got[0].contains("unknown field `bakup`")
            && got[0].contains("`source`, `backup`, `verify`"),
        "{got:#?}"
    );
}

/// A backup section serde cannot read drops its job, as any key of the job
/// would: its other values are not checked.
#[test]
fn a_backup_section_serde_cannot_read_is_the_jobs_only_problem() {
    let got =
        errs("[[job]]\nname = \"a\"\ntimeout = \"soon\"\n[job.backup]\ntype = \"tar\"\npath = 5\n");
    assert_eq!(
        got,
        vec![
            "/etc/rv.toml:6:8: job[0].backup.path: invalid type: integer `5`, expected a string"
                .to_string()
        ]
    );
    let got = errs("[[job]]\nname = \"a\"\nbackup = \"x\"\n");
    assert_eq!(
        got,
        vec!["/etc/rv.toml:3:10: job[0].backup: invalid type: string \"x\", expected struct RawBackup".to_string()]
    );
}

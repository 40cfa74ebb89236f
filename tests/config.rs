//! `config check`: positions and keys of every problem, what it shows of a
//! good config, and what the agent would refuse at start.

use super::*;

#[rstest]
#[case::unknown_key(
    "  colour = \"red\"\n",
    "config.toml:12:3: job[0].backup.colour: unknown field `colour`"
)]
#[case::bad_cron(
    "schedule = \"61 2 * * *\"\n",
    "config.toml:16:12: job[1].schedule: invalid cron expression"
)]
#[case::bad_duration(
    "rpo = \"26 hourz\"\n",
    "config.toml:16:7: job[1].rpo: invalid duration"
)]
#[case::missing_backup(
    "[job.backup]\ntype = \"tar\"\npath = \"backups/none-*.tar\"\n",
    "config.toml:18:8: job[1].backup.path: no backup file matches"
)]
#[case::duplicate_name("", "config.toml:15:8: job[1].name: duplicate job name \"good\"")]
fn config_check_reports_position_and_key(#[case] extra: &str, #[case] expected: &str) {
    // job[0] is "good"; `extra` goes into job[0].backup for the unknown key and
    // into a second job otherwise.
    let text_cfg = if expected.contains("colour") {
        format!(
            "{AGENT}{}",
            job("good", "backups/good/share-*.tar")
                .replace("  path =", &format!("{extra}  path ="))
        )
    } else {
        let second = if expected.contains("duplicate") {
            job("good", "backups/bad/share-*.tar")
        } else if expected.contains("backup.path") {
            format!("\n[[job]]\nname = \"other\"\n{extra}")
        } else {
            format!(
                "\n[[job]]\nname = \"other\"\n{extra}[job.backup]\ntype = \"dir\"\npath = \"source\"\n"
            )
        };
        format!("{AGENT}{}{second}", job("good", "backups/good/share-*.tar"))
    };
    let site = Site::new("");
    std::fs::write(&site.config, &text_cfg).unwrap();
    let out = site.run(&["config", "check"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(expected),
        "expected {expected:?} in:\n{err}\nconfig:\n{text_cfg}"
    );
    // Commands that drill refuse a broken config the same way.
    if !expected.contains("backup.path") {
        assert_eq!(site.run(&["run"]).status.code(), Some(2));
    }
}

#[test]
fn config_check_accepts_a_good_config() {
    let site = two_jobs();
    let out = site.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let so = text(&out.stdout);
    assert!(so.contains("OK, 2 job(s)"), "{so}");
    assert!(so.contains("job good: tar "), "{so}");
}

// Pins (issue 15, item 19): a job without `timeout` ran for up to a day,
// and `config check` printed "timeout 1d" as if it had been set.
#[test]
fn config_check_shows_the_default_timeout() {
    let site = Site::new(&format!(
        "{}{}",
        job("good", "backups/good/share-*.tar"),
        job("set", "backups/good/share-*.tar")
            .replace("  [job.backup]", "timeout = \"90m\"\n  [job.backup]")
    ));
    let out = site.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let so = text(&out.stdout);
    let line = |name: &str| {
        so.lines()
            .find(|l| l.contains(&format!("job {name}: ")))
            .unwrap_or_else(|| panic!("no job {name} in {so}"))
            .to_string()
    };
    assert!(line("good").contains("timeout 6h (default)"), "{so}");
    assert!(line("set").contains("timeout 1h 30m,"), "{so}");
    assert!(!line("set").contains("(default)"), "{so}");
}

// Pins (issue 16, part 4): `config check` said OK for what the agent then
// refused to start with. Both now run the same checks, named by key.
#[test]
fn config_check_refuses_what_the_agent_would_refuse_at_start() {
    let site = Site::new(&job("good", "backups/good/share-*.tar"));
    let config = std::fs::read_to_string(&site.config).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(site.path("token"), "short\n").unwrap();
    std::fs::write(site.path("shared-token"), "0123456789abcdef0123\n").unwrap();
    std::fs::set_permissions(
        site.path("shared-token"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    std::fs::write(site.path("key.pem"), "not a key\n").unwrap();
    std::fs::write(site.path("a-file"), "").unwrap();
    for (key, value, says) in [
        (
            "api_token_file",
            "\"token\"",
            "agent.api_token_file: the token in api_token_file",
        ),
        (
            "api_token_file",
            "\"shared-token\"",
            "agent.api_token_file: ",
        ),
        (
            "signing_key_file",
            "\"key.pem\"",
            "agent.signing_key_file: ",
        ),
        // 192.0.2.0/24 is for documentation: no host has it.
        (
            "listen",
            "\"192.0.2.1:9464\"",
            "agent.listen: cannot listen on 192.0.2.1:9464",
        ),
        (
            "state_dir",
            "\"a-file/state\"",
            "agent.state_dir: state_dir ",
        ),
        (
            "sandbox_dir",
            "\"a-file/sandbox\"",
            "agent.sandbox_dir: sandbox_dir ",
        ),
    ] {
        // The key replaces the site's own (state_dir), or is added.
        let agent_section = config
            .lines()
            .filter(|l| !l.starts_with(&format!("{key} =")))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
        std::fs::write(
            &site.config,
            agent_section.replace("[agent]\n", &format!("[agent]\n{key} = {value}\n")),
        )
        .unwrap();
        let out = site.run(&["config", "check"]);
        let err = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{key}: {err}{}",
            text(&out.stdout)
        );
        assert!(err.contains(says), "{key}: {err}");
        if value.contains("shared-token") {
            assert!(
                err.contains("writable by group or others (mode 666)"),
                "{err}"
            );
        }
        // The agent refuses the same, with the same words.
        let out = site.run(&["agent"]);
        assert_eq!(out.status.code(), Some(2), "{key}");
        assert!(
            text(&out.stderr).contains(says),
            "{key}: {}",
            text(&out.stderr)
        );
    }
    // Readable by every account: a warning, in config check as at start.
    std::fs::set_permissions(
        site.path("shared-token"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(
        &site.config,
        config.replace("[agent]\n", "[agent]\napi_token_file = \"shared-token\"\n"),
    )
    .unwrap();
    let out = site.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("agent.api_token_file: warning: ")
            && text(&out.stderr).contains("readable by every account (mode 644)"),
        "{}",
        text(&out.stderr)
    );

    // Warnings, not refusals: a listen address in use (it may be the
    // running agent's), a sink that would never be told anything.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    std::fs::write(
        &site.config,
        format!(
            "{}\n[[alert]]\nname = \"only-good-news\"\ntype = \"command\"\nrun = [\"true\"]\non = [\"recovered\"]\n",
            config.replace("[agent]\n", &format!("[agent]\nlisten = \"{addr}\"\n"))
        ),
    )
    .unwrap();
    let out = site.run(&["config", "check"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("agent.listen: warning: {addr} is in use")),
        "{err}"
    );
    assert!(
        err.contains("alert.on: warning: the sink \"only-good-news\" is told of no problem"),
        "{err}"
    );
    drop(held);
}

// `[job.backup] root` is a path inside the backup, and `[job.verify]
// metadata` names what is compared; both are checked with their position.
#[test]
fn config_check_refuses_a_root_outside_the_backup_and_unknown_metadata() {
    let site = Site::new("");
    let cfg = format!(
        "{AGENT}{}  [job.verify]\n  metadata = [\"mode\", \"perms\"]\n",
        job("good", "backups/good/share-*.tar").replace("  path =", "  root = \"../up\"\n  path =")
    );
    std::fs::write(&site.config, &cfg).unwrap();
    let out = site.run(&["config", "check"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("job[0].backup.root: `root` is a path inside the backup"),
        "{err}"
    );
    assert!(
        err.contains("job[0].verify.metadata: unknown metadata \"perms\"; expected any of mode, owner, acl, xattr"),
        "{err}"
    );
    let good = cfg
        .replace("root = \"../up\"", "root = \"srv/share\"")
        .replace("\"perms\"", "\"acl\"");
    std::fs::write(&site.config, &good).unwrap();
    let out = site.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

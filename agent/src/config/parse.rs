//! Reading a config file: the sections one by one, so that one mistake does
//! not hide the next, then `[agent]` and `[evidence]`; jobs, backups and
//! alerts are checked in their own files.

use super::*;

/// How much `load` checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Structure and values: what every command needs.
    Values,
    /// Also that backups and sources exist now (`config check`). A drill does not
    /// need this: a missing backup is a failed drill, with a record.
    Paths,
}

/// Reads and validates a config file.
pub fn load(path: &Path, check: Check) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![Diagnostic {
            file: path.to_path_buf(),
            line: 0,
            col: 0,
            key: String::new(),
            message: format!(
                "cannot read the config file: {e}; pass -c FILE or set RESTORE_VERIFIER_CONFIG"
            ),
        }])
    })?;
    parse(path, &text, check)
}

/// Parses and validates config text; `path` is used in messages and to resolve
/// relative paths (against the config file's directory).
pub fn parse(path: &Path, text: &str, check: Check) -> Result<Config, ConfigErrors> {
    let mut cx = Ctx {
        file: path,
        text,
        diags: Vec::new(),
    };
    let (root, syntax) = DeTable::parse_recoverable(text);
    for e in syntax {
        let span = e.span().unwrap_or(0..0);
        cx.at(span, "", e.message().to_string());
    }
    if !cx.diags.is_empty() {
        return Err(ConfigErrors(cx.diags));
    }
    // Absolute, so a path still names the same file for a tool that runs in
    // another directory (`-c rv.toml` has the parent "").
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => std::path::absolute(p).unwrap_or(p.to_path_buf()),
        _ => std::env::current_dir().unwrap_or_default(),
    };
    let mut raw_agent = RawAgent::default();
    let mut raw_jobs: Vec<(usize, RawJob, ReadBackup)> = Vec::new();
    let mut raw_alerts: Vec<(usize, RawAlert)> = Vec::new();
    let mut systems: Vec<SystemDecl> = Vec::new();
    let mut raw_evidence = RawEvidence::default();
    for (k, v) in root.get_ref().iter() {
        match k.get_ref().as_ref() {
            "agent" => {
                if let Some(a) = cx.de::<RawAgent>(v.clone(), "agent") {
                    raw_agent = a;
                }
            }
            "job" => match v.get_ref() {
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let prefix = format!("job[{i}]");
                        if let Some(j) = cx.de::<RawJob>(item.clone(), &prefix)
                            && let Some(b) = read_backup(&mut cx, i, item)
                        {
                            raw_jobs.push((i, j, b));
                        }
                    }
                }
                _ => cx.at(v.span(), "job", "must be an array of tables: write [[job]]"),
            },
            "alert" => match v.get_ref() {
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(a) = cx.de::<RawAlert>(item.clone(), &format!("alert[{i}]")) {
                            raw_alerts.push((i, a));
                        }
                    }
                }
                _ => cx.at(
                    v.span(),
                    "alert",
                    "must be an array of tables: write [[alert]]",
                ),
            },
            "system" => match v.get_ref() {
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(s) = cx.de::<SystemDecl>(item.clone(), &format!("system[{i}]"))
                        {
                            systems.push(s);
                        }
                    }
                }
                _ => cx.at(
                    v.span(),
                    "system",
                    "must be an array of tables: write [[system]]",
                ),
            },
            "evidence" => {
                if let Some(e) = cx.de::<RawEvidence>(v.clone(), "evidence") {
                    raw_evidence = e;
                }
            }
            other => cx.at(
                k.span(),
                other,
                format!(
                    "unknown key `{other}`, expected `agent`, `job`, `alert`, `system` or `evidence`"
                ),
            ),
        }
    }
    let agent = agent_config(&mut cx, raw_agent, &base);
    let store = store_config(&mut cx, raw_evidence, &base);
    let mut jobs = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, rj, backup) in raw_jobs {
        let name = rj.name.get_ref().clone();
        if !valid_name(&name) {
            cx.at(
                rj.name.span(),
                format!("job[{i}].name"),
                format!("job name {name:?} must match [a-z0-9_-]+"),
            );
        }
        if let Some(first) = names.insert(name.clone(), i) {
            cx.at(
                rj.name.span(),
                format!("job[{i}].name"),
                format!("duplicate job name {name:?} (also job[{first}])"),
            );
        }
        if let Some(j) = job(&mut cx, i, rj, backup, &base, check, &agent) {
            jobs.push(j);
        }
    }
    let mut alerts = Vec::new();
    for (i, a) in raw_alerts {
        let named = a.name.is_some();
        if let Some(mut s) = alert_config(&mut cx, i, a, &jobs, &base) {
            // Unnamed sinks to one target (other `jobs` or `on`): numbered.
            if !named {
                let base_name = s.name.clone();
                let mut n = 1;
                while alerts.iter().any(|o: &AlertSink| o.name == s.name) {
                    n += 1;
                    s.name = format!("{base_name}-{n}");
                }
            }
            if alerts.iter().any(|o: &AlertSink| o.name == s.name) {
                cx.at(
                    0..0,
                    format!("alert[{i}].name"),
                    format!("duplicate alert name {:?}", s.name),
                );
            }
            alerts.push(s);
        }
    }
    if cx.diags.is_empty() {
        Ok(Config {
            path: path.to_path_buf(),
            agent,
            store,
            jobs,
            alerts,
            systems,
        })
    } else {
        Err(ConfigErrors(cx.diags))
    }
}

pub(super) fn store_config(cx: &mut Ctx, e: RawEvidence, base: &Path) -> Store {
    let password_file = e.password_file.map(|p| resolve(base, p.get_ref()));
    let ca_file = e.ca_file.map(|p| resolve(base, p.get_ref()));
    let Some(s) = e.store else {
        return Store::File;
    };
    let text = s.get_ref().trim();
    if text == "file" {
        return Store::File;
    }
    let is_pg = text.starts_with("postgres://")
        || text.starts_with("postgresql://")
        || (text.contains('=') && !text.contains("://"));
    if !is_pg {
        cx.at(
            s.span(),
            "evidence.store",
            format!("unknown store {text:?}; use \"file\" or a PostgreSQL connection string (\"postgres://user@host/db\" or \"host=/run/postgresql dbname=evidence\")"),
        );
        return Store::File;
    }
    if has_password(text) {
        cx.at(
            s.span(),
            "evidence.store",
            "the connection string holds a password; put it in a file named by evidence.password_file instead",
        );
        return Store::File;
    }
    if let Err(err) = text.parse::<postgres::Config>() {
        cx.at(
            s.span(),
            "evidence.store",
            format!("not a PostgreSQL connection string: {err}"),
        );
        return Store::File;
    }
    Store::Postgres {
        conninfo: text.to_string(),
        password_file,
        ca_file,
    }
}

pub(super) fn agent_config(cx: &mut Ctx, a: RawAgent, base: &Path) -> AgentConfig {
    let path = |v: Option<Spanned<String>>| v.map(|s| resolve(base, s.get_ref()));
    if a.signing_key_file.is_none()
        && let Some(p) = &a.previous_signing_key_file
    {
        cx.at(
            p.span(),
            "agent.previous_signing_key_file",
            "is set without signing_key_file; it names the key that signed before signing_key_file, for a key change",
        );
    }
    let max = match a.max_concurrent_drills {
        Some(m) if *m.get_ref() < 1 || *m.get_ref() > 1024 => {
            cx.at(
                m.span(),
                "agent.max_concurrent_drills",
                "must be between 1 and 1024",
            );
            1
        }
        Some(m) => *m.get_ref() as u32,
        None => 1,
    };
    let timezone = match a.timezone {
        Some(tz) => match tz.get_ref().parse::<chrono_tz::Tz>() {
            Ok(z) => z,
            Err(_) => {
                cx.at(
                    tz.span(),
                    "agent.timezone",
                    format!("unknown time zone {:?}; use an IANA name such as \"Asia/Tokyo\" or \"UTC\"", tz.get_ref()),
                );
                chrono_tz::UTC
            }
        },
        None => chrono_tz::UTC,
    };
    let listen = a
        .listen
        .and_then(|l| match l.get_ref().parse::<SocketAddr>() {
            Ok(s) => Some(s),
            Err(_) => {
                cx.at(
                    l.span(),
                    "agent.listen",
                    format!(
                        "{:?} is not an address:port such as \"127.0.0.1:9750\"",
                        l.get_ref()
                    ),
                );
                None
            }
        });
    AgentConfig {
        state_dir: path(a.state_dir).unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
        sandbox_dir: path(a.sandbox_dir).unwrap_or_else(|| DEFAULT_SANDBOX_DIR.into()),
        max_concurrent_drills: max,
        timezone,
        listen,
        api_token_file: path(a.api_token_file),
        signing_key_file: path(a.signing_key_file),
        previous_signing_key_file: path(a.previous_signing_key_file),
    }
}

/// The config file to use: `-c`, else `$RESTORE_VERIFIER_CONFIG`, else the default.
pub fn config_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("RESTORE_VERIFIER_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| DEFAULT_CONFIG.into())
}

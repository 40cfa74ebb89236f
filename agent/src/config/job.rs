//! One `[[job]]`: schedule, limits, isolation, source, verify and checks.

use super::*;

pub(super) fn job(
    cx: &mut Ctx,
    i: usize,
    j: RawJob,
    raw_backup: ReadBackup<'_>,
    base: &Path,
    check: Check,
    agent: &AgentConfig,
) -> Option<Job> {
    let k = |key: &str| format!("job[{i}].{key}");
    let schedule = j.schedule.and_then(|s| match parse_cron(s.get_ref()) {
        Ok(sch) => Some((s.get_ref().clone(), sch)),
        Err(m) => {
            cx.at(s.span(), k("schedule"), m);
            None
        }
    });
    let timeout = duration(cx, j.timeout, k("timeout")).unwrap_or(DEFAULT_TIMEOUT);
    let rto = duration(cx, j.rto, k("rto"));
    let max_restore_bytes = bytes_key(cx, j.max_restore_bytes, k("max_restore_bytes"));
    let mut isolation = verifier::drill::process::Isolation::default();
    if let Some(r) = j.run_as {
        match verifier::drill::process::RunAs::lookup(r.get_ref()) {
            Ok(who) => isolation.run_as = Some(who),
            Err(e) => cx.at(r.span(), k("run_as"), e),
        }
    }
    if let Some(n) = j.network {
        match n.get_ref().as_str() {
            "host" => {}
            "none" => isolation.no_network = true,
            other => cx.at(
                n.span(),
                k("network"),
                format!("unknown network `{other}`; use \"none\" (no network) or \"host\""),
            ),
        }
    }
    let rpo = duration(cx, j.rpo, k("rpo"));
    let max_interval = duration(cx, j.max_interval, k("max_interval"));
    let jitter = duration(cx, j.jitter, k("jitter"));
    let source = j.source.map(|s| {
        let p = resolve(base, s.get_ref());
        if check == Check::Paths && !p.is_dir() {
            cx.at(
                s.span(),
                k("source"),
                format!(
                    "source directory {} does not exist or is not a directory",
                    p.display()
                ),
            );
        }
        for (key, dir) in [("sandbox_dir", &agent.sandbox_dir), ("state_dir", &agent.state_dir)] {
            if verifier::overlaps(&p, dir) {
                cx.at(
                    s.span(),
                    k("source"),
                    format!(
                        "{key} {} and this source overlap: restore-verifier never writes into a source; move {key} elsewhere",
                        dir.display()
                    ),
                );
            }
        }
        p
    });

    let backup_span = raw_backup.span();
    let backup = backup_config(cx, i, raw_backup, base, check, agent);
    // What no drill of this job could get past on this host (for the
    // throw-away PostgreSQL server: its account cannot reach sandbox_dir; no
    // room for its socket).
    if check == Check::Paths
        && let Some(b) = &backup
    {
        for why in b.setup_problems(agent, j.name.get_ref()) {
            cx.at(backup_span.clone(), k("backup"), why);
        }
    }

    let rv = j.verify.unwrap_or_default();
    let mut verify = Verify::default();
    if let Some(c) = rv.content {
        verify.content = match c.get_ref().as_str() {
            "all" => Content::All,
            "sample" => Content::Sample,
            "rotate" => Content::Rotate,
            "none" => Content::None,
            other => {
                cx.at(c.span(), k("verify.content"), format!("unknown content mode {other:?}; expected \"all\", \"sample\", \"rotate\" or \"none\""));
                Content::All
            }
        };
    }
    verify.sample_files = count(
        cx,
        rv.sample_files,
        k("verify.sample_files"),
        1,
        verify.sample_files,
    );
    verify.rotate_over = count(
        cx,
        rv.rotate_over,
        k("verify.rotate_over"),
        1,
        verify.rotate_over,
    );
    verify.min_files = count(cx, rv.min_files, k("verify.min_files"), 0, verify.min_files);
    verify.metadata =
        rv.metadata.and_then(
            |m| match verifier::tree::metadata::MetadataSet::parse(m.get_ref()) {
                Ok(set) => Some(set),
                Err(why) => {
                    cx.at(m.span(), k("verify.metadata"), why);
                    None
                }
            },
        );
    verify.seed = rv.seed.and_then(|s| match u64::try_from(*s.get_ref()) {
        Ok(v) => Some(v),
        Err(_) => {
            cx.at(s.span(), k("verify.seed"), "must be 0 or more");
            None
        }
    });
    for p in rv.exclude.unwrap_or_default() {
        match verifier::exclude_set(std::slice::from_ref(p.get_ref())) {
            Ok(_) => verify.exclude.push(p.into_inner()),
            Err(e) => cx.at(p.span(), k("verify.exclude"), e.to_string()),
        }
    }
    let excludes = verifier::exclude_set(&verify.exclude).ok().flatten();
    for p in rv.expect.unwrap_or_default() {
        let raw = Path::new(p.get_ref());
        if raw.is_absolute()
            || raw
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            cx.at(
                p.span(),
                k("verify.expect"),
                "canaries are paths relative to the backup root, without `..`",
            );
            continue;
        }
        // "./a//b" is the walked path "a/b".
        let rel: PathBuf = raw
            .components()
            .filter(|c| matches!(c, std::path::Component::Normal(_)))
            .collect();
        if rel.as_os_str().is_empty() {
            cx.at(p.span(), k("verify.expect"), "a canary must name a file");
        } else if excludes.as_ref().is_some_and(|g| g.is_match(&rel)) {
            cx.at(
                p.span(),
                k("verify.expect"),
                format!(
                    "canary {} is excluded by verify.exclude, so it could never be checked",
                    rel.display()
                ),
            );
        } else {
            verify.expect.push(rel);
        }
    }

    if let Some(m) = rv.manifest {
        let path = resolve(base, m.get_ref());
        if source.is_some() {
            cx.at(
                m.span(),
                k("verify.manifest"),
                "set either `source` or `verify.manifest`: a drill compares with one of them",
            );
        }
        if check == Check::Paths
            && let Err(e) = verifier::tree::manifest::verify_checksum(&path)
        {
            cx.at(m.span(), k("verify.manifest"), e.to_string());
        }
        verify.manifest = Some(path);
    }
    let mut checks = Vec::new();
    for (n, c) in j.check.unwrap_or_default().into_iter().enumerate() {
        let key = |s: &str| format!("job[{i}].check[{n}].{s}");
        if c.run.get_ref().is_empty() {
            cx.at(c.run.span(), key("run"), "needs at least a program name");
        }
        let expect_stdout = c.expect_stdout.and_then(|e| {
            let span = e.span();
            match e.into_inner() {
                RawExpect::Exact(s) => Some(verifier::ExpectOutput::Exact(s)),
                RawExpect::Regex { regex } => match regex::Regex::new(&regex) {
                    Ok(r) => Some(verifier::ExpectOutput::Regex(r)),
                    Err(err) => {
                        cx.at(span, key("expect_stdout"), format!("invalid regex: {err}"));
                        None
                    }
                },
            }
        });
        checks.push(verifier::CheckSpec {
            run: c.run.into_inner(),
            expect_exit: c.expect_exit.unwrap_or(0),
            expect_stdout,
            timeout: duration(cx, c.timeout, key("timeout")),
        });
    }

    Some(Job {
        name: j.name.into_inner(),
        system: j.system,
        schedule,
        timeout,
        rto,
        rpo,
        max_interval,
        catch_up: j.catch_up.unwrap_or(false),
        jitter,
        max_restore_bytes,
        isolation,
        source,
        backup: backup?,
        verify,
        checks,
    })
}

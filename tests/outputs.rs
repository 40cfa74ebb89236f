//! Snapshots of what people read: `run`'s summary, `config check`'s
//! description, `evidence show`, and every report format in both languages.
//! Times, dates, ids, durations, the host and temporary paths are redacted,
//! so a snapshot changes only when the wording or the layout does.

use super::*;

/// The redactions every snapshot shares, most specific first.
fn filters(site: &Site) -> Vec<(String, String)> {
    let root = site.tmp.path().display().to_string();
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    assert!(!host.is_empty(), "no host name to redact");
    let f = vec![
        (regex_escape(&root), "[site]".to_string()),
        // The host as the binary names it, before any pattern could take
        // part of it; only where a record or a summary shows it.
        (
            format!(r"host     {}\b", regex_escape(&host)),
            "host     [host]".into(),
        ),
        // The backup's age follows the clock.
        (
            r"age \d+d( \d+h)?( \d+m)?( \d+s)?".into(),
            "age [age]".into(),
        ),
        // Record ids (UUIDv7) and hashes.
        (
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}".into(),
            "[id]".into(),
        ),
        (r"\b[0-9a-f]{64}\b".into(), "[hash]".into()),
        (r"\b[0-9a-f]{16}…".into(), "[key]…".into()),
        // Timestamps, then dates and clock times on their own.
        (
            r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?".into(),
            "[time]".into(),
        ),
        (r"\d{4}-\d{2}-\d{2}".into(), "[date]".into()),
        // Durations and rates, which vary from run to run.
        (
            r"\b\d+(\.\d+)?\s?(ms|µs|s|min|m|h)\b".into(),
            "[dur]".into(),
        ),
        (
            r"\b\d+(\.\d+)? ?(B|KiB|MiB|GiB)/s\b".into(),
            "[rate]".into(),
        ),
        // Chart coordinates follow the drills' times and durations.
        (
            r#"\b(x|y|cx|cy|x1|x2|y1|y2)="-?[0-9.]+""#.into(),
            "$1=\"[n]\"".into(),
        ),
        // The gap from the period's start follows the clock; the drill's
        // time varies from run to run.
        (r"(\| |<td>)[0-9.]+ / ".into(), "$1[n] / ".into()),
        (r#"",[0-9.]+,90,"#.into(), "\",[n],90,".into()),
        (
            r#""(longest_gap_days|duration_seconds|backup_age_seconds)": [0-9.e-]+"#.into(),
            "\"$1\": [n]".into(),
        ),
    ];
    f
}

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn snap(site: &Site, name: &str, text: &str) {
    let filters = filters(site);
    let mut settings = insta::Settings::clone_current();
    for (re, with) in &filters {
        settings.add_filter(re, with.as_str());
    }
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!(name, text));
}

/// Two jobs (one passes, one fails) and a declared system with no job, run
/// once each: what every snapshot below reads.
fn ran_site() -> Site {
    let site = two_jobs();
    let cfg = std::fs::read_to_string(&site.config).unwrap();
    std::fs::write(
        &site.config,
        format!("{cfg}\n[[system]]\nname = \"ERP\"\nowner = \"経理部\"\ncriticality = \"high\"\n"),
    )
    .unwrap();
    site
}

#[test]
fn snapshots_of_run_config_check_evidence_show_and_reports() {
    let site = ran_site();
    let out = site.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    snap(&site, "config_check", &text(&out.stdout));

    let good = site.run(&["run", "good"]);
    assert_eq!(good.status.code(), Some(0), "{}", text(&good.stderr));
    snap(&site, "run_pass", &text(&good.stdout));
    let bad = site.run(&["run", "bad"]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad.stderr));
    snap(&site, "run_fail", &text(&bad.stdout));

    let show = site.run(&["evidence", "show", "2"]);
    assert_eq!(show.status.code(), Some(0), "{}", text(&show.stderr));
    snap(&site, "evidence_show_fail", &text(&show.stdout));

    // A change drilled to a failure: a shortfall in every report.
    let change = site.run(&[
        "run",
        "bad",
        "--trigger",
        "change",
        "--reason",
        "CHG-7 kernel",
    ]);
    assert_eq!(change.status.code(), Some(1), "{}", text(&change.stderr));

    // A period that begins the day before, so no gap in it is long.
    let since = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let period = ["--since", since.as_str(), "--until", "2100-01-01"];
    for (format, lang, name) in [
        ("md", "en", "report_md_en"),
        ("md", "ja", "report_md_ja"),
        ("html", "en", "report_html_en"),
        ("html", "ja", "report_html_ja"),
        ("csv", "en", "report_csv"),
        ("json", "en", "report_json"),
    ] {
        let mut args = vec!["report", "--format", format, "--lang", lang];
        args.extend(period);
        let out = site.run(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        snap(&site, name, &text(&out.stdout));
    }
}

//! The assessment on synthetic years of records with a fixed clock.

use super::*;
use chrono::TimeZone;
use rstest::rstest;
use verifier::*;

fn rec(job: &str, day: i64, result: Verdict, change: Option<&str>) -> Record {
    let t = Utc.with_ymd_and_hms(2025, 1, 1, 3, 0, 0).unwrap() + chrono::Duration::days(day);
    let t = t.fixed_offset();
    Record {
        format: FORMAT.into(),
        id: format!("{job}-{day}-{}", result.as_str()),
        seq: 0,
        job: job.into(),
        system: None,
        host: "h".into(),
        agent_version: "t".into(),
        trigger: Trigger {
            kind: if change.is_some() {
                TriggerKind::Change
            } else {
                TriggerKind::Schedule
            },
            reason: change.map(String::from),
            scheduled_for: None,
        },
        started_at: t,
        finished_at: t,
        result,
        reasons: if result == Verdict::Pass {
            vec![]
        } else {
            vec!["content mismatch: a".into()]
        },
        backup: BackupSection::default(),
        restore: RestoreSection::default(),
        verify: VerifySection {
            content: "all".into(),
            ..Default::default()
        },
        objectives: Objectives {
            rto_met: Some(true),
            ..Default::default()
        },
        checks: vec![],
        sandbox: SandboxSection::default(),
        artifacts: None,
        key: None,
        prev_hash: String::new(),
        hash: String::new(),
        signature: None,
        signature_previous: None,
    }
}

fn year() -> Period {
    Period {
        since: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
        until: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
    }
}

/// The policy of one job "fs" configured with `extra`, in UTC.
fn job_policy(extra: &str) -> Policy {
    let text =
        format!("[[job]]\nname = \"fs\"\n{extra}\n[job.backup]\ntype = \"dir\"\npath = \"/x\"\n");
    let cfg = crate::config::parse(
        std::path::Path::new("/etc/rv.toml"),
        &text,
        crate::config::Check::Values,
    )
    .unwrap();
    Policy::of_job(&cfg.jobs[0], chrono_tz::UTC)
}

/// The gap allowed between passes is the one the overdue alert uses
/// (`due::due_by` from each pass), at most 90 days without max_interval;
/// from the period's start to its first pass, max_interval or 90 days.
/// Day 0 is Wednesday 2025-01-01 03:00 UTC.
#[rstest]
#[case::daily_missing_three_days("schedule = \"0 3 * * *\"\ntimeout = \"1h\"", &[0, 4], Some("no passing restore for 4 days (policy 2 days)"))]
#[case::daily_every_day("schedule = \"0 3 * * *\"\ntimeout = \"1h\"", &[0, 1, 2, 3], None)]
#[case::weekdays_over_a_weekend("schedule = \"0 3 * * 1-5\"\ntimeout = \"1h\"", &[2, 5, 6], None)]
#[case::weekdays_missing_monday_and_tuesday("schedule = \"0 3 * * 1-5\"\ntimeout = \"1h\"", &[2, 7], Some("no passing restore for 5 days (policy 4 days)"))]
#[case::weekly_capped_by_max_interval("schedule = \"0 3 * * 3\"\nmax_interval = \"10d\"", &[0, 12], Some("(policy 10 days)"))]
#[case::manual_job_default("", &[0, 100], Some("no passing restore for 100 days (policy 90 days)"))]
#[case::max_interval_beyond_the_default("max_interval = \"180d\"", &[0, 100], None)]
#[case::yearly_schedule_capped("schedule = \"0 3 1 1 *\"", &[0, 100], Some("(policy 90 days)"))]
fn gaps_are_judged_by_the_due_by_rule(
    #[case] extra: &str,
    #[case] pass_days: &[i64],
    #[case] shortfall: Option<&str>,
) {
    let records: Vec<Record> = pass_days
        .iter()
        .map(|d| rec("fs", *d, Verdict::Pass, None))
        .collect();
    let first = records[0].started_at.with_timezone(&Utc);
    let last = records.last().unwrap().started_at.with_timezone(&Utc);
    let period = Period {
        since: first,
        until: last + chrono::Duration::minutes(1),
    };
    let systems = vec![SystemScope {
        name: "fs".into(),
        owner: None,
        criticality: None,
        jobs: vec!["fs".into()],
        policy: job_policy(extra),
    }];
    let a = assess(&records, &systems, &period, None, period.until);
    let texts: Vec<String> = a.systems[0]
        .shortfalls
        .iter()
        .map(|s| s.text(Lang::En))
        .collect();
    match shortfall {
        None => assert!(texts.is_empty(), "{texts:?}"),
        Some(want) => assert!(
            texts.len() == 1 && texts[0].contains(want),
            "{want:?} in {texts:?}"
        ),
    }
}

/// A daily job whose first pass is 30 days into the period: the leading
/// gap has no pass to count the schedule from, so 90 days apply.
#[test]
fn the_leading_gap_is_judged_by_the_default() {
    let records = vec![
        rec("fs", 30, Verdict::Pass, None),
        rec("fs", 31, Verdict::Pass, None),
    ];
    let since = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let period = Period {
        since,
        until: records[1].started_at.with_timezone(&Utc) + chrono::Duration::minutes(1),
    };
    let systems = |extra: &str| {
        vec![SystemScope {
            name: "fs".into(),
            owner: None,
            criticality: None,
            jobs: vec!["fs".into()],
            policy: job_policy(extra),
        }]
    };
    let daily = assess(
        &records,
        &systems("schedule = \"0 3 * * *\"\ntimeout = \"1h\""),
        &period,
        None,
        period.until,
    );
    assert!(
        daily.systems[0].shortfalls.is_empty(),
        "{:?}",
        daily.systems[0].shortfalls
    );
    let capped = assess(
        &records,
        &systems("schedule = \"0 3 * * *\"\nmax_interval = \"7d\""),
        &period,
        None,
        period.until,
    );
    assert!(
        capped.systems[0].shortfalls[0]
            .text(Lang::En)
            .contains("(policy 7 days), from the period's start"),
        "{:?}",
        capped.systems[0].shortfalls
    );
    // A pass before the period: the rule counts from it, so a daily job
    // that failed for the period's first 30 days falls short.
    let mut with_before = records.clone();
    with_before.insert(0, rec("fs", -1, Verdict::Pass, None));
    let daily = assess(
        &with_before,
        &systems("schedule = \"0 3 * * *\"\ntimeout = \"1h\""),
        &period,
        None,
        period.until,
    );
    let texts: Vec<String> = daily.systems[0]
        .shortfalls
        .iter()
        .map(|s| s.text(Lang::En))
        .collect();
    assert!(
        texts.len() == 1
            && texts[0].contains(
                "no passing restore for 31 days (policy 2 days), from pass fs--1-pass (2024-12-31)"
            ),
        "{texts:?}"
    );
}

fn scope_of(jobs: &[&str]) -> Vec<SystemScope> {
    vec![SystemScope {
        name: "Engineering file server".into(),
        owner: Some("IT".into()),
        criticality: Some("high".into()),
        jobs: jobs.iter().map(|s| s.to_string()).collect(),
        policy: Policy::fixed(DEFAULT_POLICY),
    }]
}

fn monthly_passes() -> Vec<Record> {
    (0..12)
        .map(|m| rec("fs", m * 30 + 5, Verdict::Pass, None))
        .collect()
}

#[rstest]
#[case::monthly_passes_and_a_drilled_change(
    { let mut r = monthly_passes(); r.push(rec("fs", 100, Verdict::Pass, Some("CHG-1 kernel update"))); r },
    None, 2, "")]
#[case::a_half_year_without_a_pass(
    (0..6).map(|m| rec("fs", m * 30 + 5, Verdict::Pass, None)).collect(),
    None, 1, "no passing restore for 209.9 days (policy 90 days), from pass fs-155-pass (2025-06-05) to the period's end (2026-01-01)")]
#[case::a_change_that_was_skipped(
    { let mut r = monthly_passes(); r.push(rec("fs", 200, Verdict::Skipped, Some("CHG-7 firmware"))); r },
    None, 1, "change CHG-7 firmware (2025-07-20) was not drilled to a pass: record fs-200-skipped is skipped")]
#[case::a_failed_change_closed_by_a_later_pass(
    { let mut r = monthly_passes(); r.push(rec("fs", 201, Verdict::Fail, Some("CHG-8 disk swap"))); r },
    None, 2, "")]
#[case::a_broken_ledger(monthly_passes(), Some("line 3: record was changed".into()), 1, "the ledger does not verify")]
#[case::only_errors((0..12).map(|m| rec("fs", m * 30, Verdict::Error, None)).collect(), None, 0, "no real restore in the period")]
#[case::nothing_at_all(vec![], None, 0, "no real restore in the period")]
fn no151_assessment(
    #[case] records: Vec<Record>,
    #[case] ledger: Option<String>,
    #[case] score: u8,
    #[case] shortfall: &str,
) {
    let now = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
    let a = assess(&records, &scope_of(&["fs"]), &year(), ledger, now);
    let s = &a.systems[0];
    assert_eq!(s.score, score, "{:#?}", s.shortfalls);
    assert_eq!(a.overall, score);
    if shortfall.is_empty() {
        assert!(s.shortfalls.is_empty(), "{:#?}", s.shortfalls);
    } else {
        assert!(
            s.shortfalls
                .iter()
                .any(|f| f.text(Lang::En).contains(shortfall)),
            "{shortfall:?} not in {:#?}",
            s.shortfalls
        );
    }
}

#[test]
fn gaps_count_the_period_edges_and_failures_name_what_closed_them() {
    let records = vec![
        rec("fs", 100, Verdict::Pass, None),
        rec("fs", 150, Verdict::Fail, None),
        rec("fs", 160, Verdict::Pass, None),
    ];
    let now = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
    let a = assess(&records, &scope_of(&["fs"]), &year(), None, now);
    let s = &a.systems[0];
    // From the last pass (day 160, 03:00) to the period's end is the longest gap.
    assert_eq!(s.longest_gap_days, 204.9);
    assert!(s.shortfalls.iter().any(|f| {
        f.text(Lang::En)
            .contains("from the period's start (2025-01-01) to pass fs-100-pass")
    }));
    // Japanese auditors read it in Japanese.
    assert!(s.shortfalls.iter().any(|f| {
        f.text(Lang::Ja)
            .contains("期間の開始（2025-01-01）から 合格 fs-100-pass")
    }));
    assert_eq!(s.failure_lines[0].closed_by.as_deref(), Some("fs-160-pass"));
    assert_eq!((s.passes, s.failures, s.real_restores), (2, 1, 3));
    // The shortfalls are data: the gap names its edges' passes and dates.
    let day =
        |d: i64| Utc.with_ymd_and_hms(2025, 1, 1, 3, 0, 0).unwrap() + chrono::Duration::days(d);
    assert_eq!(
        s.shortfalls,
        vec![
            Shortfall::Gap {
                days: 100.1,
                policy_days: 90.0,
                from: year().since,
                from_pass: None,
                to: day(100),
                to_pass: Some("fs-100-pass".into()),
            },
            Shortfall::Gap {
                days: 204.9,
                policy_days: 90.0,
                from: day(160),
                from_pass: Some("fs-160-pass".into()),
                to: year().until,
                to_pass: None,
            },
        ]
    );
}

#[test]
fn an_uncovered_system_scores_zero_and_pulls_the_overall_down() {
    let mut systems = scope_of(&["fs"]);
    systems.push(SystemScope {
        name: "ERP".into(),
        owner: None,
        criticality: None,
        jobs: vec![],
        policy: Policy::fixed(DEFAULT_POLICY),
    });
    let now = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
    let a = assess(&monthly_passes(), &systems, &year(), None, now);
    assert_eq!(a.systems[0].score, 2);
    assert_eq!(a.systems[1].score, 0);
    assert!(
        a.systems[1].shortfalls[0]
            .text(Lang::En)
            .contains("no job covers this system")
    );
    assert_eq!(a.overall, 0);
    let md = markdown(&a, Lang::Ja);
    assert!(
        md.contains("リストアテスト報告書") && md.contains("リストアジョブの対象になっていません"),
        "{md}"
    );
    let c = csv(&a);
    assert_eq!(c.lines().count(), 3);
    assert!(c.lines().nth(2).unwrap().starts_with("\"ERP\""));
}

/// Every shortfall's wording in both languages, exactly as auditors have
/// read it, and its JSON shape.
#[rstest]
#[case::no_job(
    Shortfall::NoJob,
    "no job covers this system",
    "このシステムを対象とするリストアジョブがありません"
)]
#[case::no_real_restore(
    Shortfall::NoRealRestore,
    "no real restore in the period",
    "期間中に実際のリストアが行われていません"
)]
#[case::gap_from_the_start_to_a_pass(
    Shortfall::Gap {
        days: 100.1,
        policy_days: 90.0,
        from: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
        from_pass: None,
        to: Utc.with_ymd_and_hms(2025, 4, 11, 3, 0, 0).unwrap(),
        to_pass: Some("fs-100-pass".into()),
    },
    "no passing restore for 100.1 days (policy 90 days), from the period's start (2025-01-01) to pass fs-100-pass (2025-04-11)",
    "合格したリストアのない期間が 100.1 日あります（方針は 90 日）：期間の開始（2025-01-01）から 合格 fs-100-pass（2025-04-11）まで"
)]
#[case::gap_from_a_pass_to_the_end(
    Shortfall::Gap {
        days: 2.5,
        policy_days: 1.1,
        from: Utc.with_ymd_and_hms(2025, 6, 10, 3, 0, 0).unwrap(),
        from_pass: Some("a".into()),
        to: Utc.with_ymd_and_hms(2025, 6, 12, 15, 0, 0).unwrap(),
        to_pass: None,
    },
    "no passing restore for 2.5 days (policy 1.1 days), from pass a (2025-06-10) to the period's end (2025-06-12)",
    "合格したリストアのない期間が 2.5 日あります（方針は 1.1 日）：合格 a（2025-06-10）から 期間の終了（2025-06-12）まで"
)]
#[case::change_not_drilled(
    Shortfall::ChangeNotDrilled {
        record: "r1".into(),
        at: Utc.with_ymd_and_hms(2025, 3, 2, 1, 0, 0).unwrap(),
        reason: Some("CHG-7".into()),
        result: Verdict::Error,
    },
    "change CHG-7 (2025-03-02) was not drilled to a pass: record r1 is error",
    "変更 CHG-7（2025-03-02）のドリルが合格に至っていません：記録 r1 は error です"
)]
#[case::change_without_a_reason(
    Shortfall::ChangeNotDrilled {
        record: "r2".into(),
        at: Utc.with_ymd_and_hms(2025, 3, 2, 1, 0, 0).unwrap(),
        reason: None,
        result: Verdict::Fail,
    },
    "change - (2025-03-02) was not drilled to a pass: record r2 is fail",
    "変更 -（2025-03-02）のドリルが合格に至っていません：記録 r2 は fail です"
)]
#[case::ledger(
    Shortfall::LedgerDoesNotVerify { problem: "line 3: hash mismatch".into() },
    "the ledger does not verify: line 3: hash mismatch",
    "証跡台帳の検証に失敗しました：line 3: hash mismatch"
)]
fn shortfalls_read_the_same_in_every_renderer(
    #[case] shortfall: Shortfall,
    #[case] en: &str,
    #[case] ja: &str,
) {
    assert_eq!(shortfall.text(Lang::En), en);
    assert_eq!(shortfall.text(Lang::Ja), ja);
    assert_eq!(
        serde_json::to_value(&shortfall).unwrap(),
        serde_json::json!({ "en": en, "ja": ja })
    );
}

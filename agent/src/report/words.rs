//! The report's wording in English and Japanese: the section titles, the
//! shortfalls, the signed share, rotation coverage and the crosswalk. The
//! renderers beside it take every sentence from here.

use chrono::{DateTime, Utc};

use super::{Lang, Shortfall, SignedShare, SystemReport};

impl SystemReport {
    /// Content verification by mode, e.g. "all ×11, sample ×1".
    pub(super) fn coverage_text(&self) -> String {
        if self.coverage.is_empty() {
            return "-".into();
        }
        let parts: Vec<String> = self
            .coverage
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect();
        parts.join(", ")
    }

    /// The values of the facts table, in the order of `Words::facts`.
    pub(super) fn facts(&self) -> [String; 9] {
        let last = self
            .last_pass
            .as_ref()
            .map(|(id, t)| format!("{} ({id})", t.format("%Y-%m-%d")))
            .unwrap_or_else(|| "-".into());
        [
            self.drills.to_string(),
            self.real_restores.to_string(),
            self.passes.to_string(),
            self.failures.to_string(),
            self.errors.to_string(),
            last,
            format!("{} / {}", self.longest_gap_days, self.policy_days),
            format!("{}/{}", self.rto.0, self.rto.1),
            format!("{}/{}", self.rpo.0, self.rpo.1),
        ]
    }
}

/// "12 of 14 records signed: by key 1a2b3c4d5e6f… from 2026-11-20 to
/// 2026-12-01; 2 unsigned (before signing began)".
pub fn signing_text(s: &SignedShare, lang: Lang) -> String {
    let keys: Vec<String> = s
        .keys
        .iter()
        .map(|(k, from, to)| {
            let k = k
                .as_deref()
                .map(|k| k[..16.min(k.len())].to_string() + "…")
                .unwrap_or_else(|| "?".into());
            let (a, b) = (from.format("%Y-%m-%d"), to.format("%Y-%m-%d"));
            match lang {
                Lang::En => format!("by key {k} from {a} to {b}"),
                Lang::Ja => format!("鍵 {k} による署名（{a} から {b}）"),
            }
        })
        .collect();
    let unsigned = s.records - s.signed;
    match lang {
        Lang::En => {
            let mut t = format!("{} of {} records signed", s.signed, s.records);
            if !keys.is_empty() {
                t += &format!(": {}", keys.join("; "));
            }
            if unsigned > 0 {
                t += &format!("; {unsigned} unsigned (before signing began)");
            }
            t
        }
        Lang::Ja => {
            let mut t = format!("{} 件中 {} 件の記録に署名があります", s.records, s.signed);
            if !keys.is_empty() {
                t += &format!("：{}", keys.join("、"));
            }
            if unsigned > 0 {
                t += &format!("。署名のない記録 {unsigned} 件（署名開始前）");
            }
            t
        }
    }
}

/// Which records support which control.
pub(super) const CROSSWALK: &[(&str, &str, &str)] = &[
    (
        "JAMA/JAPIA No.151",
        "restore tests of important backups, at every system update and periodically",
        "定期的およびシステム更新時に、重要なバックアップのリストアテストを実施",
    ),
    (
        "ISO/IEC 27001 A.8.13",
        "backup copies tested",
        "バックアップのテスト",
    ),
    (
        "NIST SP 800-53 CP-4",
        "contingency plan testing",
        "緊急時対応計画のテスト",
    ),
    (
        "NIST SP 800-53 CP-9(1)",
        "testing for reliability and integrity",
        "信頼性と完全性のテスト",
    ),
    (
        "NIST SP 800-53 CP-9(2)",
        "test restoration using sampling",
        "サンプリングによる復元テスト",
    ),
    (
        "NIST CSF PR.DS-11",
        "backups are created, protected, maintained and tested",
        "バックアップの作成・保護・維持・テスト",
    ),
    (
        "CIS Controls 11.5",
        "test data recovery (quarterly, sampled)",
        "データ復旧のテスト（四半期ごと、サンプル）",
    ),
    (
        "SOC 2 A1.3",
        "recovery plan procedures are tested",
        "復旧計画手順のテスト",
    ),
];

/// "every file content-verified within the last N drills", or what is missing.
pub fn rotation_text(c: &verifier::RotationCoverage, lang: Lang) -> String {
    let n = c.over;
    let since = c
        .since
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    let missing = verifier::slice_list(&c.missing);
    match (lang, c.complete()) {
        (Lang::En, true) => format!(
            "{}: every file content-verified within the last {n} drills (slices 0-{}, since {since})",
            c.job,
            n - 1
        ),
        (Lang::En, false) => format!(
            "{}: NOT every file content-verified within the last {n} drills: slice(s) {missing} of 0-{} had no passing drill ({} of {n} drills so far, since {since})",
            c.job,
            n - 1,
            c.drills
        ),
        (Lang::Ja, true) => format!(
            "{}：直近{n}回のドリルで全ファイルの内容を検証済み（スライス 0-{}、{since}以降）",
            c.job,
            n - 1
        ),
        (Lang::Ja, false) => format!(
            "{}：直近{n}回のドリルでは全ファイルの内容を検証できていません。合格したドリルのないスライス：{missing}（0-{}中、{since}以降のドリル{}回）",
            c.job,
            n - 1,
            c.drills
        ),
    }
}

pub(super) struct Words {
    pub(super) title: &'static str,
    pub(super) period: &'static str,
    pub(super) overall: &'static str,
    pub(super) ledger_ok: &'static str,
    pub(super) ledger_bad: &'static str,
    pub(super) system: &'static str,
    pub(super) score: &'static str,
    pub(super) uncovered: &'static str,
    pub(super) facts: [&'static str; 9],
    pub(super) shortfalls: &'static str,
    pub(super) none: &'static str,
    pub(super) failures: &'static str,
    pub(super) closed_by: &'static str,
    pub(super) open: &'static str,
    pub(super) changes: &'static str,
    pub(super) crosswalk: &'static str,
    pub(super) crosswalk_text: &'static str,
    pub(super) coverage: &'static str,
    pub(super) rotation: &'static str,
    pub(super) signing: &'static str,
}

pub(super) fn words(lang: Lang) -> Words {
    match lang {
        Lang::En => Words {
            title: "Restore test report",
            period: "Period",
            overall: "No.151 assessment, overall",
            ledger_ok: "The evidence ledger verifies (hash chain intact).",
            ledger_bad: "The evidence ledger does NOT verify",
            system: "System",
            score: "No.151 score",
            uncovered: "not covered by any restore job",
            facts: [
                "Drills",
                "Real restores",
                "Passes",
                "Failures",
                "Errors",
                "Last pass",
                "Longest gap between passes (days)",
                "RTO met",
                "RPO met",
            ],
            shortfalls: "Shortfalls",
            none: "none",
            failures: "Failures and the drill that closed each",
            closed_by: "closed by",
            open: "still open",
            changes: "Change-triggered drills",
            crosswalk: "Crosswalk",
            crosswalk_text: "Each drill record (result, restore and verification figures, objectives, hash chain) supports these controls:",
            coverage: "Content verification (drills by mode: all files, sample, rotation, none)",
            rotation: "Rotating content checks",
            signing: "Signed evidence",
        },
        Lang::Ja => Words {
            title: "リストアテスト報告書",
            period: "対象期間",
            overall: "No.151 評価（全体）",
            ledger_ok: "証跡台帳の検証に成功しました（ハッシュチェーンは改ざんされていません）。",
            ledger_bad: "証跡台帳の検証に失敗しました",
            system: "システム",
            score: "No.151 評点",
            uncovered: "リストアジョブの対象になっていません",
            facts: [
                "ドリル回数",
                "実リストア回数",
                "合格",
                "不合格",
                "エラー",
                "最終合格",
                "合格間の最長間隔（日）",
                "RTO 達成",
                "RPO 達成",
            ],
            shortfalls: "不足事項",
            none: "なし",
            failures: "不合格と、それを解消したドリル",
            closed_by: "解消",
            open: "未解消",
            changes: "変更契機のドリル",
            crosswalk: "他基準との対応",
            crosswalk_text: "各ドリルの記録（結果、リストアと検証の数値、目標値、ハッシュチェーン）は次の管理策の証跡となります：",
            coverage: "内容の検証（方式別のドリル回数：all 全ファイル、sample 抽出、rotate ローテーション、none なし）",
            rotation: "ローテーションによる内容の検証",
            signing: "署名付きの証跡",
        },
    }
}

impl Shortfall {
    /// The shortfall as the report says it.
    pub fn text(&self, lang: Lang) -> String {
        let day = |t: &DateTime<Utc>| t.format("%Y-%m-%d").to_string();
        match (self, lang) {
            (Shortfall::NoJob, Lang::En) => "no job covers this system".into(),
            (Shortfall::NoJob, Lang::Ja) => {
                "このシステムを対象とするリストアジョブがありません".into()
            }
            (Shortfall::NoRealRestore, Lang::En) => "no real restore in the period".into(),
            (Shortfall::NoRealRestore, Lang::Ja) => {
                "期間中に実際のリストアが行われていません".into()
            }
            (
                Shortfall::Gap {
                    days: d,
                    policy_days: p,
                    from,
                    from_pass,
                    to,
                    to_pass,
                },
                lang,
            ) => {
                let (a, b) = (day(from), day(to));
                match lang {
                    Lang::En => {
                        let from_en = match from_pass {
                            Some(i) => format!("pass {i}"),
                            None => "the period's start".to_string(),
                        };
                        let to_en = match to_pass {
                            Some(i) => format!("pass {i}"),
                            None => "the period's end".to_string(),
                        };
                        format!(
                            "no passing restore for {d} days (policy {p} days), from {from_en} ({a}) to {to_en} ({b})"
                        )
                    }
                    Lang::Ja => {
                        let from_ja = match from_pass {
                            Some(i) => format!("合格 {i}"),
                            None => "期間の開始".to_string(),
                        };
                        let to_ja = match to_pass {
                            Some(i) => format!("合格 {i}"),
                            None => "期間の終了".to_string(),
                        };
                        format!(
                            "合格したリストアのない期間が {d} 日あります（方針は {p} 日）：{from_ja}（{a}）から {to_ja}（{b}）まで"
                        )
                    }
                }
            }
            (
                Shortfall::ChangeNotDrilled {
                    record,
                    at,
                    reason,
                    result,
                },
                lang,
            ) => {
                let (why, at) = (reason.as_deref().unwrap_or("-"), day(at));
                match lang {
                    Lang::En => format!(
                        "change {why} ({at}) was not drilled to a pass: record {record} is {result}"
                    ),
                    Lang::Ja => format!(
                        "変更 {why}（{at}）のドリルが合格に至っていません：記録 {record} は {result} です"
                    ),
                }
            }
            (Shortfall::LedgerDoesNotVerify { problem }, Lang::En) => {
                format!("the ledger does not verify: {problem}")
            }
            (Shortfall::LedgerDoesNotVerify { problem }, Lang::Ja) => {
                format!("証跡台帳の検証に失敗しました：{problem}")
            }
        }
    }
}

/// The JSON report carries each shortfall in both languages.
impl serde::Serialize for Shortfall {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Shortfall", 2)?;
        st.serialize_field("en", &self.text(Lang::En))?;
        st.serialize_field("ja", &self.text(Lang::Ja))?;
        st.end()
    }
}

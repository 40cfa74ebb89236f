//! The HTML report: one self-contained file with inline SVG charts.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use verifier::Verdict;

use super::words::{CROSSWALK, words};
use super::{Assessment, Lang, Point, SystemReport, rotation_text, signing_text};
use crate::escape::escape;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn color(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "#1a7f37",
        Verdict::Fail => "#cf222e",
        Verdict::Error => "#bc4c00",
        Verdict::Skipped | Verdict::Key => "#8c959f",
    }
}

/// A chart's series: the value of a drill, the objective line, and its unit.
type Series<'a> = (&'a dyn Fn(&Point) -> Option<f64>, Option<f64>, &'a str);

/// An inline SVG: one mark per drill along the period, coloured by result;
/// with `value`, a scatter of that value against a dashed objective line.
fn chart(a: &Assessment, r: &SystemReport, value: Option<Series>) -> String {
    let (w, h, pad) = (880.0, if value.is_some() { 140.0 } else { 44.0 }, 20.0);
    let span = (a.period.until - a.period.since).num_seconds().max(1) as f64;
    let x =
        |t: DateTime<Utc>| pad + (t - a.period.since).num_seconds() as f64 / span * (w - 2.0 * pad);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\"><rect width=\"{w}\" height=\"{h}\" fill=\"#f6f8fa\"/>"
    );
    match value {
        None => {
            for p in &r.points {
                let _ = write!(
                    s,
                    "<rect x=\"{:.1}\" y=\"10\" width=\"4\" height=\"24\" fill=\"{}\"><title>{} {} {}</title></rect>",
                    x(p.at) - 2.0,
                    color(p.result),
                    p.at.format("%Y-%m-%d"),
                    p.result,
                    esc(&p.id)
                );
            }
        }
        Some((get, objective, unit)) => {
            let vals: Vec<f64> = r.points.iter().filter_map(get).collect();
            let max = vals
                .iter()
                .copied()
                .chain(objective)
                .fold(1.0_f64, f64::max)
                * 1.1;
            let y = |v: f64| h - pad - v / max * (h - 2.0 * pad);
            if let Some(o) = objective {
                let _ = write!(
                    s,
                    "<line x1=\"{pad}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#cf222e\" stroke-dasharray=\"6 4\"/><text x=\"{}\" y=\"{:.1}\" font-size=\"11\" fill=\"#cf222e\" text-anchor=\"end\">{:.0} {unit}</text>",
                    w - pad,
                    y(o),
                    y(o),
                    w - pad,
                    y(o) - 3.0,
                    o
                );
            }
            for p in &r.points {
                if let Some(v) = get(p) {
                    let _ = write!(
                        s,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{}\"><title>{} {:.1} {unit}</title></circle>",
                        x(p.at),
                        y(v),
                        color(p.result),
                        p.at.format("%Y-%m-%d"),
                        v
                    );
                }
            }
        }
    }
    s.push_str("</svg>");
    s
}

/// One self-contained HTML file: inline styles and SVG, no script, no
/// external assets; prints to PDF as it shows.
pub fn html(a: &Assessment, lang: Lang) -> String {
    let w = words(lang);
    let (tl, dur, age) = match lang {
        Lang::En => (
            "Drills over the period (green pass, red fail, orange error, grey skipped)",
            "Restore + verify time (seconds) against RTO",
            "Backup age (hours) against RPO",
        ),
        Lang::Ja => (
            "期間中のドリル（緑：合格、赤：不合格、橙：エラー、灰：スキップ）",
            "リストア＋検証時間（秒）と RTO",
            "バックアップの経過時間（時間）と RPO",
        ),
    };
    let mut s = format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{}</title><style>\
body{{font-family:'Noto Sans CJK JP','Noto Sans JP',sans-serif;margin:2em;color:#1f2328}}\
h1{{font-size:1.6em}}h2{{border-bottom:1px solid #d0d7de;padding-bottom:.2em}}\
table{{border-collapse:collapse}}td{{border:1px solid #d0d7de;padding:.25em .6em}}\
.score{{display:inline-block;font-weight:bold;padding:.1em .6em;border-radius:1em;color:#fff}}\
.s2{{background:#1a7f37}}.s1{{background:#bc4c00}}.s0{{background:#cf222e}}\
@media print{{section{{break-inside:avoid}}}}</style></head><body>",
        if lang == Lang::Ja { "ja" } else { "en" },
        w.title
    );
    let _ = write!(
        s,
        "<h1>{}</h1><p>{}: {} – {}</p>",
        w.title,
        w.period,
        a.period.since.format("%Y-%m-%d"),
        a.period.until.format("%Y-%m-%d")
    );
    let _ = write!(
        s,
        "<p>{}: <span class=\"score s{}\">{}</span></p>",
        w.overall, a.overall, a.overall
    );
    match &a.ledger_problem {
        None => {
            let _ = write!(s, "<p>{}</p>", w.ledger_ok);
        }
        Some(p) => {
            let _ = write!(s, "<p><b>{}</b>: {}</p>", w.ledger_bad, esc(p));
        }
    }
    for r in &a.systems {
        let _ = write!(
            s,
            "<section><h2>{}: {}</h2><p>{}: <span class=\"score s{}\">{}</span>{}</p>",
            w.system,
            esc(&r.name),
            w.score,
            r.score,
            r.score,
            if r.covered {
                String::new()
            } else {
                format!(" — {}", w.uncovered)
            }
        );
        s.push_str("<table>");
        for (k, v) in w.facts.iter().zip(r.facts()) {
            let _ = write!(s, "<tr><td>{k}</td><td>{}</td></tr>", esc(&v));
        }
        s.push_str("</table>");
        let _ = write!(
            s,
            "<p><b>{}</b>: {}</p><ul>",
            w.shortfalls,
            if r.shortfalls.is_empty() { w.none } else { "" }
        );
        for f in &r.shortfalls {
            let _ = write!(s, "<li>{}</li>", esc(&f.text(lang)));
        }
        s.push_str("</ul>");
        let _ = write!(
            s,
            "<p><b>{}</b>: {}</p>",
            w.coverage,
            esc(&r.coverage_text())
        );
        let _ = write!(
            s,
            "<p><b>{}</b>: {}</p>",
            w.signing,
            esc(&signing_text(&r.signing, lang))
        );
        for c in &r.rotation {
            let _ = write!(
                s,
                "<p><b>{}</b>: {}</p>",
                w.rotation,
                esc(&rotation_text(c, lang))
            );
        }
        if !r.failure_lines.is_empty() {
            let _ = write!(s, "<p><b>{}</b></p><ul>", w.failures);
            for f in &r.failure_lines {
                let closed = f
                    .closed_by
                    .as_ref()
                    .map(|c| format!("{} {}", w.closed_by, esc(c)))
                    .unwrap_or_else(|| w.open.to_string());
                let _ = write!(
                    s,
                    "<li>{} {} {}: {} — {closed}</li>",
                    f.at.format("%Y-%m-%d"),
                    f.result,
                    esc(&f.id),
                    esc(&escape(&f.reason))
                );
            }
            s.push_str("</ul>");
        }
        if !r.changes.is_empty() {
            let _ = write!(s, "<p><b>{}</b></p><ul>", w.changes);
            for c in &r.changes {
                let _ = write!(
                    s,
                    "<li>{} {} {}: {}</li>",
                    c.at.format("%Y-%m-%d"),
                    c.result,
                    esc(&c.id),
                    esc(&escape(c.reason.as_deref().unwrap_or("-")))
                );
            }
            s.push_str("</ul>");
        }
        let rto = r
            .points
            .iter()
            .find_map(|p| p.rto_seconds)
            .map(|v| v as f64);
        let rpo = r
            .points
            .iter()
            .find_map(|p| p.rpo_seconds)
            .map(|v| v as f64 / 3600.0);
        let _ = write!(s, "<p>{tl}</p>{}", chart(a, r, None));
        let _ = write!(
            s,
            "<p>{dur}</p>{}",
            chart(
                a,
                r,
                Some((
                    &|p: &Point| (p.result != Verdict::Skipped).then_some(p.duration_seconds),
                    rto,
                    "s"
                ))
            )
        );
        let _ = write!(
            s,
            "<p>{age}</p>{}</section>",
            chart(
                a,
                r,
                Some((
                    &|p: &Point| p.backup_age_seconds.map(|x| x as f64 / 3600.0),
                    rpo,
                    "h"
                ))
            )
        );
    }
    let _ = write!(
        s,
        "<section><h2>{}</h2><p>{}</p><ul>",
        w.crosswalk, w.crosswalk_text
    );
    for (code, en, ja) in CROSSWALK {
        let _ = write!(
            s,
            "<li>{code}: {}</li>",
            if lang == Lang::Ja { ja } else { en }
        );
    }
    s.push_str("</ul></section></body></html>\n");
    s
}

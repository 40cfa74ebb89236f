//! The evidence ledger from the command line: list, show, verify, signing,
//! a torn line, and what rotating drills add up to.

use super::*;

#[test]
fn concurrent_runs_leave_a_ledger_that_verifies() {
    let jobs: String = (0..4)
        .map(|i| job(&format!("j{i}"), "backups/good/share-*.tar"))
        .collect();
    let site = Site::new(&jobs);
    let children: Vec<_> = (0..5)
        .map(|_| {
            bin()
                .arg("-c")
                .arg(&site.config)
                .args(["run", "--quiet"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert_eq!(c.wait().unwrap().code(), Some(0));
    }
    let out = site.run(&["evidence", "verify"]);
    let so = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{so}");
    assert!(so.contains("records   20"), "{so}");
    assert!(so.contains("OK: the hash chain holds"));
}

#[test]
fn evidence_verify_names_the_first_bad_line() {
    let site = two_jobs();
    for _ in 0..2 {
        site.run(&["run"]);
    }
    let ledger = site.path("state/ledger.jsonl");
    let out = bin()
        .args(["evidence", "verify", "--ledger"])
        .arg(&ledger)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "--ledger needs no config: {}",
        text(&out.stderr)
    );
    let original = std::fs::read_to_string(&ledger).unwrap();
    let mut lines: Vec<&str> = original.lines().collect();
    let edited = lines[1].replace("\"result\":\"fail\"", "\"result\":\"pass\"");
    assert_ne!(edited, lines[1]);
    lines[1] = &edited;
    std::fs::write(&ledger, lines.join("\n") + "\n").unwrap();
    let out = site.run(&["evidence", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let so = text(&out.stdout);
    assert!(so.contains("BROKEN at line 2: record was changed"), "{so}");
}

#[test]
fn evidence_list_and_show() {
    let site = two_jobs();
    site.run(&["run"]);
    let out = site.run(&["evidence", "list", "--json"]);
    assert_eq!(records(&out).len(), 2);
    let out = site.run(&["evidence", "list", "--job", "bad"]);
    let so = text(&out.stdout);
    assert!(
        so.contains("bad") && so.contains("fail") && !so.contains(" good "),
        "{so}"
    );
    let out = site.run(&["evidence", "list", "--since", "2099-01-01", "--json"]);
    assert!(records(&out).is_empty());
    let id = records(&site.run(&["evidence", "list", "--json"]))[1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = site.run(&["evidence", "show", &id]);
    let so = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        so.contains("bad: FAIL")
            && so.contains("mismatched: 1")
            && so.contains("finance/ledger.csv"),
        "{so}"
    );
    let out = site.run(&["evidence", "show", "2", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["id"], id.as_str());
    assert_eq!(
        site.run(&["evidence", "show", "no-such-id"]).status.code(),
        Some(2)
    );
}

#[rstest]
#[case::edited("edit")]
#[case::removed("remove")]
#[case::inserted("insert")]
#[case::swapped("swap")]
fn evidence_verify_exits_1_after_any_single_change(#[case] how: &str) {
    let site = two_jobs();
    site.run(&["run"]);
    site.run(&["run"]);
    let ledger = site.path("state/ledger.jsonl");
    let original = std::fs::read_to_string(&ledger).unwrap();
    let mut lines: Vec<String> = original.lines().map(String::from).collect();
    assert_eq!(lines.len(), 4);
    match how {
        "edit" => lines[2] = lines[2].replace("\"job\":\"good\"", "\"job\":\"goof\""),
        "remove" => {
            lines.remove(1);
        }
        "insert" => {
            let copy = lines[0].clone();
            lines.insert(2, copy);
        }
        _ => lines.swap(1, 2),
    }
    assert_ne!(lines.join("\n") + "\n", original);
    std::fs::write(&ledger, lines.join("\n") + "\n").unwrap();
    let out = site.run(&["evidence", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("BROKEN at line"));
}

#[test]
fn signed_evidence_verifies_only_with_its_key() {
    let site = two_jobs();
    let key = site.path("evidence.key");
    let out = bin().arg("keygen").arg("-o").arg(&key).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(site.path("evidence.key.pub").exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_ne!(
        bin()
            .arg("keygen")
            .arg("-o")
            .arg(&key)
            .output()
            .unwrap()
            .status
            .code(),
        Some(0),
        "never overwrites a key"
    );
    let cfg = std::fs::read_to_string(&site.config).unwrap().replace(
        "timezone = \"Asia/Tokyo\"\n",
        "timezone = \"Asia/Tokyo\"\nsigning_key_file = \"evidence.key\"\n",
    );
    std::fs::write(&site.config, cfg).unwrap();
    site.run(&["run"]);
    let verify = |pubkey: &Path| {
        bin()
            .arg("-c")
            .arg(&site.config)
            .args(["evidence", "verify", "--public-key"])
            .arg(pubkey)
            .output()
            .unwrap()
    };
    let out = verify(&site.path("evidence.key.pub"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    // Signing began with the ledger: its key record is line 1.
    assert!(
        text(&out.stdout).contains("signed    3 of 3 records carry a signature that verifies")
            && text(&out.stdout).contains("signed    seq 1-3 by key "),
        "{}",
        text(&out.stdout)
    );

    // A ledger signed by another key.
    let other = site.path("other.key");
    bin().arg("keygen").arg("-o").arg(&other).output().unwrap();
    let out = verify(&site.path("other.key.pub"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("BROKEN at line 1: records 1 to 3 are signed by key ")
            && text(&out.stdout).contains("none of the given public keys"),
        "{}",
        text(&out.stdout)
    );

    // A changed signature.
    let ledger = site.path("state/ledger.jsonl");
    let original = std::fs::read_to_string(&ledger).unwrap();
    let mut lines: Vec<String> = original.lines().map(String::from).collect();
    let v: Value = serde_json::from_str(&lines[1]).unwrap();
    let sig = v["signature"].as_str().unwrap().to_string();
    let flipped = format!(
        "{}{}",
        if sig.starts_with('0') { "1" } else { "0" },
        &sig[1..]
    );
    lines[1] = lines[1].replace(&sig, &flipped);
    std::fs::write(&ledger, lines.join("\n") + "\n").unwrap();
    let out = verify(&site.path("evidence.key.pub"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("BROKEN at line 2: signature does not verify"),
        "{}",
        text(&out.stdout)
    );

    // A changed record.
    let failed = 1 + original
        .lines()
        .position(|l| l.contains("\"result\":\"fail\""))
        .unwrap();
    std::fs::write(
        &ledger,
        original.replacen("\"result\":\"fail\"", "\"result\":\"pass\"", 1),
    )
    .unwrap();
    let out = verify(&site.path("evidence.key.pub"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains(&format!("BROKEN at line {failed}: record was changed")),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_torn_ledger_line_is_kept_aside_and_evidence_verify_explains_it() {
    let site = Site::new(&job("good", "backups/good/share-*.tar"));
    assert_eq!(site.run(&["run"]).status.code(), Some(0));
    // A crash while the next record was being written.
    let ledger = site.path("state/ledger.jsonl");
    let mut content = std::fs::read_to_string(&ledger).unwrap();
    content.push_str("{\"format\":\"restore-verifier/record/v1\",\"id\":\"0");
    std::fs::write(&ledger, &content).unwrap();
    let out = site.run(&["evidence", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let said = text_of(&out);
    assert!(
        said.contains("BROKEN at line 2: incomplete last line"),
        "{said}"
    );

    let out = site.run(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        records(&out)[0]["seq"],
        3,
        "the drill follows the repair record"
    );
    assert!(site.path("state/ledger.jsonl.torn-line2").exists());
    let out = site.run(&["evidence", "verify"]);
    let said = text_of(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("repaired  seq 2: the ledger's line 2")
            && said.contains("OK: the hash chain holds for all 3 records"),
        "{said}"
    );
    let listed = text(&site.run(&["evidence", "list"]).stdout);
    assert!(
        listed.contains("(ledger)") && listed.contains("error"),
        "{listed}"
    );
}

fn text_of(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

#[test]
fn rotating_drills_add_up_to_every_file_and_evidence_says_so() {
    let site = Site::new(&format!(
        "{}  [job.verify]\n  content = \"rotate\"\n  rotate_over = 3\n",
        job("r", "backups/good/share-*.tar")
    ));
    let mut checked: Vec<String> = Vec::new();
    for slice in 0..3 {
        let before = text(&site.run(&["evidence", "list"]).stdout);
        if slice > 0 {
            assert!(
                before.contains(&format!(
                    "r: NOT every file content-verified within the last 3 drills: slice(s) {} of 0-2 had no passing drill ({slice} of 3 drills so far",
                    if slice == 1 { "1-2" } else { "2" }
                )),
                "{before}"
            );
        }
        let out = site.run(&["run", "--json"]);
        let rec = records(&out).remove(0);
        assert_eq!(rec["result"], "pass", "{}", text(&out.stderr));
        assert_eq!(rec["verify"]["rotate"], json!({"slice": slice, "over": 3}));
        assert!(
            text(&out.stderr).contains(&format!("rotate slice {slice} of 0-2")),
            "{}",
            text(&out.stderr)
        );
        checked.extend(manifest_paths(&site, &rec));
    }
    // The three slices are disjoint and cover every file.
    let files = walkdir::WalkDir::new(site.path("source"))
        .into_iter()
        .filter(|e| e.as_ref().unwrap().file_type().is_file())
        .count();
    let n = checked.len();
    checked.sort();
    checked.dedup();
    assert_eq!((n, checked.len()), (files, files), "{checked:?}");

    let listed = text(&site.run(&["evidence", "list"]).stdout);
    assert!(
        listed.contains(
            "rotation: r: every file content-verified within the last 3 drills (slices 0-2, since "
        ),
        "{listed}"
    );
    let report = site.run(&["report", "--format", "md"]);
    let md = text(&report.stdout);
    assert!(
        md.contains("r: every file content-verified within the last 3 drills"),
        "{md}"
    );
    let ja = text(
        &site
            .run(&["report", "--format", "md", "--lang", "ja"])
            .stdout,
    );
    assert!(
        ja.contains("r：直近3回のドリルで全ファイルの内容を検証済み"),
        "{ja}"
    );
}

//! The ledger's hash chain catches every single-record edit, deletion, insertion
//! and swap, and stays intact under concurrent appenders.

use std::path::Path;

use chrono::{DateTime, FixedOffset};
use verifier::*;

fn record(job: &str, n: u64) -> Record {
    let t: DateTime<FixedOffset> =
        DateTime::parse_from_rfc3339("2026-11-01T02:30:00+09:00").unwrap();
    Record {
        format: FORMAT.into(),
        id: format!("id-{job}-{n}"),
        seq: 0,
        job: job.into(),
        system: None,
        host: "host".into(),
        agent_version: "test".into(),
        trigger: Trigger {
            kind: TriggerKind::Manual,
            reason: Some(format!("run {n}")),
            scheduled_for: None,
        },
        started_at: t,
        finished_at: t,
        result: if n.is_multiple_of(3) {
            Verdict::Fail
        } else {
            Verdict::Pass
        },
        reasons: vec![],
        backup: BackupSection::default(),
        restore: RestoreSection {
            duration_seconds: 1.25,
            ..Default::default()
        },
        verify: VerifySection::default(),
        objectives: Objectives::default(),
        checks: Vec::new(),
        sandbox: SandboxSection::default(),
        artifacts: None,
        prev_hash: String::new(),
        hash: String::new(),
        signature: None,
    }
}

fn ledger_with(dir: &Path, n: u64) -> Ledger {
    let l = Ledger::new(dir.join("ledger.jsonl"));
    for i in 1..=n {
        let mut r = record("job", i);
        l.append(&mut r).unwrap();
        assert_eq!(r.seq, i);
    }
    l
}

fn lines(l: &Ledger) -> Vec<String> {
    std::fs::read_to_string(l.path())
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn write(l: &Ledger, lines: &[String]) {
    std::fs::write(
        l.path(),
        lines.iter().map(|s| format!("{s}\n")).collect::<String>(),
    )
    .unwrap();
}

fn first_bad(l: &Ledger) -> Option<u64> {
    l.verify().unwrap().problem.map(|p| p.line)
}

#[test]
fn intact_ledger_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let l = ledger_with(tmp.path(), 5);
    let rep = l.verify().unwrap();
    assert!(rep.problem.is_none(), "{:?}", rep.problem);
    assert_eq!(rep.records, 5);
    assert_eq!(rep.first.unwrap().seq, 1);
    assert_eq!(rep.last.unwrap().hash, rep.head_hash);
    let recs: Vec<Record> = l.records().unwrap().map(Result::unwrap).collect();
    assert_eq!(recs[0].prev_hash, GENESIS);
    assert_eq!(recs[1].prev_hash, recs[0].hash);
}

#[test]
fn edited_record_is_found() {
    let tmp = tempfile::tempdir().unwrap();
    let l = ledger_with(tmp.path(), 5);
    let mut ls = lines(&l);
    ls[2] = ls[2].replace("\"result\":\"fail\"", "\"result\":\"pass\"");
    write(&l, &ls);
    assert_eq!(first_bad(&l), Some(3));
}

#[test]
fn removed_record_is_found() {
    let tmp = tempfile::tempdir().unwrap();
    let l = ledger_with(tmp.path(), 5);
    let mut ls = lines(&l);
    ls.remove(1);
    write(&l, &ls);
    assert_eq!(first_bad(&l), Some(2));
}

#[test]
fn removed_last_record_is_found() {
    let tmp = tempfile::tempdir().unwrap();
    let l = ledger_with(tmp.path(), 5);
    let mut ls = lines(&l);
    ls.pop();
    write(&l, &ls);
    let rep = l.verify().unwrap();
    assert!(rep.problem.unwrap().what.contains("removed from the end"));
}

#[test]
fn inserted_record_is_found() {
    let tmp = tempfile::tempdir().unwrap();
    let l = ledger_with(tmp.path(), 5);
    let mut ls = lines(&l);
    let copy = ls[1].clone();
    ls.insert(2, copy);
    write(&l, &ls);
    assert_eq!(first_bad(&l), Some(3));
}

#[test]
fn swapped_records_are_found() {
    let tmp = tempfile::tempdir().unwrap();
    let l = ledger_with(tmp.path(), 5);
    let mut ls = lines(&l);
    ls.swap(2, 3);
    write(&l, &ls);
    assert_eq!(first_bad(&l), Some(3));
}

#[test]
fn a_torn_last_line_is_kept_aside_and_the_chain_goes_on_with_an_error_record() {
    let tmp = tempfile::tempdir().unwrap();
    let l = ledger_with(tmp.path(), 3);
    let text = std::fs::read_to_string(l.path()).unwrap();
    // A crash in the middle of writing line 3.
    let cut = text.len() - 40;
    let line3_start = text[..text.len() - 1].rfind('\n').unwrap() + 1;
    std::fs::write(l.path(), &text[..cut]).unwrap();
    let rep = l.verify().unwrap();
    let p = rep.problem.expect("the torn line is reported");
    assert_eq!(p.line, 3);
    assert!(p.what.contains("incomplete last line"), "{}", p.what);
    assert!(p.what.contains("torn-line3"), "{}", p.what);

    let mut next = record("job", 4);
    l.append(&mut next).unwrap();
    let kept = tmp.path().join("ledger.jsonl.torn-line3");
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        text.as_bytes()[line3_start..cut].to_vec(),
        "exactly the torn bytes are kept"
    );
    let recs: Vec<Record> = l.records().unwrap().map(Result::unwrap).collect();
    assert_eq!(recs.len(), 4);
    assert_eq!(recs[2].job, LEDGER_JOB);
    assert_eq!(recs[2].result, Verdict::Error);
    assert!(
        recs[2].reasons[0].contains("line 3"),
        "{:?}",
        recs[2].reasons
    );
    // Line 3 had been acknowledged (the head file says so): damage, not a crash.
    assert!(
        recs[2].reasons[0].contains("damaged after it was written"),
        "{:?}",
        recs[2].reasons
    );
    assert!(
        recs[2].reasons[0].contains(&kept.display().to_string()),
        "{:?}",
        recs[2].reasons
    );
    assert_eq!((recs[3].seq, &recs[3].id), (4, &next.id));
    let rep = l.verify().unwrap();
    assert!(rep.problem.is_none(), "{:?}", rep.problem);
    assert_eq!(rep.records, 4);
    assert_eq!(rep.repairs.len(), 1);
    assert_eq!(rep.repairs[0].0, 3);

    // A crash while writing line 5: a torn write, not damage.
    let text = std::fs::read_to_string(l.path()).unwrap();
    std::fs::write(l.path(), format!("{text}{{\"torn")).unwrap();
    l.append(&mut record("job", 5)).unwrap();
    assert_eq!(
        std::fs::read(tmp.path().join("ledger.jsonl.torn-line5")).unwrap(),
        b"{\"torn"
    );
    let recs: Vec<Record> = l.records().unwrap().map(Result::unwrap).collect();
    assert!(
        recs[4].reasons[0].contains("torn by an interrupted write"),
        "{:?}",
        recs[4].reasons
    );
    let rep = l.verify().unwrap();
    assert!(rep.problem.is_none());
    assert_eq!(rep.repairs.len(), 2);
}

/// Records written completely, then lost from the end of the file (the head
/// file still names the last one), are read back from a copy such as the
/// evidence store, but only when they are the records that were lost.
#[test]
fn records_lost_after_they_were_written_are_put_back_from_a_copy_that_checks_out() {
    use std::sync::{Arc, Mutex};
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("ledger.jsonl");
    // Records 1 and 2 were written before signing was turned on.
    let plain = Ledger::new(&path);
    for i in 1..=2 {
        plain.append(&mut record("job", i)).unwrap();
    }
    let signed = Ledger::new(&path).signed_by(key.clone());
    for i in 3..=4 {
        signed.append(&mut record("job", i)).unwrap();
    }
    let good = lines(&signed);
    let text = std::fs::read_to_string(&path).unwrap();
    let head = std::fs::read_to_string(tmp.path().join("ledger.jsonl.head")).unwrap();
    // Damage: lines 3 and 4 are gone but for a piece of line 3.
    let line3_start = good[..2].iter().map(|l| l.len() + 1).sum::<usize>();
    let damaged = &text[..line3_start + 25];

    // Offers that are not the records lost: a changed record; a fork of the
    // same ledger, signed with the same key; the lost records without their
    // signatures; too few records.
    let mut changed = good[2..].to_vec();
    changed[1] = changed[1].replace("id-job-4", "id-job-X");
    let fork = {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("l"), format!("{}\n{}\n", good[0], good[1])).unwrap();
        let o = Ledger::new(t.path().join("l")).signed_by(key.clone());
        for i in 3..=4 {
            o.append(&mut record("fork", i)).unwrap();
        }
        lines(&o)[2..].to_vec()
    };
    let unsigned = {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("l"), format!("{}\n{}\n", good[0], good[1])).unwrap();
        let o = Ledger::new(t.path().join("l"));
        for i in 3..=4 {
            o.append(&mut record("job", i)).unwrap();
        }
        lines(&o)[2..].to_vec()
    };
    let asked = Arc::new(Mutex::new(Vec::new()));
    for offered in [changed, fork, unsigned, good[2..3].to_vec()] {
        std::fs::write(&path, damaged).unwrap();
        std::fs::write(tmp.path().join("ledger.jsonl.head"), &head).unwrap();
        let (a, o) = (asked.clone(), offered.clone());
        let l = Ledger::new(&path)
            .signed_by(key.clone())
            .recovering_from(Arc::new(move |lost: &LostRecords| {
                a.lock().unwrap().push(lost.clone());
                o.clone()
            }));
        l.append(&mut record("job", 5)).unwrap();
        let recs: Vec<Record> = l.records().unwrap().map(Result::unwrap).collect();
        assert_eq!(recs.len(), 4, "lines 1, 2, the repair note, the new record");
        assert_eq!(recs[2].job, LEDGER_JOB);
        assert!(
            recs[2].reasons[0].contains("records 3 to 4"),
            "{:?}",
            recs[2].reasons
        );
        for f in std::fs::read_dir(tmp.path()).unwrap().flatten() {
            if f.file_name().to_string_lossy().contains("torn-line") {
                std::fs::remove_file(f.path()).unwrap();
            }
        }
    }
    assert_eq!(
        asked.lock().unwrap()[0],
        LostRecords {
            chain: Some(record_hash_of(&good[0])),
            from: 3,
            to: 4,
            head_hash: record_hash_of(&good[3]),
        },
        "asked for seq 3 to 4 of this chain, ending at the head file's hash"
    );

    // The records that were lost: put back, no repair note, the chain goes on.
    std::fs::write(&path, damaged).unwrap();
    std::fs::write(tmp.path().join("ledger.jsonl.head"), &head).unwrap();
    let copy = good[2..].to_vec();
    let l = Ledger::new(&path)
        .signed_by(key.clone())
        .recovering_from(Arc::new(move |_: &LostRecords| copy.clone()));
    let mut next = record("job", 5);
    l.append(&mut next).unwrap();
    let now = lines(&l);
    assert_eq!(now[..4], good[..], "the lost records are back as they were");
    assert_eq!(now.len(), 5);
    assert_eq!(next.seq, 5);
    let rep = l.verify().unwrap();
    assert!(rep.problem.is_none(), "{:?}", rep.problem);
    assert!(rep.repairs.is_empty());
    assert_eq!(
        std::fs::read(tmp.path().join("ledger.jsonl.torn-line3")).unwrap(),
        damaged.as_bytes()[line3_start..].to_vec(),
        "the damaged bytes are kept aside"
    );
}

/// Whole records gone from the end (the file cut at a line boundary, or put
/// back from an older copy) are noted too, not written over in silence.
#[test]
fn whole_records_gone_from_the_end_are_noted_before_the_next_append() {
    let tmp = tempfile::tempdir().unwrap();
    let l = ledger_with(tmp.path(), 4);
    let good = lines(&l);
    std::fs::write(l.path(), format!("{}\n{}\n", good[0], good[1])).unwrap();
    l.append(&mut record("job", 5)).unwrap();
    let recs: Vec<Record> = l.records().unwrap().map(Result::unwrap).collect();
    assert_eq!(recs.len(), 4);
    assert_eq!(recs[2].job, LEDGER_JOB);
    assert!(
        recs[2].reasons[0].contains("records 3 to 4, which the head file says were written"),
        "{:?}",
        recs[2].reasons
    );
    let rep = l.verify().unwrap();
    assert!(rep.problem.is_none(), "{:?}", rep.problem);
    assert_eq!(rep.repairs.len(), 1);
}

fn record_hash_of(line: &str) -> String {
    serde_json::from_str::<serde_json::Value>(line).unwrap()["hash"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_torn_line_that_is_the_whole_file_is_kept_too() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("ledger.jsonl");
    std::fs::write(&path, b"{\"format\":\"restore-ver").unwrap();
    let l = Ledger::new(&path);
    l.append(&mut record("job", 1)).unwrap();
    let recs: Vec<Record> = l.records().unwrap().map(Result::unwrap).collect();
    assert_eq!(recs.len(), 2);
    assert_eq!((recs[0].seq, recs[0].job.as_str()), (1, LEDGER_JOB));
    assert_eq!(
        std::fs::read(tmp.path().join("ledger.jsonl.torn-line1")).unwrap(),
        b"{\"format\":\"restore-ver"
    );
    assert!(l.verify().unwrap().problem.is_none());
}

#[test]
fn concurrent_appenders_keep_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("ledger.jsonl");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                // A Ledger per thread, as separate processes would have.
                let l = Ledger::new(path);
                for i in 0..25 {
                    l.append(&mut record(&format!("job{t}"), i)).unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let rep = Ledger::new(path).verify().unwrap();
    assert!(rep.problem.is_none(), "{:?}", rep.problem);
    assert_eq!(rep.records, 100);
}

#[test]
fn hash_covers_fields_added_later() {
    // A field this version does not know is still covered by the hash.
    let tmp = tempfile::tempdir().unwrap();
    let l = ledger_with(tmp.path(), 1);
    let mut v: serde_json::Value = serde_json::from_str(&lines(&l)[0]).unwrap();
    v["future_field"] = serde_json::json!(1);
    write(&l, &[canonical(&v)]);
    assert_eq!(first_bad(&l), Some(1));
    // Re-hashing the forged last record passes the chain, but not the head file.
    v["hash"] = serde_json::json!(record_hash(&v));
    write(&l, &[canonical(&v)]);
    let rep = l.verify().unwrap();
    assert!(
        rep.problem
            .unwrap()
            .what
            .contains("the end of the ledger was replaced")
    );
    std::fs::remove_file(tmp.path().join("ledger.jsonl.head")).unwrap();
    assert!(
        first_bad(&l).is_none(),
        "without the head file, only signatures can catch this"
    );
}

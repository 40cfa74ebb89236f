//! The ledger's hash chain catches every single-record edit, deletion, insertion
//! and swap, and stays intact under concurrent appenders.

use std::path::Path;

use chrono::{DateTime, FixedOffset};
use verifier::evidence::signing;
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
        key: None,
        prev_hash: String::new(),
        hash: String::new(),
        signature: None,
        signature_previous: None,
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
    // Records 1 and 2 were written before signing was turned on; signing
    // begins with a key record (3), then records 4 and 5.
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
    assert_eq!(good.len(), 5);
    // Damage: lines 3 to 5 are gone but for a piece of line 3.
    let line3_start = good[..2].iter().map(|l| l.len() + 1).sum::<usize>();
    let damaged = &text[..line3_start + 25];

    // Offers that are not the records lost: a changed record; a fork of the
    // same ledger, signed with the same key; the lost records without their
    // signatures; too few records.
    let mut changed = good[2..].to_vec();
    changed[2] = changed[2].replace("id-job-4", "id-job-X");
    assert_ne!(changed[2], good[4]);
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
        // What is left ends unsigned where the head file names a signed
        // record: no key record may vouch for it, so nothing is appended
        // (the drill's record is kept aside by its caller).
        let err = l.append(&mut record("job", 5)).unwrap_err();
        assert!(err.to_string().contains("cut back"), "{err}");
        assert_eq!(lines(&l), good[..2].to_vec());
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
            to: 5,
            head_hash: record_hash_of(&good[4]),
        },
        "asked for seq 3 to 5 of this chain, ending at the head file's hash"
    );

    // The records that were lost: put back, no repair note, the chain goes on.
    std::fs::write(&path, damaged).unwrap();
    std::fs::write(tmp.path().join("ledger.jsonl.head"), &head).unwrap();
    let copy = good[2..].to_vec();
    // Without a copy to read back from, what is left is refused; with one,
    // the start checks wait for the append to read it back.
    assert!(matches!(
        Ledger::new(&path)
            .signed_by(key.clone())
            .signing_tail()
            .unwrap(),
        SigningTail::Replaced { seq: 5, .. }
    ));
    let l = Ledger::new(&path)
        .signed_by(key.clone())
        .recovering_from(Arc::new(move |_: &LostRecords| copy.clone()));
    assert_eq!(l.signing_tail().unwrap(), SigningTail::Begins);
    let mut next = record("job", 5);
    l.append(&mut next).unwrap();
    let now = lines(&l);
    assert_eq!(now[..5], good[..], "the lost records are back as they were");
    assert_eq!(now.len(), 6);
    assert_eq!(next.seq, 6);
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

/// A record line chained after `prev` (its hash), signed by `sign` and, as a
/// key change, by `sign_previous`: how a forger with some keys writes one.
fn forged_line(
    mut v: serde_json::Value,
    seq: u64,
    prev: &str,
    sign: Option<&ed25519_dalek::SigningKey>,
    sign_previous: Option<&ed25519_dalek::SigningKey>,
) -> String {
    v["seq"] = seq.into();
    v["prev_hash"] = prev.into();
    for k in ["hash", "signature", "signature_previous"] {
        v.as_object_mut().unwrap().remove(k);
    }
    let hash = record_hash(&v);
    v["hash"] = hash.clone().into();
    if let Some(k) = sign {
        v["signature"] = signing::sign_hash(k, &hash).into();
    }
    if let Some(k) = sign_previous {
        v["signature_previous"] = signing::sign_hash(k, &hash).into();
    }
    canonical(&v)
}

/// `n` records of `job` chained from the start, signed by `key` with no key
/// record (as agents wrote them before key records), or unsigned.
fn plain_chain(job: &str, n: u64, key: Option<&ed25519_dalek::SigningKey>) -> Vec<String> {
    let mut prev = GENESIS.to_string();
    let mut out = Vec::new();
    for i in 1..=n {
        let line = forged_line(value(&record(job, i)), i, &prev, key, None);
        prev = record_hash_of(&line);
        out.push(line);
    }
    out
}

fn value(r: &Record) -> serde_json::Value {
    serde_json::to_value(r).unwrap()
}

/// A key record naming `key` (and `previous`), before it is chained.
fn key_record_value(
    key: &ed25519_dalek::SigningKey,
    previous: Option<String>,
) -> serde_json::Value {
    let mut r = record(KEY_JOB, 0);
    r.result = Verdict::Key;
    r.key = Some(KeySection {
        public_key: signing::public_pem(&key.verifying_key()),
        fingerprint: signing::fingerprint(&key.verifying_key()),
        previous,
    });
    value(&r)
}

fn keys(
    n: u8,
) -> (
    ed25519_dalek::SigningKey,
    ed25519_dalek::VerifyingKey,
    String,
) {
    let k = ed25519_dalek::SigningKey::from_bytes(&[n; 32]);
    let v = k.verifying_key();
    let fp = signing::fingerprint(&v);
    (k, v, fp)
}

fn range(
    from: u64,
    to: u64,
    key: Option<&str>,
    key_record: Option<u64>,
    trusted: bool,
) -> SignedRange {
    SignedRange {
        from,
        to,
        signed: key.is_some() || key_record.is_some() || trusted,
        key: key.map(String::from),
        key_record,
        trusted,
    }
}

/// The new user's sequence: unsigned trial drills, then signing switched
/// on, then the key changed. Every step leaves a ledger that verifies, with
/// the unsigned and signed ranges told apart.
#[test]
fn signing_begins_on_a_live_ledger_and_the_key_can_change() {
    let (k1, p1, fp1) = keys(1);
    let (k2, p2, fp2) = keys(2);
    let (_, p3, _) = keys(3);
    let tmp = tempfile::tempdir().unwrap();
    let l = ledger_with(tmp.path(), 3);
    assert_eq!(l.signing_tail().unwrap(), SigningTail::Continues);

    // Signing starts: a key record (seq 4) signed by the new key goes first.
    let signed = Ledger::new(l.path()).signed_by(k1.clone());
    assert_eq!(signed.signing_tail().unwrap(), SigningTail::Begins);
    for i in 4..=5 {
        signed.append(&mut record("job", i)).unwrap();
    }
    let recs: Vec<Record> = l.records().unwrap().map(Result::unwrap).collect();
    assert_eq!(recs.len(), 6);
    assert_eq!(
        (recs[3].job.as_str(), recs[3].result),
        (KEY_JOB, Verdict::Key)
    );
    let key = recs[3].key.as_ref().unwrap();
    assert_eq!(
        (key.fingerprint.as_str(), key.previous.as_deref()),
        (fp1.as_str(), None)
    );
    assert_eq!(signing::public_from_pem(&key.public_key), Some(p1));
    assert!(recs[3].signature_previous.is_none());
    assert_eq!(signed.signing_tail().unwrap(), SigningTail::Continues);
    let rep = l.verify_with(&[p1]).unwrap();
    assert!(rep.problem.is_none(), "{:?}", rep.problem);
    assert_eq!(
        rep.ranges,
        vec![
            range(1, 3, None, None, false),
            range(4, 6, Some(&fp1), Some(4), true)
        ]
    );
    assert_eq!(rep.signed, 3);

    // The key changes: refused without the old key, which must sign too.
    let new_only = Ledger::new(l.path()).signed_by(k2.clone());
    assert_eq!(
        new_only.signing_tail().unwrap(),
        SigningTail::UnknownKey { seq: 6 }
    );
    let before = std::fs::read(l.path()).unwrap();
    let err = new_only.append(&mut record("job", 9)).unwrap_err();
    assert!(
        err.to_string().contains("previous_signing_key_file"),
        "{err}"
    );
    assert_eq!(std::fs::read(l.path()).unwrap(), before, "nothing written");
    let rotated = Ledger::new(l.path())
        .signed_by(k2.clone())
        .previously_signed_by(k1.clone());
    assert_eq!(rotated.signing_tail().unwrap(), SigningTail::Rotates);
    for i in 6..=7 {
        rotated.append(&mut record("job", i)).unwrap();
    }
    let recs: Vec<Record> = l.records().unwrap().map(Result::unwrap).collect();
    assert_eq!(recs[6].job, KEY_JOB);
    assert_eq!(
        recs[6].key.as_ref().unwrap().previous.as_deref(),
        Some(fp1.as_str())
    );
    assert!(recs[6].signature_previous.is_some());
    // Once the new key signs, the old one is not needed any more.
    assert_eq!(
        Ledger::new(l.path())
            .signed_by(k2.clone())
            .signing_tail()
            .unwrap(),
        SigningTail::Continues
    );

    // Either key vouches for the whole ledger; no key checks the chain and
    // the signatures by the keys the key records name.
    let want = |trusted| {
        vec![
            range(1, 3, None, None, false),
            range(4, 6, Some(&fp1), Some(4), trusted),
            range(7, 9, Some(&fp2), Some(7), trusted),
        ]
    };
    for given in [vec![p2], vec![p1], vec![p3, p2]] {
        let rep = l.verify_with(&given).unwrap();
        assert!(rep.problem.is_none(), "{:?}", rep.problem);
        assert_eq!(rep.ranges, want(true));
        assert_eq!((rep.records, rep.signed), (9, 6));
    }
    let rep = l.verify_with(&[]).unwrap();
    assert!(rep.problem.is_none(), "{:?}", rep.problem);
    assert_eq!(rep.ranges, want(false));
    // A key that signed nothing here vouches for nothing.
    let rep = l.verify_with(&[p3]).unwrap();
    let p = rep.problem.expect("no given key signed");
    assert!(
        p.what.contains("none of the given public keys"),
        "{}",
        p.what
    );

    // Signing cannot be switched off without breaking the chain: refused.
    let unsigned = Ledger::new(l.path());
    assert_eq!(
        unsigned.signing_tail().unwrap(),
        SigningTail::NotSigning { seq: 9 }
    );
    let err = unsigned.append(&mut record("job", 10)).unwrap_err();
    assert!(err.to_string().contains("signing_key_file"), "{err}");
}

/// Each forgery of a signed ledger is BROKEN at the line it starts.
#[test]
fn forged_signing_is_broken() {
    let (k1, p1, _) = keys(1);
    let (k2, p2, fp2) = keys(2);
    let (evil, _, _) = keys(9);
    let tmp = tempfile::tempdir().unwrap();
    let l = ledger_with(tmp.path(), 2);
    Ledger::new(l.path())
        .signed_by(k1.clone())
        .append(&mut record("job", 3))
        .unwrap();
    Ledger::new(l.path())
        .signed_by(k2.clone())
        .previously_signed_by(k1.clone())
        .append(&mut record("job", 4))
        .unwrap();
    // 1, 2 unsigned; 3 key k1; 4 signed k1; 5 key k2 (and k1); 6 signed k2.
    let good = lines(&l);
    assert_eq!(good.len(), 6);
    std::fs::remove_file(tmp.path().join("ledger.jsonl.head")).unwrap();
    let hash = |i: usize| record_hash_of(&good[i]);
    let check = |forged: Vec<String>, given: &[ed25519_dalek::VerifyingKey]| {
        write(&l, &forged);
        let rep = l.verify_with(given).unwrap();
        write(&l, &good);
        rep.problem.map(|p| (p.line, p.what))
    };
    assert_eq!(check(good.clone(), &[p2]), None);
    // BROKEN at `line`, saying `says`, with the current public key.
    let broken = |forged: Vec<String>, line: u64, says: &str| {
        let (at, what) = check(forged, &[p2]).unwrap_or_else(|| panic!("not broken: {says}"));
        assert_eq!(at, line, "{what}");
        assert!(what.contains(says), "{what}");
    };

    // An unsigned record after signing began, at the end or re-chained in.
    let mut end = good.clone();
    end.push(forged_line(
        value(&record("job", 7)),
        7,
        &hash(5),
        None,
        None,
    ));
    broken(end, 7, "not signed, but signing began at seq 5");
    let mut mid = good[..4].to_vec();
    mid.push(forged_line(
        value(&record("job", 5)),
        5,
        &hash(3),
        None,
        None,
    ));
    broken(mid, 5, "not signed, but signing began at seq 3");

    // A key record not signed by the old key (the forger's key signs it
    // twice), or with no old signature at all.
    for prev in [Some(&evil), None] {
        let mut f = good.clone();
        f.push(forged_line(
            key_record_value(&evil, Some(fp2.clone())),
            7,
            &hash(5),
            Some(&evil),
            prev,
        ));
        let (line, what) = check(f, &[p2]).expect("key change without the old key");
        assert_eq!(line, 7);
        assert!(
            what.contains("without the previous key's signature"),
            "{what}"
        );
    }

    // A key change with no key record: a record signed by another key.
    let mut f = good.clone();
    f.push(forged_line(
        value(&record("job", 7)),
        7,
        &hash(5),
        Some(&evil),
        None,
    ));
    broken(f, 7, "signature does not verify with key");

    // A swapped key: the ledger signed over from the key record on by the
    // forger's own key, re-chained throughout. The chain holds; no given key
    // signed it.
    let mut f = good[..2].to_vec();
    let mut prev = hash(1);
    f.push(forged_line(
        key_record_value(&evil, None),
        3,
        &prev,
        Some(&evil),
        None,
    ));
    prev = record_hash_of(&f[2]);
    f.push(forged_line(
        value(&record("job", 4)),
        4,
        &prev,
        Some(&evil),
        None,
    ));
    assert_eq!(check(f.clone(), &[]), None, "a chain of its own");
    let (line, what) = check(f, &[p1, p2]).expect("swapped key");
    assert_eq!(line, 3);
    assert!(what.contains("none of the given public keys"), "{what}");

    // A key record whose fingerprint is not its key's.
    let mut v = key_record_value(&evil, Some(fp2.clone()));
    v["key"]["fingerprint"] = fp2.clone().into();
    let mut f = good.clone();
    f.push(forged_line(v, 7, &hash(5), Some(&evil), Some(&k2)));
    let (_, what) = check(f, &[p2]).expect("wrong fingerprint");
    assert!(what.contains("fingerprint"), "{what}");

    // signature_previous (outside the hash) added to a drill's record.
    let mut v: serde_json::Value = serde_json::from_str(&good[5]).unwrap();
    v["signature_previous"] = signing::sign_hash(&evil, v["hash"].as_str().unwrap()).into();
    let mut f = good.clone();
    f[5] = canonical(&v);
    broken(f, 6, "only key records");

    // A key section on a drill's record.
    let mut v = value(&record("job", 7));
    v["key"] = serde_json::to_value(KeySection {
        public_key: signing::public_pem(&evil.verifying_key()),
        fingerprint: signing::fingerprint(&evil.verifying_key()),
        previous: Some(fp2.clone()),
    })
    .unwrap();
    let mut f = good.clone();
    f.push(forged_line(v, 7, &hash(5), Some(&evil), Some(&k2)));
    let (_, what) = check(f, &[p2]).expect("key section on a drill");
    assert!(what.contains("only key records"), "{what}");
}

/// Ledgers signed from their first record by agents that wrote no key
/// record still verify with their key, and can change keys.
#[test]
fn ledgers_signed_before_key_records_verify_and_can_change_keys() {
    let (k1, p1, fp1) = keys(1);
    let (k2, p2, fp2) = keys(2);
    let (_, p3, _) = keys(3);
    let tmp = tempfile::tempdir().unwrap();
    let l = Ledger::new(tmp.path().join("ledger.jsonl"));
    let old = plain_chain("job", 3, Some(&k1));
    write(&l, &old);
    let rep = l.verify_with(&[p1]).unwrap();
    assert!(rep.problem.is_none(), "{:?}", rep.problem);
    assert_eq!(rep.ranges, vec![range(1, 3, Some(&fp1), None, true)]);
    assert_eq!(rep.signed, 3);
    let rep = l.verify_with(&[]).unwrap();
    assert!(rep.problem.is_none());
    assert_eq!(
        rep.ranges,
        vec![SignedRange {
            from: 1,
            to: 3,
            signed: true,
            key: None,
            key_record: None,
            trusted: false
        }]
    );
    assert!(l.verify_with(&[p3]).unwrap().problem.is_some());

    // The same key goes on without a key record; a new one gets one.
    Ledger::new(l.path())
        .signed_by(k1.clone())
        .append(&mut record("job", 4))
        .unwrap();
    assert_eq!(lines(&l).len(), 4);
    Ledger::new(l.path())
        .signed_by(k2.clone())
        .previously_signed_by(k1.clone())
        .append(&mut record("job", 5))
        .unwrap();
    for given in [&[p1][..], &[p2][..], &[][..]] {
        let rep = l.verify_with(given).unwrap();
        assert!(rep.problem.is_none(), "{:?}", rep.problem);
        assert_eq!(rep.ranges.len(), 2);
        assert_eq!(
            rep.ranges[1],
            range(5, 6, Some(&fp2), Some(5), !given.is_empty())
        );
    }
    // The first key is known by the key given, or not at all: the later key
    // record vouches for what it continues.
    assert_eq!(
        l.verify_with(&[p1]).unwrap().ranges[0].key.as_deref(),
        Some(fp1.as_str())
    );
    assert_eq!(l.verify_with(&[p2]).unwrap().ranges[0].key, None);
    assert!(l.verify_with(&[p2]).unwrap().ranges[0].trusted);
}

/// A key record never vouches for what replaced a signed ledger: records
/// cut from the end are noted before the key record goes on, and a ledger
/// rewritten unsigned in place is refused.
#[test]
fn a_key_record_never_vouches_for_a_cut_or_replaced_ledger() {
    let (k1, p1, _) = keys(1);
    let tmp = tempfile::tempdir().unwrap();
    let l = ledger_with(tmp.path(), 3);
    let signed = Ledger::new(l.path()).signed_by(k1.clone());
    for i in 4..=5 {
        signed.append(&mut record("job", i)).unwrap();
    }
    let good = lines(&l);
    assert_eq!(good.len(), 6, "3 unsigned, the key record, 2 signed");

    // Cut back to the unsigned records: refused, at the agent's start as at
    // an append, and nothing is written.
    write(&l, &good[..3]);
    let err = signed.begin_signing(&record("note", 0)).unwrap_err();
    assert!(err.to_string().contains("cut back"), "{err}");
    let err = signed.append(&mut record("job", 6)).unwrap_err();
    assert!(err.to_string().contains("cut back"), "{err}");
    assert_eq!(lines(&l), good[..3].to_vec());
    // The records come back: it goes on.
    write(&l, &good);
    signed.append(&mut record("job", 6)).unwrap();
    assert!(l.verify_with(&[p1]).unwrap().problem.is_none());

    // Rewritten unsigned in place (the head file still names the key):
    // refused, and evidence verify says so.
    let tmp = tempfile::tempdir().unwrap();
    let l = ledger_with(tmp.path(), 1);
    let signed = Ledger::new(l.path()).signed_by(k1.clone());
    signed.append(&mut record("job", 2)).unwrap();
    let head = std::fs::read_to_string(tmp.path().join("ledger.jsonl.head")).unwrap();
    assert!(
        head.trim_end().ends_with(&signing::fingerprint(&p1)),
        "{head}"
    );
    let fake = plain_chain("fake", 4, None);
    write(&l, &fake);
    assert!(matches!(
        signed.signing_tail().unwrap(),
        SigningTail::Replaced { seq: 3, .. }
    ));
    let err = signed.append(&mut record("job", 5)).unwrap_err();
    assert!(err.to_string().contains("replaced, edited"), "{err}");
    assert_eq!(lines(&l), fake, "nothing appended");
    let err = Ledger::new(l.path())
        .append(&mut record("job", 5))
        .unwrap_err();
    assert!(err.to_string().contains("replaced, edited"), "{err}");

    // The signature taken off the last record: the head file names its key.
    let tmp = tempfile::tempdir().unwrap();
    let l = Ledger::new(tmp.path().join("ledger.jsonl")).signed_by(k1.clone());
    for i in 1..=2 {
        l.append(&mut record("job", i)).unwrap();
    }
    let mut now = lines(&l);
    let mut v: serde_json::Value = serde_json::from_str(&now[2]).unwrap();
    v.as_object_mut().unwrap().remove("signature");
    now[2] = canonical(&v);
    write(&l, &now);
    let p = l.verify_with(&[]).unwrap().problem.expect("broken");
    assert_eq!(p.line, 3);
    assert!(
        p.what.contains("not signed, but signing began at seq 1"),
        "{}",
        p.what
    );

    // A ledger signed before key records, every signature taken off: the
    // chain holds, but the head file says its last record was signed.
    let tmp = tempfile::tempdir().unwrap();
    let l = Ledger::new(tmp.path().join("ledger.jsonl"));
    let old = plain_chain("job", 2, Some(&k1));
    write(&l, &old);
    Ledger::new(l.path())
        .signed_by(k1.clone())
        .append(&mut record("job", 3))
        .unwrap();
    assert!(l.verify_with(&[p1]).unwrap().problem.is_none());
    let stripped: Vec<String> = lines(&l)
        .iter()
        .map(|line| {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            v.as_object_mut().unwrap().remove("signature");
            canonical(&v)
        })
        .collect();
    write(&l, &stripped);
    let p = l.verify_with(&[]).unwrap().problem.expect("broken");
    assert_eq!(p.line, 3);
    assert!(p.what.contains("signatures were removed"), "{}", p.what);
}

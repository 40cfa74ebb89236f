//! Drift: is a difference between the live source and the restore a change
//! made after the backup read the file (tolerated, reported), or damage (the
//! drill fails)? One rule, decided per file from the best evidence of when the
//! backup read that file (docs/design.md, "Drift").
//!
//! Where the backup records each file's modification time (tar members, restic
//! and borg metadata, a copy made with preserved times), the restored file
//! carries it, and the source's own mtime is compared with it:
//! - a different, later source mtime: the file was changed after the backup
//!   read it (drift);
//! - the same mtime with different bytes: corruption;
//! - a recorded mtime later than the source's: suspicious, a failure, unless
//!   the source's inode changed after the whole backup was taken (a file put
//!   back with an older mtime by `cp -a`, `rsync` or `tar -x`).
//!
//! Inode changes (mode) are judged by the source's ctime against the time the
//! backup had read every file. Only where nothing per file exists does one
//! backup time decide for content too. Times compare at the precision the
//! backup recorded: an archive that keeps whole seconds is compared with the
//! source's mtime in whole seconds, never rounded the other way.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a compare knows about when the backup read the source's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drift {
    /// By this time the backup had read every file: the archive's mtime, the
    /// snapshot time, the newest change in a copy. Source inodes changed after
    /// it changed after the backup.
    pub backup_time: SystemTime,
    /// The restored files carry the mtime the backup recorded for each.
    pub per_file_mtime: bool,
    /// The earliest the backup could have read a file, where the tool records
    /// it (a restic or borg snapshot's start): a source version older than
    /// this must be in the backup, so a difference is not drift.
    pub not_before: Option<SystemTime>,
}

/// What a difference means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// The source changed after the backup read it: reported, not a failure.
    Drift,
    /// The backup's copy is wrong.
    Corrupt,
    /// The backup holds a version newer than the source's, which nothing but
    /// damage (or a source rolled back) explains.
    NewerInBackup,
    /// The source's version is older than the backup's start, yet the backup
    /// holds another: it should have held this one.
    OlderThanBackup,
}

/// Whether `t` is after `since`, at full precision.
fn after(t: SystemTime, since: SystemTime) -> bool {
    t > since
}

/// `source` seen at the precision of `recorded`: whole seconds when the backup
/// recorded no sub-second part.
fn at_precision_of(source: SystemTime, recorded: SystemTime) -> SystemTime {
    let r = recorded.duration_since(UNIX_EPOCH).unwrap_or_default();
    if r.subsec_nanos() != 0 {
        return source;
    }
    match source.duration_since(UNIX_EPOCH) {
        Ok(s) => UNIX_EPOCH + Duration::from_secs(s.as_secs()),
        Err(_) => source,
    }
}

/// A difference in what a file holds (bytes, size, type, link target).
/// `drift` is `None` for an exact compare (a manifest, no backup time).
pub fn content_change(
    drift: Option<Drift>,
    source_mtime: SystemTime,
    source_ctime: SystemTime,
    recorded_mtime: SystemTime,
) -> Judgement {
    let Some(d) = drift else {
        return Judgement::Corrupt;
    };
    if !d.per_file_mtime {
        return if after(source_mtime, d.backup_time) {
            Judgement::Drift
        } else {
            Judgement::Corrupt
        };
    }
    let source = at_precision_of(source_mtime, recorded_mtime);
    match source.cmp(&recorded_mtime) {
        std::cmp::Ordering::Equal => Judgement::Corrupt,
        std::cmp::Ordering::Greater => match d.not_before {
            Some(start) if source_mtime <= start => Judgement::OlderThanBackup,
            _ => Judgement::Drift,
        },
        std::cmp::Ordering::Less if after(source_ctime, d.backup_time) => Judgement::Drift,
        std::cmp::Ordering::Less => Judgement::NewerInBackup,
    }
}

/// A difference in the inode only (mode): the source's ctime says whether it
/// was changed after the backup.
pub fn inode_change(drift: Option<Drift>, source_ctime: SystemTime) -> Judgement {
    match drift {
        Some(d) if after(source_ctime, d.backup_time) => Judgement::Drift,
        _ => Judgement::Corrupt,
    }
}

/// The default `live_tolerance`: the share of a table's live rows a restore
/// may lack and still count as drift (rows written after the dump).
pub const LIVE_TOLERANCE_PERCENT: f64 = 10.0;

/// A table's restored row count against the live database's count now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    Same,
    /// Rows written or deleted after the dump, within the tolerance: reported.
    Drift,
    /// Fewer rows restored than live beyond the tolerance (or none at all):
    /// the dump lacks data, a failure.
    Short,
}

/// The rule for `live` row counts: more rows restored than live now is
/// drift (rows deleted since the dump); fewer is drift only within
/// `tolerance_percent` of the live count, and none restored of a table that
/// has rows is drift only at 100% (a table that fills and empties, a queue).
pub fn live_rows(live: u64, restored: u64, tolerance_percent: f64) -> Rows {
    if restored == live {
        Rows::Same
    } else if restored > live || tolerance_percent >= 100.0 {
        Rows::Drift
    } else if restored == 0 {
        Rows::Short
    } else if ((live - restored) as f64) <= live as f64 * tolerance_percent / 100.0 {
        Rows::Drift
    } else {
        Rows::Short
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Judgement::{Corrupt, NewerInBackup};
    const DRIFT: Judgement = Judgement::Drift;
    use rstest::rstest;

    fn t(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    /// The backup had read every file by t(1000).
    fn evidence(per_file_mtime: bool) -> Option<Drift> {
        Some(Drift {
            backup_time: t(1000, 0),
            per_file_mtime,
            not_before: None,
        })
    }

    // A snapshot that began at t(900): a source version from before then must
    // be in it; one from after is drift.
    #[rstest]
    #[case::changed_before_the_snapshot_began(t(850, 0), OLDER)]
    #[case::changed_while_it_ran(t(950, 0), DRIFT)]
    fn snapshot_start(#[case] src_mtime: SystemTime, #[case] want: Judgement) {
        let d = Some(Drift {
            backup_time: t(900, 0),
            per_file_mtime: true,
            not_before: Some(t(900, 0)),
        });
        assert_eq!(content_change(d, src_mtime, src_mtime, t(100, 0)), want);
    }
    const OLDER: Judgement = Judgement::OlderThanBackup;
    const PER_FILE: bool = true;
    const ONE_TIME: bool = false;
    const EXACT: Option<bool> = None;

    #[rstest]
    // Rot in a file written in the backup's last second: the same mtime.
    #[case::same_mtime_is_corruption(
        Some(PER_FILE),
        t(999, 700),
        t(999, 700),
        t(999, 700),
        Corrupt
    )]
    #[case::same_second_in_a_whole_second_archive(
        Some(PER_FILE),
        t(999, 700),
        t(999, 700),
        t(999, 0),
        Corrupt
    )]
    #[case::source_written_after_the_backup_read_it(
        Some(PER_FILE),
        t(1200, 0),
        t(1200, 0),
        t(999, 0),
        DRIFT
    )]
    #[case::later_within_the_backup_window(
        Some(PER_FILE),
        t(999, 900),
        t(999, 900),
        t(999, 100),
        DRIFT
    )]
    #[case::backup_newer_than_source(
        Some(PER_FILE),
        t(500, 0),
        t(600, 0),
        t(900, 0),
        NewerInBackup
    )]
    #[case::source_put_back_with_older_mtime(
        Some(PER_FILE),
        t(500, 0),
        t(1100, 0),
        t(900, 0),
        DRIFT
    )]
    // Old rule only where nothing per file exists.
    #[case::one_time_before(Some(ONE_TIME), t(999, 999_999_999), t(999, 0), t(0, 0), Corrupt)]
    #[case::one_time_after(Some(ONE_TIME), t(1000, 1), t(1000, 1), t(0, 0), DRIFT)]
    #[case::exact_compare(EXACT, t(5000, 0), t(5000, 0), t(1, 0), Corrupt)]
    fn content_changes(
        #[case] per_file: Option<bool>,
        #[case] src_mtime: SystemTime,
        #[case] src_ctime: SystemTime,
        #[case] recorded: SystemTime,
        #[case] want: Judgement,
    ) {
        assert_eq!(
            content_change(per_file.and_then(evidence), src_mtime, src_ctime, recorded),
            want
        );
    }

    #[rstest]
    // A tree deployed with `cp -a` before the backup: its ctime is before it.
    #[case::changed_before_backup(Some(PER_FILE), t(999, 999_999_999), Corrupt)]
    #[case::changed_at_full_precision_after(Some(PER_FILE), t(1000, 1), DRIFT)]
    #[case::one_time_after(Some(ONE_TIME), t(2000, 0), DRIFT)]
    #[case::exact(EXACT, t(2000, 0), Corrupt)]
    fn inode_changes(
        #[case] per_file: Option<bool>,
        #[case] ctime: SystemTime,
        #[case] want: Judgement,
    ) {
        assert_eq!(inode_change(per_file.and_then(evidence), ctime), want);
    }

    #[test]
    fn live_row_counts() {
        use super::{Rows, live_rows};
        let table = [
            // (live, restored, tolerance %, judgement)
            (2000, 2000, 10.0, Rows::Same),
            (0, 0, 10.0, Rows::Same),
            (1990, 2000, 10.0, Rows::Drift),
            (2000, 1990, 10.0, Rows::Drift),
            (2000, 1800, 10.0, Rows::Drift),
            (2000, 1799, 10.0, Rows::Short),
            (2000, 1000, 10.0, Rows::Short),
            (2000, 1000, 50.0, Rows::Drift),
            (2000, 0, 99.0, Rows::Short),
            (3, 0, 100.0, Rows::Drift),
            (1, 0, 10.0, Rows::Short),
            (100, 99, 0.0, Rows::Short),
            (0, 5, 0.0, Rows::Drift),
        ];
        for (live, restored, tol, want) in table {
            assert_eq!(
                live_rows(live, restored, tol),
                want,
                "{live} {restored} {tol}"
            );
        }
    }
}

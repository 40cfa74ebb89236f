//! The line of a restore tool's output that names what went wrong.
//!
//! A tool says the root cause once and then a lot more: restic retries, then
//! complains about every file it could not finish (`UtimesNano`, `Lchown`)
//! and counts its errors; borg prints a Python traceback and its platform;
//! GNU tar says it is exiting. Each tool has an ordered table of patterns:
//! the first pattern that matches a line wins, and of the lines it matches
//! the first (the cause comes before its consequences). Noise lines never
//! match. This is for the reason only; the record keeps the whole tail.

use std::sync::LazyLock;

use regex::Regex;

use crate::drill::process::python_exception;

/// A tool whose output has known patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Restic,
    Borg,
    PgRestore,
    /// GNU tar (as a runbook step runs it).
    Tar,
}

impl Tool {
    /// The tool `argv` runs, by its program's name.
    pub fn of(argv: &[String]) -> Option<Tool> {
        let program = argv.first()?;
        Some(match program.rsplit('/').next().unwrap_or(program) {
            "restic" => Tool::Restic,
            "borg" | "borg1" => Tool::Borg,
            "pg_restore" => Tool::PgRestore,
            "tar" | "gtar" => Tool::Tar,
            _ => return None,
        })
    }
}

/// What a tool's output says went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// The line that names the root cause, as a reason says it.
    pub text: String,
    /// Some line says the backup itself is damaged (not the setup).
    pub damage: bool,
}

enum Find {
    /// A line that contains all of these.
    All(&'static [&'static str]),
    /// A line that starts with one of these.
    Prefix(&'static [&'static str]),
    /// A line that names a restic pack file that is not there.
    MissingPack,
    /// The exception line of a Python traceback.
    PythonException,
    /// An indented line (a traceback's frames).
    Indented,
}

impl Find {
    fn line(&self, line: &str) -> bool {
        match self {
            Find::All(all) => all.iter().all(|s| line.contains(s)),
            Find::Prefix(any) => any.iter().any(|s| line.trim_start().starts_with(s)),
            Find::MissingPack => missing_pack(line).is_some(),
            Find::PythonException => false,
            Find::Indented => line.starts_with([' ', '\t']),
        }
    }
}

struct Rule {
    find: Find,
    /// What it finds is damage to the backup.
    damage: bool,
}

const fn rule(find: Find, damage: bool) -> Rule {
    Rule { find, damage }
}

struct Table {
    /// In order: the first that finds a line names the cause.
    rules: &'static [Rule],
    /// Never the cause.
    noise: &'static [Find],
    /// Said of every file the tool could not finish: the cause only when
    /// nothing better is said.
    weak: &'static [Find],
}

/// Where restic looks for a pack and finds nothing, by backend.
const NOT_THERE: &[&str] = &[
    "no such file or directory",
    "file does not exist",
    "404 Not Found",
    "The specified key does not exist",
];

const RESTIC: Table = Table {
    rules: &[
        rule(Find::MissingPack, true),
        rule(Find::All(&["ciphertext verification failed"]), true),
        rule(Find::All(&["wrong password"]), false),
        rule(Find::All(&["decrypting blob"]), true),
        rule(Find::All(&["invalid data returned"]), true),
        rule(Find::All(&["checksum"]), true),
    ],
    noise: &[
        Find::All(&["UtimesNano"]),
        Find::All(&["Lchown"]),
        Find::Prefix(&["Fatal: There were "]),
    ],
    weak: &[Find::Prefix(&["ignoring error for "])],
};

const BORG: Table = Table {
    rules: &[
        rule(Find::PythonException, false),
        rule(Find::All(&["IntegrityError"]), true),
        rule(Find::All(&["Segment entry checksum mismatch"]), true),
        rule(Find::All(&["Data integrity error"]), true),
        // A segment file that is not there.
        rule(Find::All(&["FileNotFoundError", "/data/"]), true),
    ],
    noise: &[
        Find::Prefix(&[
            "Traceback (most recent call last)",
            "Local Exception",
            "During handling of the above exception",
            "The above exception was the direct cause",
            "Platform: ",
            "Linux: ",
            "Borg: ",
            "PID: ",
            "sys.argv: ",
            "SSH_ORIGINAL_COMMAND: ",
        ]),
        Find::Indented,
    ],
    weak: &[],
};

const PG_RESTORE: Table = Table {
    rules: &[
        rule(Find::Prefix(&["pg_restore: error: "]), false),
        // Before PostgreSQL 12: `pg_restore: [archiver] could not …`.
        rule(Find::Prefix(&["pg_restore: ["]), false),
        rule(Find::All(&["FATAL:"]), false),
    ],
    noise: &[Find::Prefix(&[
        "pg_restore: warning: errors ignored on restore",
    ])],
    weak: &[],
};

const TAR: Table = Table {
    rules: &[
        rule(Find::All(&["tar: ", ": Cannot "]), false),
        // The decompressor tar runs, on a damaged or cut stream.
        rule(
            Find::Prefix(&["gzip: ", "xz: ", "zstd: ", "bzip2: ", "lz4: ", "lzip: "]),
            true,
        ),
        rule(Find::All(&["Unexpected EOF"]), true),
        rule(Find::All(&["This does not look like a tar archive"]), true),
        rule(Find::All(&["Skipping to next header"]), true),
        rule(Find::All(&["Damaged tar archive"]), true),
    ],
    noise: &[
        Find::All(&["Error is not recoverable"]),
        Find::All(&["Exiting with failure status"]),
        Find::All(&["Child returned status"]),
    ],
    weak: &[],
};

fn table(tool: Tool) -> &'static Table {
    match tool {
        Tool::Restic => &RESTIC,
        Tool::Borg => &BORG,
        Tool::PgRestore => &PG_RESTORE,
        Tool::Tar => &TAR,
    }
}

/// `pack file data/26/267b… is missing` for a line where restic looks for a
/// pack and it is not there.
fn missing_pack(line: &str) -> Option<String> {
    static PATH: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"data/[0-9a-f]{2}/[0-9a-f]{64}").expect("regex"));
    static SHORT: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"<data/([0-9a-f]+)>").expect("regex"));
    if !NOT_THERE.iter().any(|s| line.contains(s)) {
        return None;
    }
    let pack = match PATH.find(line) {
        Some(m) => m.as_str().to_string(),
        None => format!("data/{}…", SHORT.captures(line)?.get(1)?.as_str()),
    };
    Some(format!("pack file {pack} is missing"))
}

fn lines(output: &str) -> impl Iterator<Item = &str> {
    output
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
}

/// The root cause `tool`'s `output` names, if one of its patterns finds it.
pub fn root_cause(tool: Tool, output: &str) -> Option<Cause> {
    let t = table(tool);
    let heard = || lines(output).filter(|l| !t.noise.iter().any(|n| n.line(l)));
    let text = t.rules.iter().find_map(|r| match r.find {
        Find::PythonException => python_exception(output),
        Find::MissingPack => heard().find_map(missing_pack),
        ref f => heard().find(|l| f.line(l)).map(|l| l.trim().to_string()),
    })?;
    let damage = t
        .rules
        .iter()
        .filter(|r| r.damage)
        .any(|r| heard().any(|l| r.find.line(l)));
    Some(Cause { text, damage })
}

/// What a failed step's reason says when its driver does not explain the
/// failure: the root cause; else the last lines (up to three) that are not
/// noise; else the first line the tool says of every file. `None` when the
/// output is all noise.
pub fn reason(tool: Tool, output: &str) -> Option<String> {
    if let Some(c) = root_cause(tool, output) {
        return Some(c.text);
    }
    let t = table(tool);
    let heard: Vec<&str> = lines(output)
        .filter(|l| !t.noise.iter().any(|n| n.line(l)))
        .collect();
    let plain: Vec<&str> = heard
        .iter()
        .copied()
        .filter(|l| !t.weak.iter().any(|w| w.line(l)))
        .collect();
    if !plain.is_empty() {
        return Some(plain[plain.len().saturating_sub(3)..].join(" | "));
    }
    heard.first().map(|l| l.trim().to_string())
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const PACK: &str = "6e66a90ca99b8767cefb819949c721f20746d36d52b4a9f3f6ebe776bd566c5b";

    /// restic 0.14 `restore` after one pack file was deleted (shortened: it
    /// retries ten times, then names every file).
    fn restic_missing_pack() -> String {
        format!(
            "Load(<data/6e66a90ca9>, 29641, 0) returned error, retrying after 552.330144ms: open repo/data/6e/{PACK}: no such file or directory\n\
             Load(<data/6e66a90ca9>, 29641, 0) returned error, retrying after 15.394871241s: open repo/data/6e/{PACK}: no such file or directory\n\
             ignoring error for /src/docs/report.txt: StreamPack: open repo/data/6e/{PACK}: no such file or directory\n\
             ignoring error for /src/finance/ledger.csv: StreamPack: open repo/data/6e/{PACK}: no such file or directory\n\
             ignoring error for /src/docs/report.txt: UtimesNano: no such file or directory\n\
             ignoring error for /src/finance/ledger.csv: UtimesNano: no such file or directory\n\
             Fatal: There were 4 errors\n"
        )
    }

    /// restic restore of a tree whose pack is gone, as the lead saw it.
    const RESTIC_TREE_PACK: &str = "ignoring error for /: ReadFull(<data/267b30878d>): open repo/data/26/267b30878d5d8cc6e5bbd8b45c4fd5b9a1f3e7cbb1c5d7b9f67d0c4f4e1a2b3c: no such file or directory\n\
         Fatal: There were 2 errors\n";

    /// restic 0.14 `restore` after one byte of a pack was flipped.
    const RESTIC_FLIPPED: &str = "ignoring error for /src/drawings/part-0002.bin: ciphertext verification failed\n\
         ignoring error for /src/drawings/part-0002.bin: UtimesNano: no such file or directory\n\
         Fatal: There were 2 errors\n";

    /// A REST server that lost a pack: only the short pack id is said.
    const RESTIC_REST_404: &str = "Load(<data/267b30878d>, 250, 375) returned error, retrying after 3.6s: unexpected HTTP response (404): 404 Not Found\n\
         Fatal: There were 1 errors\n";

    const RESTIC_WRONG_PASSWORD: &str = "Fatal: wrong password or no key found\n";

    /// borg 1.2.4 `extract` of a repository with one byte of a segment flipped.
    const BORG_FLIPPED: &str = r#"Data integrity error: Segment entry checksum mismatch [segment 2, offset 8861]
Traceback (most recent call last):
  File "/usr/lib/python3/dist-packages/borg/archiver.py", line 5213, in main
    exit_code = archiver.run(args)
                ^^^^^^^^^^^^^^^^^^
  File "/usr/lib/python3/dist-packages/borg/repository.py", line 1611, in _read
    raise IntegrityError('Segment entry checksum mismatch [segment {}, offset {}]'.format(
borg.helpers.errors.IntegrityError: Data integrity error: Segment entry checksum mismatch [segment 2, offset 8861]

Platform: Linux vm 6.18.44-fc-v1045 #1 SMP PREEMPT_DYNAMIC @0 x86_64
Linux: Unknown Linux
Borg: 1.2.4  Python: CPython 3.11.2 msgpack: 1.0.3 fuse: pyfuse3 3.2.1 [pyfuse3,llfuse]
PID: 26045  CWD: /tmp/cz/bout
sys.argv: ['/usr/bin/borg', 'extract', '--bypass-lock', '../brepo::a']
SSH_ORIGINAL_COMMAND: None
"#;

    /// The same, as a 4 KiB tail that starts inside the frames.
    const BORG_CUT: &str = r#"ta in self.pipeline.fetch_many(ids, is_preloaded=True):
  File "/usr/lib/python3/dist-packages/borg/repository.py", line 1611, in _read
    raise IntegrityError('Segment entry checksum mismatch [segment {}, offset {}]'.format(
borg.helpers.errors.IntegrityError: Data integrity error: Segment entry checksum mismatch [segment 2, offset 300052]

Platform: Linux vm 6.18.44-fc-v1045 #1 SMP PREEMPT_DYNAMIC @0 x86_64
PID: 26045  CWD: /tmp/cz/bout
SSH_ORIGINAL_COMMAND: None
"#;

    /// borg 1.2.4 `extract` of a repository with one segment file deleted:
    /// the exception that ended it, not the one it was handling.
    const BORG_NO_SEGMENT: &str = r#"Local Exception
Traceback (most recent call last):
  File "/usr/lib/python3/dist-packages/borg/repository.py", line 1452, in get_fd
    ts, fd = self.fds[segment]
             ~~~~~~~~^^^^^^^^^
  File "/usr/lib/python3/dist-packages/borg/lrucache.py", line 26, in __getitem__
    value = self._cache[key]  # raise KeyError if not present
            ~~~~~~~~~~~^^^^^
KeyError: 2

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/usr/lib/python3/dist-packages/borg/repository.py", line 1435, in open_fd
    fd = open(filename, 'rb')
         ^^^^^^^^^^^^^^^^^^^^
FileNotFoundError: [Errno 2] No such file or directory: '/tmp/cz/brepo2/data/0/2'

Platform: Linux vm 6.18.44-fc-v1045 #1 SMP PREEMPT_DYNAMIC @0 x86_64
PID: 6420  CWD: /tmp/cz/bout
sys.argv: ['/usr/bin/borg', 'extract', '--bypass-lock', '../brepo2::a']
SSH_ORIGINAL_COMMAND: None
"#;

    /// borg without a traceback: its own message only.
    const BORG_PLAIN: &str =
        "Data integrity error: Segment entry checksum mismatch [segment 5, offset 17]\n";

    /// pg_restore 15 of a custom dump with 64 bytes flipped mid-file.
    const PG_DAMAGED: &str =
        "pg_restore: error: could not uncompress data: invalid distance too far back\n";

    const PG_TOC: &str = "pg_restore: while PROCESSING TOC:\n\
         pg_restore: from TOC entry 3350; 0 16386 TABLE DATA orders postgres\n\
         pg_restore: error: COPY failed for table \"orders\": ERROR:  invalid byte sequence for encoding \"UTF8\": 0xff\n\
         pg_restore: warning: errors ignored on restore: 1\n";

    /// GNU tar 1.34 on a cut gzip stream, a flipped one, a cut tar, a damaged
    /// header and a missing archive.
    const TAR_CUT_GZ: &str = "\ngzip: stdin: unexpected end of file\ntar: Unexpected EOF in archive\ntar: Unexpected EOF in archive\ntar: Error is not recoverable: exiting now\n";
    const TAR_FLIPPED_GZ: &str = "\ngzip: stdin: invalid compressed data--crc error\ntar: Child returned status 1\ntar: Error is not recoverable: exiting now\n";
    const TAR_CUT: &str = "tar: Unexpected EOF in archive\ntar: Unexpected EOF in archive\ntar: Error is not recoverable: exiting now\n";
    const TAR_HEADER: &str =
        "tar: Skipping to next header\ntar: Exiting with failure status due to previous errors\n";
    const TAR_MISSING: &str = "tar: nonexist.tar: Cannot open: No such file or directory\ntar: Error is not recoverable: exiting now\n";

    #[rstest]
    #[case::restic_missing_pack(Tool::Restic, restic_missing_pack(), &*format!("pack file data/6e/{PACK} is missing"), true)]
    #[case::restic_tree_pack(Tool::Restic, RESTIC_TREE_PACK.into(), "pack file data/26/267b30878d5d8cc6e5bbd8b45c4fd5b9a1f3e7cbb1c5d7b9f67d0c4f4e1a2b3c is missing", true)]
    #[case::restic_rest_404(Tool::Restic, RESTIC_REST_404.into(), "pack file data/267b30878d… is missing", true)]
    #[case::restic_flipped(Tool::Restic, RESTIC_FLIPPED.into(), "ignoring error for /src/drawings/part-0002.bin: ciphertext verification failed", true)]
    #[case::restic_wrong_password(Tool::Restic, RESTIC_WRONG_PASSWORD.into(), "Fatal: wrong password or no key found", false)]
    #[case::borg_flipped(Tool::Borg, BORG_FLIPPED.into(), "IntegrityError: Data integrity error: Segment entry checksum mismatch [segment 2, offset 8861]", true)]
    #[case::borg_cut(Tool::Borg, BORG_CUT.into(), "IntegrityError: Data integrity error: Segment entry checksum mismatch [segment 2, offset 300052]", true)]
    #[case::borg_no_segment(Tool::Borg, BORG_NO_SEGMENT.into(), "FileNotFoundError: [Errno 2] No such file or directory: '/tmp/cz/brepo2/data/0/2'", true)]
    #[case::borg_plain(Tool::Borg, BORG_PLAIN.into(), "Data integrity error: Segment entry checksum mismatch [segment 5, offset 17]", true)]
    #[case::pg_damaged(Tool::PgRestore, PG_DAMAGED.into(), "pg_restore: error: could not uncompress data: invalid distance too far back", false)]
    #[case::pg_toc(Tool::PgRestore, PG_TOC.into(), "pg_restore: error: COPY failed for table \"orders\": ERROR:  invalid byte sequence for encoding \"UTF8\": 0xff", false)]
    #[case::tar_cut_gz(Tool::Tar, TAR_CUT_GZ.into(), "gzip: stdin: unexpected end of file", true)]
    #[case::tar_flipped_gz(Tool::Tar, TAR_FLIPPED_GZ.into(), "gzip: stdin: invalid compressed data--crc error", true)]
    #[case::tar_cut(Tool::Tar, TAR_CUT.into(), "tar: Unexpected EOF in archive", true)]
    #[case::tar_header(Tool::Tar, TAR_HEADER.into(), "tar: Skipping to next header", true)]
    #[case::tar_missing(Tool::Tar, TAR_MISSING.into(), "tar: nonexist.tar: Cannot open: No such file or directory", false)]
    fn finds_the_root_cause(
        #[case] tool: Tool,
        #[case] output: String,
        #[case] text: &str,
        #[case] damage: bool,
    ) {
        let c = root_cause(tool, &output).expect("a cause");
        assert_eq!(c.text, text);
        assert_eq!(c.damage, damage, "{}", c.text);
        assert_eq!(reason(tool, &output).as_deref(), Some(text));
    }

    #[rstest]
    // Only restic's per-file noise: the first per-file line, not the count.
    #[case::restic_unknown(
        Tool::Restic,
        "ignoring error for /srv/a: open /sandbox/srv/a: permission denied\nignoring error for /srv/a: UtimesNano: no such file or directory\nFatal: There were 2 errors\n",
        Some("ignoring error for /srv/a: open /sandbox/srv/a: permission denied")
    )]
    // A plain line beats per-file lines.
    #[case::restic_fatal(
        Tool::Restic,
        "ignoring error for /srv/a: Lchown: operation not permitted\nFatal: unable to open repository: permission denied\n",
        Some("Fatal: unable to open repository: permission denied")
    )]
    #[case::borg_no_traceback(
        Tool::Borg,
        "Archive nightly does not exist.\n",
        Some("Archive nightly does not exist.")
    )]
    #[case::all_noise(Tool::Restic, "Fatal: There were 3 errors\n", None)]
    #[case::nothing(Tool::Tar, "", None)]
    fn otherwise_the_lines_that_are_not_noise(
        #[case] tool: Tool,
        #[case] output: &str,
        #[case] want: Option<&str>,
    ) {
        assert_eq!(root_cause(tool, output), None);
        assert_eq!(reason(tool, output).as_deref(), want);
    }

    /// GNU tar as a runbook step, on a real archive cut short and on one that
    /// is not there: the step's reason is the cause, not "exiting now".
    #[rstest]
    #[case::cut_gzip("cut.tgz", "gzip: stdin: unexpected end of file")]
    #[case::cut_tar("cut.tar", "tar: Unexpected EOF in archive")]
    #[case::missing("none.tar", "tar: none.tar: Cannot open: No such file or directory")]
    fn a_tar_step_says_why(#[case] archive: &str, #[case] want: &str) {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let mut seed = 0x1234_5678_u32;
        let data: Vec<u8> = (0..200_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        std::fs::write(src.join("a.bin"), &data).unwrap();
        let opts = crate::drill::process::StepOptions::in_dir(tmp.path());
        let deadline = crate::drill::deadline::Deadline::none();
        let run = |argv: &[&str]| {
            super::super::step(
                argv[0],
                argv.iter().map(|a| a.to_string()).collect(),
                &opts,
                &deadline,
                &mut Vec::new(),
                |_| None,
            )
        };
        for (name, flags) in [("cut.tgz", "-czf"), ("cut.tar", "-cf")] {
            run(&["tar", flags, name, "src"]).unwrap();
            let whole = std::fs::read(tmp.path().join(name)).unwrap();
            std::fs::write(tmp.path().join(name), &whole[..whole.len() / 2]).unwrap();
        }
        std::fs::create_dir(tmp.path().join("out")).unwrap();
        let mut steps = Vec::new();
        let err = super::super::step(
            "step 1 (tar)",
            ["tar", "-xf", archive, "-C", "out"]
                .iter()
                .map(|a| a.to_string())
                .collect(),
            &opts,
            &deadline,
            &mut steps,
            |_| None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("step 1 (tar) failed (exit code 2): {want}")
        );
        // The record keeps the whole tail.
        assert!(
            steps[0].output_tail.contains("Error is not recoverable"),
            "{}",
            steps[0].output_tail
        );
    }

    /// `StepOutcome::last_words`, which every tool without a table falls
    /// back to, says a traceback's exception line too.
    #[rstest]
    #[case::traceback(
        BORG_FLIPPED,
        "IntegrityError: Data integrity error: Segment entry checksum mismatch [segment 2, offset 8861]"
    )]
    #[case::traceback_cut_at_start(
        BORG_CUT,
        "IntegrityError: Data integrity error: Segment entry checksum mismatch [segment 2, offset 300052]"
    )]
    #[case::no_message(
        "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n    main()\nKeyboardInterrupt\n",
        "KeyboardInterrupt"
    )]
    #[case::chained(
        "Traceback (most recent call last):\n  File \"x.py\", line 3, in f\n    d['k']\nKeyError: 'k'\n\nDuring handling of the above exception, another exception occurred:\n\nTraceback (most recent call last):\n  File \"x.py\", line 5, in f\n    raise RuntimeError('lookup failed')\nRuntimeError: lookup failed\n",
        "RuntimeError: lookup failed"
    )]
    #[case::cut_before_the_exception(
        "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n",
        "Traceback (most recent call last): |   File \"x.py\", line 1, in <module>"
    )]
    #[case::go_panic(
        "panic: runtime error: index out of range [3] with length 3\n\ngoroutine 1 [running]:\nmain.main()\n",
        "panic: runtime error: index out of range [3] with length 3 | goroutine 1 [running]:"
    )]
    #[case::plain("one\ntwo\nthree\nfour\n", "two | three | four")]
    fn last_words_of_a_crash(#[case] stderr: &str, #[case] want: &str) {
        let out = crate::drill::process::StepOutcome {
            exit_code: Some(2),
            signal: None,
            duration: std::time::Duration::ZERO,
            stdout: Vec::new(),
            stdout_tail: String::new(),
            stderr_tail: stderr.to_string(),
            stderr_head: String::new(),
        };
        assert_eq!(out.last_words(), want);
    }

    #[rstest]
    #[case(&["restic", "restore"], Some(Tool::Restic))]
    #[case(&["/usr/bin/borg", "extract"], Some(Tool::Borg))]
    #[case(&["/usr/lib/postgresql/15/bin/pg_restore"], Some(Tool::PgRestore))]
    #[case(&["tar", "-xzf", "x.tgz"], Some(Tool::Tar))]
    #[case(&["sh", "-c", "tar -xf x.tar"], None)]
    #[case(&[], None)]
    fn knows_tools_by_program_name(#[case] argv: &[&str], #[case] want: Option<Tool>) {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        assert_eq!(Tool::of(&argv), want);
    }
}

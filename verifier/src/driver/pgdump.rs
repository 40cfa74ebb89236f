//! What a PostgreSQL dump and its restore's log say, read without a server:
//! whether a plain dump is whole (pg_dump's closing line), whether it is a
//! cluster dump, whether an archive's table of contents holds table data, and
//! which of the restore's errors are about data.
//!
//! One policy for every format (docs/design.md, "PostgreSQL"): a failed
//! statement that only gives an object an owner or privileges (`ALTER … OWNER
//! TO`, `GRANT`, `REVOKE`, `ALTER DEFAULT PRIVILEGES`, `SET SESSION
//! AUTHORIZATION`) is not data: a fresh server lacks the production roles. Nor
//! is one that only removes (`DROP …`, `ALTER … DROP CONSTRAINT` or `DROP
//! DEFAULT`, and `lo_unlink`, which `pg_dump --clean` writes): on a fresh server there is
//! nothing to remove, and a failed removal changes nothing. Every other failed
//! statement is data, whatever its message says.

use std::io::{self, BufRead, Read, Write};

/// The line pg_dump writes last in a plain dump.
pub const COMPLETE: &str = "-- PostgreSQL database dump complete";
/// The line pg_dumpall writes first.
const CLUSTER: &str = "-- PostgreSQL database cluster dump";

/// What the start and the end of a plain dump say.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PlainDump {
    /// pg_dump's closing line is there: the dump was not cut short.
    pub complete: bool,
    /// Written by pg_dumpall (all databases and roles), not pg_dump.
    pub cluster: bool,
}

/// How much of the start and the end of a plain dump is read for its marks.
const EDGE: usize = 64 << 10;

/// Why a copy stopped: the dump could not be read (or decompressed), or the
/// copy could not be written (a full disk is not a damaged backup).
#[derive(Debug)]
pub enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies a plain dump from `from` to `to` (when given) and reads its marks
/// from its first and last bytes.
pub fn copy_plain(
    mut from: impl Read,
    mut to: Option<&mut dyn Write>,
) -> Result<PlainDump, CopyError> {
    let mut head: Vec<u8> = Vec::new();
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        if let Some(w) = to.as_mut() {
            w.write_all(&buf[..n]).map_err(CopyError::Write)?;
        }
        if head.len() < EDGE {
            let take = n.min(EDGE - head.len());
            head.extend_from_slice(&buf[..take]);
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 2 * EDGE {
            tail.drain(..tail.len() - EDGE);
        }
    }
    Ok(marks(&head, &tail))
}

/// The marks of a plain dump from its first and last bytes.
pub fn marks(head: &[u8], tail: &[u8]) -> PlainDump {
    let head = String::from_utf8_lossy(head);
    let tail = String::from_utf8_lossy(tail);
    PlainDump {
        // The closing line is followed only by blank lines (and, since
        // PostgreSQL 17.6, by `\unrestrict …`).
        complete: tail
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("\\unrestrict") && *l != "--")
            == Some(COMPLETE),
        cluster: head.lines().take(20).any(|l| l.trim() == CLUSTER),
    }
}

/// How many entries of `pg_restore -l` output are data (`TABLE DATA`, and
/// `BLOBS`: the large objects' contents), and how many are tables.
pub fn toc_counts(list: &str) -> (u64, u64) {
    let (mut data, mut tables) = (0, 0);
    for l in list.lines().filter(|l| !l.trim_start().starts_with(';')) {
        // "215; 1259 16386 TABLE public orders postgres"
        let Some((_, rest)) = l.split_once(';') else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().skip(2).collect();
        match words.as_slice() {
            // `BLOB` (one large object's metadata) is not data; `BLOBS` is.
            ["TABLE", "DATA", ..] | ["BLOBS", ..] => data += 1,
            ["TABLE", ..] => tables += 1,
            _ => {}
        }
    }
    (data, tables)
}

/// One error in a restore tool's log, with the statement that failed where
/// the tool names it (psql's `STATEMENT:` with `--echo-errors`, pg_restore's
/// `Command was:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreError {
    pub message: String,
    pub statement: Option<String>,
}

impl RestoreError {
    /// The failed statement only gave an owner or privileges, only removed
    /// something, or only placed or configured for what the drill host
    /// lacks (a tablespace, a role's settings): not data.
    pub fn harmless(&self) -> bool {
        self.statement
            .as_deref()
            .is_some_and(|s| ownership_or_privilege(s) || only_removes(s) || placement(s))
    }
}

/// Whether `statement` only gives an object an owner or privileges.
pub fn ownership_or_privilege(statement: &str) -> bool {
    let upper = statement.trim().trim_end_matches(';').to_uppercase();
    let words: Vec<&str> = upper.split_whitespace().collect();
    match words.as_slice() {
        ["GRANT", ..] | ["REVOKE", ..] => true,
        ["ALTER", "DEFAULT", "PRIVILEGES", ..] => true,
        ["SET", "SESSION", "AUTHORIZATION", ..] => true,
        ["ALTER", ..] => upper
            .rfind(" OWNER TO ")
            .is_some_and(|i| one_name(&upper[i + " OWNER TO ".len()..])),
        _ => false,
    }
}

/// Whether `statement` only places objects or configures a role, for what
/// a fresh server does not have: `SET default_tablespace = …` (tables go to
/// the default one), `ALTER ROLE … IN DATABASE … SET …`, `CREATE USER
/// MAPPING` (a foreign server's credentials).
pub fn placement(statement: &str) -> bool {
    let upper = statement.trim().trim_end_matches(';').to_uppercase();
    let words: Vec<&str> = upper.split_whitespace().collect();
    matches!(
        words.as_slice(),
        ["SET", "DEFAULT_TABLESPACE", ..]
            | ["CREATE", "USER", "MAPPING", ..]
            | ["ALTER", "ROLE", _, "IN", "DATABASE", _, "SET", ..]
    )
}

/// Whether `statement` only removes something (what `pg_dump --clean`
/// writes before it creates).
pub fn only_removes(statement: &str) -> bool {
    let upper = statement.trim().trim_end_matches(';').to_uppercase();
    let words: Vec<&str> = upper.split_whitespace().collect();
    match words.as_slice() {
        ["DROP", ..] => true,
        // A large object removed: "SELECT pg_catalog.lo_unlink('16403')".
        ["SELECT", call] => call
            .strip_prefix("PG_CATALOG.")
            .unwrap_or(call)
            .starts_with("LO_UNLINK("),
        // "ALTER TABLE ONLY public.t DROP CONSTRAINT t_pkey", "ALTER TABLE
        // public.t ALTER COLUMN id DROP DEFAULT": one action, a removal.
        ["ALTER", ..] => {
            !upper.contains(',')
                && (upper.contains(" DROP CONSTRAINT ") || upper.ends_with(" DROP DEFAULT"))
        }
        _ => false,
    }
}

/// `s` is one role name: a quoted identifier or a word.
fn one_name(s: &str) -> bool {
    let s = s.trim();
    match s.strip_prefix('"') {
        Some(q) => q
            .strip_suffix('"')
            .is_some_and(|inner| !inner.replace("\"\"", "").contains('"')),
        None => !s.is_empty() && !s.contains(char::is_whitespace),
    }
}

/// pg_restore's own count of the errors it went on past (`errors ignored on
/// restore: N`), to check that every one of them was seen.
pub fn ignored_on_restore(log: impl BufRead) -> Option<u64> {
    log.split(b'\n').map_while(Result::ok).find_map(|l| {
        let l = String::from_utf8_lossy(&l);
        l.split_once("errors ignored on restore: ")?
            .1
            .trim()
            .parse()
            .ok()
    })
}

/// Whether an error says the drill host lacks what the dump needs (a
/// locale, an extension, a newer PostgreSQL): the backup may be whole, the
/// drill cannot tell, so it errs.
pub fn missing_on_host(message: &str) -> bool {
    [
        "invalid locale name",
        "is not available",
        "could not open extension control file",
        "invalid command \\restrict",
        "invalid command \\unrestrict",
        "unsupported version",
        "unrecognized configuration parameter",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// Every error in a restore tool's log, read as bytes to the end: a line that
/// is not UTF-8 (a server message in the database's EUC_JP) neither stops the
/// reading nor hides a later failed COPY. Decoded only for the record.
pub fn restore_errors(log: impl BufRead) -> Vec<RestoreError> {
    let mut errors: Vec<RestoreError> = Vec::new();
    // The error a following statement line belongs to.
    let mut open: Option<usize> = None;
    for line in log.split(b'\n').map_while(Result::ok) {
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end();
        // psql: "psql:<stdin>:35: STATEMENT:  ALTER TABLE …"; pg_restore:
        // "Command was: ALTER TABLE …".
        let statement = line
            .strip_prefix("Command was: ")
            .or_else(|| line.split_once(": STATEMENT:  ").map(|(_, s)| s));
        if let Some(s) = statement {
            if let Some(i) = open.take() {
                errors[i].statement = Some(s.trim().to_string());
            }
            continue;
        }
        // (pg_restore before PostgreSQL 15 says "fatal:".)
        if ["ERROR:", "error:", "FATAL:", "fatal:"]
            .iter()
            .any(|m| line.contains(m))
        {
            errors.push(RestoreError {
                message: line.trim().to_string(),
                statement: None,
            });
            open = Some(errors.len() - 1);
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_that_only_give_owners_or_privileges() {
        let table = [
            ("ALTER TABLE public.t OWNER TO ghost;", true),
            ("ALTER TABLE public.t OWNER TO \"経理 部\";", true),
            ("ALTER SCHEMA billing OWNER TO app", true),
            ("ALTER LARGE OBJECT 16395 OWNER TO ghost;", true),
            ("ALTER DATABASE app OWNER TO ghost;", true),
            ("GRANT SELECT ON TABLE public.t TO ghost;", true),
            ("REVOKE ALL ON SCHEMA public FROM PUBLIC;", true),
            (
                "ALTER DEFAULT PRIVILEGES FOR ROLE ghost GRANT SELECT ON TABLES TO app;",
                true,
            ),
            ("SET SESSION AUTHORIZATION 'ghost';", true),
            ("CREATE POLICY p ON public.t TO ghost USING (true);", false),
            ("COPY public.t (id, v) FROM stdin;", false),
            ("CREATE TABLE public.t (id integer);", false),
            // An owner clause inside a name is not an ownership statement.
            ("ALTER TABLE \"x OWNER TO y\" ADD COLUMN z integer;", false),
            (
                "ALTER TABLE public.t ADD CONSTRAINT t_pkey PRIMARY KEY (id);",
                false,
            ),
        ];
        for (statement, want) in table {
            assert_eq!(ownership_or_privilege(statement), want, "{statement}");
        }
    }

    #[test]
    fn statements_that_only_place_or_configure() {
        let table = [
            ("SET default_tablespace = fastspace;", true),
            ("SET default_tablespace = '';", true),
            (
                "CREATE USER MAPPING FOR app_owner SERVER s OPTIONS (user 'x');",
                true,
            ),
            (
                "ALTER ROLE app_owner IN DATABASE app SET search_path TO app;",
                true,
            ),
            ("ALTER ROLE app_owner SET search_path TO app;", false),
            ("SET search_path = public;", false),
            ("CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw;", false),
        ];
        for (statement, want) in table {
            assert_eq!(placement(statement), want, "{statement}");
        }
    }

    #[test]
    fn statements_that_only_remove() {
        let table = [
            ("DROP TABLE public.t;", true),
            ("DROP EXTENSION IF EXISTS plpgsql;", true),
            ("SELECT pg_catalog.lo_unlink('16403');", true),
            ("SELECT pg_catalog.lo_create('16403');", false),
            ("SELECT lo_unlink('1'), pg_sleep(1);", false),
            ("ALTER TABLE ONLY public.t DROP CONSTRAINT t_pkey;", true),
            ("ALTER TABLE public.t ALTER COLUMN id DROP DEFAULT;", true),
            (
                "ALTER TABLE ONLY public.t DROP CONSTRAINT a, ADD CONSTRAINT b CHECK (id > 0);",
                false,
            ),
            (
                "ALTER TABLE ONLY public.t ADD CONSTRAINT t_pkey PRIMARY KEY (id);",
                false,
            ),
            ("CREATE TABLE public.drop_log (id integer);", false),
        ];
        for (statement, want) in table {
            assert_eq!(only_removes(statement), want, "{statement}");
        }
    }

    #[test]
    fn psql_and_pg_restore_logs_pair_errors_with_statements() {
        let psql = b"psql:<stdin>:35: ERROR:  role \"ghost\" does not exist\n\
psql:<stdin>:35: STATEMENT:  ALTER TABLE public.t OWNER TO ghost;\n\
psql:<stdin>:185: ERROR:  role \"ghost\" does not exist\n\
psql:<stdin>:185: STATEMENT:  CREATE POLICY p ON public.t TO ghost USING (true);\n";
        let e = restore_errors(&psql[..]);
        assert_eq!(e.len(), 2);
        assert!(e[0].harmless());
        assert!(!e[1].harmless(), "a policy is not an owner or a grant");

        let pg_restore =
            b"pg_restore: error: could not execute query: ERROR:  role \"ghost\" does not exist\n\
Command was: ALTER TABLE public.t OWNER TO ghost;\n\n\
pg_restore: error: could not read from input file: end of file\n\
pg_restore: warning: errors ignored on restore: 1\n";
        let e = restore_errors(&pg_restore[..]);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].harmless());
        assert!(!e[1].harmless(), "an error without a statement is data");
        assert!(e[1].message.contains("end of file"));
    }

    // Pins: the log was read line by line as UTF-8 and the reading stopped
    // at the first line that was not, so a later failed COPY was missed.
    #[test]
    fn errors_after_a_line_that_is_not_utf8_are_seen() {
        let mut log =
            b"psql:<stdin>:20: ERROR:  role \"\xb7\xd0\xcd\xfd\" does not exist\n".to_vec();
        log.extend(b"psql:<stdin>:20: STATEMENT:  ALTER TABLE t OWNER TO \"\xb7\xd0\xcd\xfd\";\n");
        log.extend(b"psql:<stdin>:31: ERROR:  invalid byte sequence \xb7\xd0\n");
        log.extend(b"CONTEXT:  COPY ledger, line 7\n");
        let serious: Vec<_> = restore_errors(&log[..])
            .into_iter()
            .filter(|e| !e.harmless())
            .collect();
        assert_eq!(serious.len(), 1, "{serious:?}");
        assert!(serious[0].message.contains("invalid byte sequence"));
    }

    #[test]
    fn what_the_host_lacks_and_what_pg_restore_counted() {
        assert!(missing_on_host(
            "psql:<stdin>:22: ERROR:  invalid locale name: \"en_US.UTF-8\""
        ));
        assert!(missing_on_host(
            "pg_restore: error: could not execute query: ERROR:  extension \"postgis\" is not available"
        ));
        assert!(missing_on_host(
            "psql:<stdin>:5: error: invalid command \\restrict"
        ));
        assert!(!missing_on_host(
            "psql:<stdin>:31: ERROR:  invalid byte sequence"
        ));
        let log = b"pg_restore: error: x\npg_restore: warning: errors ignored on restore: 3\n";
        assert_eq!(ignored_on_restore(&log[..]), Some(3));
        assert_eq!(ignored_on_restore(&b"nothing\n"[..]), None);
    }

    #[test]
    fn plain_dump_marks() {
        let whole = "--\n-- PostgreSQL database dump\n--\nCOPY t FROM stdin;\n1\n\\.\n\n--\n-- PostgreSQL database dump complete\n--\n\n";
        assert_eq!(
            copy_plain(whole.as_bytes(), None).unwrap(),
            PlainDump {
                complete: true,
                cluster: false
            }
        );
        let newer = format!("{whole}\\unrestrict abc\n\n");
        assert!(copy_plain(newer.as_bytes(), None).unwrap().complete);
        let cut = &whole[..whole.find("\\.").unwrap()];
        assert!(!copy_plain(cut.as_bytes(), None).unwrap().complete);
        // The closing line quoted in the data is not the end.
        let quoted = format!("{whole}INSERT INTO t VALUES (1);\n");
        assert!(!copy_plain(quoted.as_bytes(), None).unwrap().complete);
        let cluster = "--\n-- PostgreSQL database cluster dump\n--\n";
        assert!(copy_plain(cluster.as_bytes(), None).unwrap().cluster);
        // Large dumps: the marks are read across buffer edges.
        let mut big = whole.replace("1\n", &"1\n".repeat(400_000));
        let mut out = Vec::new();
        assert!(copy_plain(big.as_bytes(), Some(&mut out)).unwrap().complete);
        assert_eq!(out, big.as_bytes());
        big.truncate(big.len() - 30);
        assert!(!copy_plain(big.as_bytes(), None).unwrap().complete);
    }

    #[test]
    fn toc_data_entries() {
        let list = ";\n; Archive created at 2026-12-03\n;\n215; 1259 16386 TABLE public orders postgres\n3336; 0 16386 TABLE DATA public orders postgres\n3342; 2613 16395 BLOB - 16395 postgres\n3337; 0 0 BLOBS - BLOBS \n216; 1259 16390 TABLE billing invoices postgres\n";
        assert_eq!(toc_counts(list), (2, 2));
        let schema_only =
            ";\n215; 1259 16386 TABLE public orders postgres\n2; 3079 13 EXTENSION - plpgsql \n";
        assert_eq!(toc_counts(schema_only), (0, 1));
    }
}

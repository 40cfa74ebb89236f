//! The shared evidence store: many agents' ledgers in one PostgreSQL database,
//! for a fleet-wide `evidence verify` and `report`.
//!
//! Each agent's local JSONL ledger stays the record of truth; the store holds
//! a copy of every ledger's lines. A chain is named by the hash of its first
//! record, so a host that is renamed (or a Kubernetes pod with a new name
//! over the same state volume) keeps one chain. An agent publishes after every
//! append and at its periodic ledger check: in one serializable transaction it
//! reads the store's head for its chain, checks that it is the same record as
//! in its own ledger, and inserts the lines after it in order. Appends from
//! many agents (or two drills of one agent) never interleave within a chain;
//! a conflict is retried.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use postgres::{Client, IsolationLevel};
use serde_json::Value;
use verifier::{ChainChecker, ChainReport, Ledger, Record};

use crate::config::Store;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS restore_verifier_records (
    chain       text        NOT NULL,
    seq         bigint      NOT NULL,
    hash        text        NOT NULL,
    host        text        NOT NULL,
    job         text        NOT NULL,
    result      text        NOT NULL,
    started_at  timestamptz NOT NULL,
    line        text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, seq)
)";

/// Why the store is opened: publishing creates the table when it is missing;
/// reading never does (an auditor's account may only SELECT).
#[derive(Clone, Copy, PartialEq)]
pub enum Access {
    Publish,
    Read,
}

/// Opens a connection; for publishing, makes sure the table exists. Every
/// statement and lock wait is bounded, and a dead peer is noticed, so a store
/// that stops answering fails a publish instead of holding it.
pub fn connect(store: &Store, access: Access) -> anyhow::Result<Client> {
    let Store::Postgres {
        conninfo,
        password_file,
        ca_file,
    } = store
    else {
        bail!("the evidence store is the local ledger file");
    };
    let mut config: postgres::Config = conninfo.parse().with_context(|| {
        format!(
            "evidence store {}: not a connection string",
            redacted(conninfo)
        )
    })?;
    if let Some(p) = password_file {
        let pw = std::fs::read_to_string(p)
            .with_context(|| format!("cannot read the store's password_file {}", p.display()))?;
        config.password(pw.trim_end_matches(['\r', '\n']));
    }
    config.connect_timeout(Duration::from_secs(10));
    config.tcp_user_timeout(Duration::from_secs(30));
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(30));
    config.options("-c statement_timeout=60s -c lock_timeout=30s");
    config.application_name("restore-verifier");
    // A Unix socket is local and carries no TLS (and has no name to verify).
    let local = config
        .get_hosts()
        .iter()
        .all(|h| matches!(h, postgres::config::Host::Unix(_)));
    let connected = if local || config.get_ssl_mode() == postgres::config::SslMode::Disable {
        config.connect(postgres::NoTls)
    } else {
        config.connect(tls(ca_file.as_deref())?)
    };
    let mut client = connected.with_context(|| {
        format!(
            "cannot connect to the evidence store {}{}",
            redacted(conninfo),
            if local {
                ""
            } else {
                " (a TLS certificate error? set evidence.ca_file to the CA that signed the server's certificate)"
            }
        )
    })?;
    let exists: Option<String> = client
        .query_one("SELECT to_regclass('restore_verifier_records')::text", &[])
        .context("cannot query the evidence store")?
        .get(0);
    match (exists, access) {
        (Some(_), _) => {}
        (None, Access::Publish) => client
            .batch_execute(SCHEMA)
            .context("cannot create the evidence store's table restore_verifier_records; create it with an account that may, or give this one CREATE on the schema")?,
        (None, Access::Read) => bail!(
            "the evidence store {} has no table restore_verifier_records: no agent has published to it yet",
            redacted(conninfo)
        ),
    }
    Ok(client)
}

/// TLS for the connection, used when the server offers it (`sslmode=prefer`,
/// the default) or always (`sslmode=require`); `sslmode=disable` never. The
/// server's certificate is always verified, name included, against the public
/// roots and `ca_file`: a certificate that does not verify fails the
/// connection, it is never used unverified.
fn tls(ca_file: Option<&Path>) -> anyhow::Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(p) = ca_file {
        let certs = CertificateDer::pem_file_iter(p)
            .with_context(|| format!("cannot read the store's ca_file {}", p.display()))?;
        let mut n = 0;
        for c in certs {
            let c = c.with_context(|| format!("ca_file {}: not a PEM certificate", p.display()))?;
            roots
                .add(c)
                .with_context(|| format!("ca_file {}: not a usable CA certificate", p.display()))?;
            n += 1;
        }
        if n == 0 {
            bail!("ca_file {} holds no certificate", p.display());
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS setup")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// The connection string for messages: where it connects, never a password
/// (the config refuses one in it anyway).
pub fn redacted(conninfo: &str) -> String {
    let Ok(c) = conninfo.parse::<postgres::Config>() else {
        return "(an invalid connection string)".into();
    };
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect();
    format!(
        "{}@{}:{}/{}",
        c.get_user().unwrap_or("-"),
        hosts.join(","),
        c.get_ports().first().copied().unwrap_or(5432),
        c.get_dbname().unwrap_or("-")
    )
}

/// The complete lines of a ledger file (a torn last line is not one).
fn ledger_lines(ledger: &Ledger) -> anyhow::Result<Vec<String>> {
    let bytes = match std::fs::read(ledger.path()) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read {}", ledger.path().display()));
        }
    };
    let text = String::from_utf8_lossy(&bytes);
    let complete = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => return Ok(Vec::new()),
    };
    Ok(complete.lines().map(String::from).collect())
}

/// How many records of the local ledger were published now.
pub fn publish(store: &Store, ledger: &Ledger) -> anyhow::Result<usize> {
    let mut lines = ledger_lines(ledger)?;
    let Some(first) = lines.first() else {
        return Ok(0);
    };
    let chain = field(first, "hash")?;
    let mut client = connect(store, Access::Publish)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match publish_once(&mut client, &chain, &lines) {
            Ok(n) => return Ok(n),
            Err(e) if attempt < 20 && (retryable(&e) || e.is::<Behind>()) => {
                // Another publisher (another drill of this agent) got there
                // first, maybe with lines appended since we read: read again.
                std::thread::sleep(Duration::from_millis(20 * attempt));
                lines = ledger_lines(ledger)?;
            }
            Err(e) => return Err(e.context("cannot publish to the evidence store")),
        }
    }
}

/// The store's head is past the lines read: another publisher had read more.
#[derive(Debug)]
struct Behind(usize);

impl std::fmt::Display for Behind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the store's chain is at seq {}, past the end of this ledger: the ledger and the store diverged (a restored or replaced ledger?); nothing was published",
            self.0
        )
    }
}

impl std::error::Error for Behind {}

/// A conflict with another publisher: try again.
fn retryable(e: &anyhow::Error) -> bool {
    use postgres::error::SqlState;
    e.downcast_ref::<postgres::Error>()
        .and_then(postgres::Error::code)
        .is_some_and(|c| {
            *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::UNIQUE_VIOLATION
        })
}

fn field(line: &str, key: &str) -> anyhow::Result<String> {
    let v: Value = serde_json::from_str(line).context("a ledger line is not a JSON record")?;
    Ok(v[key].as_str().unwrap_or_default().to_string())
}

fn publish_once(client: &mut Client, chain: &str, lines: &[String]) -> anyhow::Result<usize> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .start()?;
    let head = tx.query_opt(
        "SELECT seq, hash FROM restore_verifier_records WHERE chain = $1 ORDER BY seq DESC LIMIT 1",
        &[&chain],
    )?;
    let have = match head {
        None => 0usize,
        Some(row) => {
            let seq: i64 = row.get(0);
            let hash: String = row.get(1);
            let seq = seq as usize;
            if seq > lines.len() {
                return Err(Behind(seq).into());
            }
            // The store's head must be the same record as ours at that seq.
            let ours = lines
                .get(seq.wrapping_sub(1))
                .and_then(|l| field(l, "hash").ok());
            if ours.as_deref() != Some(hash.as_str()) {
                bail!(
                    "the store's chain {chain} ends at seq {seq} with a record this ledger does not have: the ledger and the store diverged (a restored or replaced ledger?); nothing was published"
                );
            }
            seq
        }
    };
    let insert = tx.prepare(
        "INSERT INTO restore_verifier_records (chain, seq, hash, host, job, result, started_at, line)
         VALUES ($1, $2, $3, $4, $5, $6, $7::text::timestamptz, $8)",
    )?;
    let mut n = 0;
    for line in &lines[have.min(lines.len())..] {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            break;
        };
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let seq = v["seq"].as_i64().unwrap_or_default();
        tx.execute(
            &insert,
            &[
                &chain,
                &seq,
                &s("hash"),
                &s("host"),
                &s("job"),
                &s("result"),
                &s("started_at"),
                line,
            ],
        )?;
        n += 1;
    }
    tx.commit()?;
    Ok(n)
}

/// One chain of the store, verified.
pub struct StoredChain {
    pub chain: String,
    pub host: String,
    pub report: ChainReport,
}

/// Verifies every chain in the store (and that each is named by its first
/// record's hash). With `keys`, what a chain signs must be signed by one of
/// them (each host may have its own key), or a key linked to one by key
/// records.
pub fn verify(
    store: &Store,
    keys: &[verifier::evidence::signing::EvidencePublicKey],
) -> anyhow::Result<Vec<StoredChain>> {
    verify_each(store, |_| keys.to_vec())
}

/// Verifies every chain, with the keys `keys_for(host)` gives for the host of
/// its first record (none: the chain and the keys its key records name).
pub fn verify_each(
    store: &Store,
    keys_for: impl Fn(&str) -> Vec<verifier::evidence::signing::EvidencePublicKey>,
) -> anyhow::Result<Vec<StoredChain>> {
    let mut client = connect(store, Access::Read)?;
    let chains = client.query(
        "SELECT chain, (array_agg(host ORDER BY seq))[1] FROM restore_verifier_records
         GROUP BY chain ORDER BY 2, 1",
        &[],
    )?;
    let mut out = Vec::new();
    for row in chains {
        let chain: String = row.get(0);
        let host: String = row.get(1);
        let lines: Vec<String> = client
            .query(
                "SELECT line FROM restore_verifier_records WHERE chain = $1 ORDER BY seq",
                &[&chain],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let report = check_chain(&chain, &lines, &keys_for(&host));
        out.push(StoredChain {
            chain,
            host,
            report,
        });
    }
    Ok(out)
}

fn check_chain(
    chain: &str,
    lines: &[String],
    keys: &[verifier::evidence::signing::EvidencePublicKey],
) -> ChainReport {
    let mut check = ChainChecker::new(keys);
    for (i, line) in lines.iter().enumerate() {
        if !check.push(line.as_bytes()) {
            break;
        }
        if i == 0 && check.report.head_hash != chain {
            check.report.problem = Some(verifier::ChainProblem {
                line: 1,
                what: format!(
                    "the chain is stored as {chain} but starts with record {}",
                    check.report.head_hash
                ),
            });
            break;
        }
    }
    check.finish()
}

/// The records of every chain that started in `[since, until)`, each with
/// the chain it is in, and how many stored rows in that time did not read as
/// records (skipped; `verify` says which chain they break).
pub fn records(
    store: &Store,
    since: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<(Vec<(String, Record)>, usize)> {
    let mut client = connect(store, Access::Read)?;
    let rows = client.query(
        "SELECT line, chain FROM restore_verifier_records
         WHERE started_at >= $1::text::timestamptz AND started_at < $2::text::timestamptz
         ORDER BY started_at, chain, seq",
        &[&since.to_rfc3339(), &until.to_rfc3339()],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    let mut bad = 0;
    for r in rows {
        let line: String = r.get(0);
        match serde_json::from_str(&line) {
            Ok(rec) => out.push((r.get(1), rec)),
            Err(_) => bad += 1,
        }
    }
    Ok((out, bad))
}

/// Where the ledger reads back records lost from the end of its file: the
/// store's copy of the chain whose record at the head file's seq has the head
/// file's hash. The ledger checks what comes back before it keeps any of it.
/// `None` without a store.
pub fn tail_source(store: &Store) -> Option<verifier::TailSource> {
    if matches!(store, Store::File) {
        return None;
    }
    let store = store.clone();
    Some(std::sync::Arc::new(
        move |lost: &verifier::LostRecords| match lost_lines(&store, lost) {
            Ok(lines) => lines,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "Could not read the ledger's lost records from the evidence store; an error record notes the loss instead.");
                Vec::new()
            }
        },
    ))
}

/// The lost lines of the ledger's chain: named by its first record's hash when
/// the ledger still has it, else the chain whose record at the last lost seq
/// has the head file's hash.
fn lost_lines(store: &Store, lost: &verifier::LostRecords) -> anyhow::Result<Vec<String>> {
    let mut client = connect(store, Access::Read)?;
    let (from, to) = (i64::try_from(lost.from)?, i64::try_from(lost.to)?);
    let chain = match &lost.chain {
        Some(c) => c.clone(),
        None => match client.query_opt(
            "SELECT chain FROM restore_verifier_records WHERE seq = $1 AND hash = $2 LIMIT 1",
            &[&to, &lost.head_hash],
        )? {
            Some(row) => row.get(0),
            None => return Ok(Vec::new()),
        },
    };
    let rows = client.query(
        "SELECT line FROM restore_verifier_records WHERE chain = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq",
        &[&chain, &from, &to],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Publishes when a store is configured; a failure is logged, never fatal:
/// the local ledger has the record and the next publish catches up.
pub fn publish_quietly(store: &Store, ledger_path: &Path) {
    if matches!(store, Store::File) {
        return;
    }
    match publish(store, &Ledger::new(ledger_path)) {
        Ok(0) => {}
        Ok(n) => tracing::debug!(records = n, "Published to the evidence store."),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "Could not publish to the evidence store; the next drill or ledger check retries.")
        }
    }
}

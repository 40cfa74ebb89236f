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

/// Opens a connection and makes sure the table exists.
pub fn connect(store: &Store) -> anyhow::Result<Client> {
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
    config.application_name("restore-verifier");
    let mut client = config.connect(tls(ca_file.as_deref())?).with_context(|| {
        format!(
            "cannot connect to the evidence store {} (a TLS certificate error? set evidence.ca_file to the CA that signed the server's certificate)",
            redacted(conninfo)
        )
    })?;
    client
        .batch_execute(SCHEMA)
        .context("cannot create the evidence store's table")?;
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

/// The connection string for messages: never a password (the config refuses
/// one in it anyway).
pub fn redacted(conninfo: &str) -> String {
    match conninfo.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://…@{host}"),
            None => conninfo.to_string(),
        },
        None => conninfo.to_string(),
    }
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
    let lines = ledger_lines(ledger)?;
    let Some(first) = lines.first() else {
        return Ok(0);
    };
    let chain = field(first, "hash")?;
    let mut client = connect(store)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match publish_once(&mut client, &chain, &lines) {
            Ok(n) => return Ok(n),
            Err(e) if attempt < 20 && retryable(&e) => {
                std::thread::sleep(Duration::from_millis(20 * attempt));
            }
            Err(e) => return Err(e.context("cannot publish to the evidence store")),
        }
    }
}

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
/// record's hash).
pub fn verify(
    store: &Store,
    key: Option<&verifier::signing::EvidencePublicKey>,
) -> anyhow::Result<Vec<StoredChain>> {
    let mut client = connect(store)?;
    let chains = client.query(
        "SELECT chain, min(host) FROM restore_verifier_records GROUP BY chain ORDER BY 2, 1",
        &[],
    )?;
    let mut out = Vec::new();
    for row in chains {
        let chain: String = row.get(0);
        let host: String = row.get(1);
        let mut check = ChainChecker::new(key);
        let mut first = true;
        for r in client.query(
            "SELECT seq, line FROM restore_verifier_records WHERE chain = $1 ORDER BY seq",
            &[&chain],
        )? {
            let line: String = r.get(1);
            if !check.push(line.as_bytes()) {
                break;
            }
            if first && check.report.head_hash != chain {
                check.report.problem = Some(verifier::ChainProblem {
                    line: 1,
                    what: format!(
                        "the chain is stored as {chain} but starts with record {}",
                        check.report.head_hash
                    ),
                });
                break;
            }
            first = false;
        }
        out.push(StoredChain {
            chain,
            host,
            report: check.report,
        });
    }
    Ok(out)
}

/// Every record in the store, all chains.
pub fn records(store: &Store) -> anyhow::Result<Vec<Record>> {
    let mut client = connect(store)?;
    let rows = client.query(
        "SELECT line FROM restore_verifier_records ORDER BY started_at, chain, seq",
        &[],
    )?;
    rows.iter()
        .map(|r| {
            let line: String = r.get(0);
            serde_json::from_str(&line).context("a stored record is not a record")
        })
        .collect()
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

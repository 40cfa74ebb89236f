//! Tests of the server's setup (its socket directory, the reason it did not
//! start) and of the cut tar dump check, which run without PostgreSQL.

use super::dump::tar_dump_cut;
use super::server::{
    SOCKET_PATH_MAX, server_log_reason, short_socket_dir, short_socket_path, socket_dir_in_sandbox,
    socket_path_len,
};
use super::*;

// Pins: the reason quoted the log's last three lines backwards and left
// out the one that named the cause.
#[test]
fn a_server_that_did_not_start_is_explained_fatal_first_then_in_order() {
    // PostgreSQL 15's log with a socket path too long.
    let log = "LOG:  starting PostgreSQL 15.18 (Debian 15.18-0+deb12u1) on x86_64-pc-linux-gnu\n\
               LOG:  Unix-domain socket path \"/x/.s.PGSQL.5432\" is too long (maximum 107 bytes)\n\
               WARNING:  could not create Unix-domain socket in directory \"/x\"\n\
               FATAL:  could not create any Unix-domain sockets\n\
               LOG:  database system is shut down\n";
    assert_eq!(
        server_log_reason(log),
        "FATAL:  could not create any Unix-domain sockets | LOG:  Unix-domain socket path \"/x/.s.PGSQL.5432\" is too long (maximum 107 bytes) | WARNING:  could not create Unix-domain socket in directory \"/x\""
    );
    assert_eq!(
        server_log_reason("LOG:  starting PostgreSQL 15\nLOG:  database system is shut down\n"),
        "LOG:  starting PostgreSQL 15 | LOG:  database system is shut down"
    );
    assert_eq!(server_log_reason(""), "its log is empty");
}

#[test]
fn socket_paths_over_107_bytes_go_to_a_short_directory_beside_the_sandbox() {
    let short = Path::new("/var/tmp/restore-verifier/rv-app-01a23a9d-2291-7657-87ec-67168459bfa2");
    assert!(socket_dir_in_sandbox(short).is_some());
    let long = Path::new(
        "/var/tmp/restore-verifier/rv-nightly-erp-orders-dump-01a23a9d-2291-7657-87ec-67168459bfa2",
    );
    assert_eq!(socket_dir_in_sandbox(long), None);
    assert_eq!(
        short_socket_path(long),
        Path::new("/var/tmp/restore-verifier/rv-s-01a23a9d-2291-7657-87ec-67168459bfa2")
    );
    let t = tempfile::tempdir().unwrap();
    let sandbox = t
        .path()
        .join("rv-nightly-erp-orders-dump-and-more-01a23a9d-2291-7657-87ec-67168459bfa2");
    let dir = short_socket_dir(&sandbox, None).unwrap();
    let path = dir.0.clone();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o700);
    assert!(socket_path_len(&path) <= SOCKET_PATH_MAX);
    assert!(
        short_socket_dir(&sandbox, None).is_err(),
        "an existing directory is never taken"
    );
    drop(dir);
    assert!(!path.exists());
    // A sandbox_dir too long for any socket is named, with what to do.
    let deep = Path::new(&format!("/{}", "d".repeat(60)))
        .join("rv-app-01a23a9d-2291-7657-87ec-67168459bfa2");
    let e = short_socket_dir(&deep, None).unwrap_err().to_string();
    assert!(
        e.contains("shorten sandbox_dir (to 51 bytes or fewer)"),
        "{e}"
    );
}

#[test]
fn cut_tar_dumps_are_told_from_their_headers() {
    let t = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (name, len) in [
        ("toc.dat", 700usize),
        ("3347.dat", 5000),
        ("restore.sql", 10),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(len as u64);
        h.set_mode(0o600);
        h.set_cksum();
        b.append_data(&mut h, name, &vec![b'x'; len][..]).unwrap();
    }
    let whole = b.into_inner().unwrap();
    let p = t.path().join("d.tar");
    std::fs::write(&p, &whole).unwrap();
    assert_eq!(tar_dump_cut(&p), None);
    std::fs::write(&p, &whole[..3000]).unwrap();
    let why = tar_dump_cut(&p).unwrap();
    assert!(
        why.contains("its member 3347.dat holds 5000 bytes, and the file ends 952 bytes into it"),
        "{why}"
    );
    std::fs::write(&p, &whole[..7168 + 100]).unwrap();
    let why = tar_dump_cut(&p).unwrap();
    assert!(
        why.contains("after its member 3347.dat inside the next member's header"),
        "{why}"
    );
    let end = whole.len() - 1024;
    std::fs::write(&p, &whole[..end]).unwrap();
    let why = tar_dump_cut(&p).unwrap();
    assert!(why.contains("without tar's end-of-archive blocks"), "{why}");
    // Not a tar file at all: not for this check to say.
    std::fs::write(&p, b"PGDMP and more").unwrap();
    assert_eq!(tar_dump_cut(&p), None);
}

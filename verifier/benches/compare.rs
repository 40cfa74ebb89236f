//! The compare kernel: one large file pair (SHA-256 of the restored bytes plus a
//! byte compare with the source), and a tree of small files on one worker and
//! on every core. `cargo bench -p verifier`; scripts/bench.sh compares the whole
//! command with diff -r, rsync and sha256sum.

use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use verifier::{CompareOptions, Deadline, compare, content_check};

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn kernel(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let len = 64 << 20;
    let data = noise(len, 1);
    write(tmp.path(), "a/big", &data);
    write(tmp.path(), "b/big", &data);
    let (a, b) = (tmp.path().join("a/big"), tmp.path().join("b/big"));
    let mut g = c.benchmark_group("content_check");
    g.throughput(Throughput::Bytes(len as u64));
    g.sample_size(20);
    g.bench_function("64MiB against source", |bench| {
        bench.iter(|| black_box(content_check(Some(&a), &b, &Deadline::none()).unwrap()))
    });
    g.bench_function("64MiB hash only", |bench| {
        bench.iter(|| black_box(content_check(None, &b, &Deadline::none()).unwrap()))
    });
    g.finish();
}

fn tree(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let files = 4_000u32;
    for i in 0..files {
        let data = noise(64 + (i as usize * 37) % 8192, i);
        let rel = format!("d{:02}/f{i:05}", i % 40);
        write(&tmp.path().join("a"), &rel, &data);
        write(&tmp.path().join("b"), &rel, &data);
    }
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let mut g = c.benchmark_group("compare_tree");
    g.throughput(Throughput::Elements(files as u64));
    g.sample_size(20);
    let cores = verifier::worker_count(0);
    for threads in [1, cores] {
        g.bench_with_input(
            BenchmarkId::new("4000 small files, workers", threads),
            &threads,
            |bench, &threads| {
                let opts = CompareOptions {
                    threads,
                    ..Default::default()
                };
                bench.iter(|| {
                    let r = compare(Some(&a), &b, &opts).unwrap();
                    assert_eq!(r.content_checked, files as u64);
                    black_box(r)
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, kernel, tree);
criterion_main!(benches);

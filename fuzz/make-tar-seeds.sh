#!/usr/bin/env bash
# Writes the tar fuzz target's seeds (fuzz/seeds/tar/) with the real
# archivers: the entry kinds and compressions the tar driver reads beyond
# fixtures/tar. Needs GNU tar, bsdtar, git, xz, bzip2, lz4, zstd and gzip.
set -euo pipefail
out=$(cd "$(dirname "$0")" && pwd)/seeds/tar
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
mkdir -p t/docs
printf 'report\n' > t/docs/r.txt
printf 'readme\n' > t/readme.md
ln -s /srv/app/releases/42 t/current
ln -s ../../above t/docs/up
mkfifo t/pipe
ln -P t/current t/current2
touch -d 2026-01-01T00:00:00Z t/docs/r.txt t/readme.md t/docs t
export TZ=UTC
tar_() { tar --mtime=2026-01-01 --owner=0 --group=0 --numeric-owner "$@"; }
tar_ -C t -cf "$out/gnu-fifo-links.tar" .
tar_ -C t --format=posix --pax-option=comment=seed -cf "$out/pax-global-header.tar" .
tar_ -C t -V seed-label -cf "$out/volume-label.tar" .
tar_ -C t --listed-incremental="$work/snar" -cf "$out/listed-incremental.tar" .
bsdtar --format v7 -C t -cf "$out/v7.tar" docs readme.md
tar_ -C t -cJf "$out/xz.tar.xz" docs
tar_ -C t -cjf "$out/bzip2.tar.bz2" docs
tar_ -C t -cf - docs | lz4 -q > "$out/lz4.tar.lz4"
tar_ -C t -cf - docs | zstd -q --long=31 > "$out/zstd-long.tar.zst"
tar_ -C t -cf - docs | gzip -n | dd of="$out/gzip-padded.tar.gz" bs=10240 conv=sync status=none
(cd t && git init -q . && git add -A && git -c user.name=s -c user.email=s@s commit -qm s &&
  git archive --format=tar HEAD docs > "$out/git-archive.tar")

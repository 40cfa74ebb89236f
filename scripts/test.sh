#!/usr/bin/env bash
# Installs what the tests need, then runs every check CI runs:
# fmt, clippy with -D warnings, all tests, and the README's quick start.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests use. Kept in one list; install only what is missing.
PACKAGES=(gcc make pkg-config ca-certificates procps
  prometheus prometheus-alertmanager # promtool checks /metrics; alerts reach a real Alertmanager
  restic borgbackup # real restore tools in end-to-end tests
  acl attr # setfacl and setfattr: ACLs and attributes the drills restore and compare
  libarchive-tools busybox cpio pax rsync git python3 xz-utils bzip2 lz4 zstd # real archivers and copiers write the backups drilled in tests
  sqlite3 # post-restore checks in tests
  time faketime # the fault matrix: peak memory of a run, a clock set back
  util-linux bash # isolation: unshare --net, setpriv; bash reaches a TCP port in tests
  systemd # systemd-analyze verify for the units in deploy/systemd
  curl jq iproute2 # the operator guide, run as written
  python3-venv # a venv for kubernetes-validate
  openssl # a test CA for the evidence store over TLS
  postgresql postgresql-client # throw-away clusters for dump drills
  python3-aiosmtpd # a real SMTP server for mail alerts
  chromium fonts-noto-cjk fontconfig # the HTML report, rendered headless, in Japanese too
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: missing packages ${missing[*]}; run as root or install them" >&2
    exit 1
  fi
  echo "==> apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# The offline Kubernetes schema check (its schemas ship in the package).
K8S_VALIDATE=target/tools/k8s/bin/kubernetes-validate
if [ ! -x "$K8S_VALIDATE" ]; then
  echo "==> python venv target/tools/k8s: kubernetes-validate"
  python3 -m venv target/tools/k8s
  target/tools/k8s/bin/pip install -q "kubernetes-validate==1.37.0"
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> quick start: cargo run --release -- demo"
demo_dir=$(mktemp -d)
trap 'rm -rf "$demo_dir"' EXIT
cargo run --release --locked --quiet -- demo --dir "$demo_dir/demo"

echo "==> cargo test"
cargo test --workspace --locked --no-run
cargo test --workspace --locked

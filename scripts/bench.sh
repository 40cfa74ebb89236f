#!/usr/bin/env bash
# Side-by-side benchmark of `restore-verifier compare` against diff -r,
# rsync -rcn --delete and a find | xargs sha256sum pipeline, on generated trees.
# Not part of the test suite: it writes about 8 GiB and takes 15 to 30 minutes.
#
#   scripts/bench.sh [--sets a,b,c] [--runs N] [--dir DIR] [--out FILE] [--keep]
#
#   a  4 files of 512 MiB of random data
#   b  100,000 files of log-normal sizes, about 1 GiB in all, in 1,000 folders
#   c  1,000,000 files of 0 to 1 KiB in 1,000 folders
#
# Each tree is copied with `cp -a`; one untimed pass of every tool warms the page
# cache; then the tools run in turn, N rounds (default 3), and the median wall
# time, the ratio to diff -r and the peak RSS (/usr/bin/time) are printed as a
# Markdown table, with the issue's targets marked met or missed, and the lower
# bounds this machine puts on any compare that hashes every byte. The benchmark
# also checks that compare finds a single changed byte at the start, middle and
# end of a 512 MiB file (a) and in one file out of 1,000,000 (c).
set -euo pipefail

sets=a,b,c
runs=3
base=${TMPDIR:-/tmp}
out=
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --sets) sets=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --dir) base=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ "$runs" -lt 1 ]; then
    echo "bench.sh: --runs must be at least 1" >&2
    exit 2
fi

cd "$(dirname "$0")/.."
need=()
command -v rsync >/dev/null || need+=(rsync)
[ -x /usr/bin/time ] || need+=(time)
command -v python3 >/dev/null || need+=(python3)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "bench.sh: install ${need[*]} first" >&2
        exit 2
    fi
fi

cargo build --release --quiet
rv=$PWD/target/release/restore-verifier
work=$(mktemp -d "$base/rv-bench.XXXXXX")
cleanup() { [ "$keep" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT
echo "bench.sh: working in $work" >&2

free_gib=$(df -Pk "$work" | awk 'NR==2 { print int($4 / 1048576) }')
if [ "$free_gib" -lt 10 ]; then
    echo "bench.sh: $work has ${free_gib} GiB free; the benchmark needs about 10 GiB" >&2
    exit 2
fi

gen() { # set dir
    python3 - "$1" "$2" <<'EOF'
import math, os, random, sys
kind, root = sys.argv[1], sys.argv[2]
rng = random.Random(151)
pool = os.urandom(64 << 20)
def put(path, n):
    off = rng.randrange(0, len(pool) - n) if n < len(pool) else 0
    with open(path, "wb") as f:
        f.write(pool[off:off + n])
os.makedirs(root)
if kind == "a":
    for i in range(4):
        with open(os.path.join(root, f"big{i}.bin"), "wb") as f:
            for _ in range(8):
                f.write(os.urandom(64 << 20))
elif kind == "b":
    n, mu, sigma, cap = 100_000, 8.156, 1.5, 48 << 20
    sizes = [min(cap, int(rng.lognormvariate(mu, sigma))) for _ in range(n)]
    scale = (1 << 30) / sum(sizes)
    for i, s in enumerate(sizes):
        d = os.path.join(root, f"d{i % 1000:03}")
        if i < 1000:
            os.mkdir(d)
        put(os.path.join(d, f"f{i:06}.dat"), min(cap, int(s * scale)))
elif kind == "c":
    for i in range(1_000_000):
        d = os.path.join(root, f"d{i % 1000:03}")
        if i < 1000:
            os.mkdir(d)
        put(os.path.join(d, f"f{i:07}"), rng.randrange(0, 1025))
EOF
}

# tool name -> command over $src $dst; all exit 0 on identical trees.
run_tool() { # tool src dst
    case "$1" in
        restore-verifier) "$rv" --quiet compare --manifest-out "$work/manifest.jsonl" "$2" "$3" >/dev/null ;;
        "diff -r") diff -r "$2" "$3" >/dev/null ;;
        "rsync -rcn") [ -z "$(rsync -rcn --delete --out-format='%n' "$2/" "$3/")" ] ;;
        sha256sum) (cd "$2" && find . -type f -print0 | xargs -0 sha256sum) >"$work/src.sum" &&
                   (cd "$3" && find . -type f -print0 | xargs -0 sha256sum) >"$work/dst.sum" &&
                   cmp -s "$work/src.sum" "$work/dst.sum" ;;
    esac
}
export -f run_tool
export rv work

cores=$(nproc)
# One core's SHA-256 rate in bytes/s, for the lower bounds printed at the end.
sha_rate=$(openssl speed -evp sha256 -bytes 1048576 -seconds 2 2>/dev/null | awk '/^sha256/ { printf "%.0f", $2 * 1000 }')
[ -n "$sha_rate" ] || { echo "bench.sh: openssl speed gave no SHA-256 rate" >&2; exit 2; }
floors=()

tools=("restore-verifier" "diff -r" "rsync -rcn" "sha256sum")
declare -A label=([a]="(a) 4 x 512 MiB random" [b]="(b) 100,000 files, ~1 GiB" [c]="(c) 1,000,000 files, 0-1 KiB")
results=()
failures=0

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

time_one() { # tool src dst -> "seconds maxrss_kb cpu_seconds"
    /usr/bin/time -f "%e %M %U %S" -o "$work/time" bash -c 'run_tool "$@"' _ "$1" "$2" "$3" || {
        echo "bench.sh: $1 found a difference between identical trees" >&2
        exit 1
    }
    tail -n 1 "$work/time" | awk '{ printf "%s %s %.2f\n", $1, $2, $3 + $4 }'
}

flip() { # file offset
    python3 - "$1" "$2" <<'EOF'
import sys
path, at = sys.argv[1], int(sys.argv[2])
with open(path, "r+b") as f:
    f.seek(at); b = f.read(1); f.seek(at); f.write(bytes([b[0] ^ 0x01]))
EOF
}

expect_found() { # src dst rel offset
    local json
    set +e
    json=$("$rv" --quiet compare --json "$1" "$2")
    local rc=$?
    set -e
    if [ $rc -ne 1 ] || ! python3 - "$json" "$3" "$4" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
m = r["mismatched"]
ok = m["count"] == 1 and m["items"][0]["path"] == sys.argv[2] \
    and m["items"][0]["what"] == f"content differs at byte {sys.argv[3]}"
sys.exit(0 if ok else 1)
EOF
    then
        echo "bench.sh: MISSED a changed byte at $4 of $3 (exit $rc)" >&2
        failures=$((failures + 1))
    else
        echo "bench.sh: found the changed byte at $4 of $3" >&2
    fi
}

for set in ${sets//,/ }; do
    case "$set" in a|b|c) ;; *) echo "bench.sh: unknown set $set" >&2; exit 2 ;; esac
    src=$work/$set/src dst=$work/$set/dst
    echo "bench.sh: generating set $set ..." >&2
    gen "$set" "$src"
    cp -a "$src" "$dst"
    sync # no writeback competing with the timed runs
    du -sh "$src" >&2
    echo "bench.sh: warming the cache ..." >&2
    for t in "${tools[@]}"; do time_one "$t" "$src" "$dst" >/dev/null; done
    declare -A secs=() rss=() cpus=()
    for round in $(seq 1 "$runs"); do
        for t in "${tools[@]}"; do
            time_one "$t" "$src" "$dst" >"$work/last"
            read -r s m c <"$work/last"
            secs[$t]+="$s "
            cpus[$t]+="$c "
            if [ "${rss[$t]:-0}" -lt "$m" ]; then rss[$t]=$m; fi
            echo "bench.sh: set $set round $round: $t ${s}s (CPU ${c}s), ${m} KiB" >&2
        done
    done
    declare -A med=()
    for t in "${tools[@]}"; do med[$t]=$(tr ' ' '\n' <<<"${secs[$t]}" | grep . | median); done
    for t in "${tools[@]}"; do
        results+=("$set|$t|${med[$t]}|$(awk -v a="${med[$t]}" -v b="${med["diff -r"]}" 'BEGIN { printf "%.2f", a / b }')|$(( ${rss[$t]} / 1024 ))")
    done
    # What the hardware allows: every restored byte must be hashed with SHA-256
    # (bytes / (cores x one core's rate)), and, read as diff -r reads, both
    # trees copied and compared as well (diff's own CPU time), on all cores.
    bytes=$(find "$dst" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
    diff_cpu=$(tr ' ' '\n' <<<"${cpus["diff -r"]}" | grep . | median)
    floors+=("$set|$(awk -v b="$bytes" -v r="$sha_rate" -v n="$cores" -v d="$diff_cpu" \
        'BEGIN { h = b / (r * n); printf "%.2f|%.2f", h, h + d / n }')")
    if [ "$set" = a ]; then
        size=$(stat -c %s "$dst/big1.bin")
        for at in 0 $((size / 2)) $((size - 1)); do
            flip "$dst/big1.bin" "$at"
            expect_found "$src" "$dst" big1.bin "$at"
            flip "$dst/big1.bin" "$at"
        done
    elif [ "$set" = c ]; then
        rel=d537/f0123537
        len=$(stat -c %s "$dst/$rel")
        if [ "$len" -eq 0 ]; then printf x >"$src/$rel"; cp -p "$src/$rel" "$dst/$rel"; len=1; fi
        flip "$dst/$rel" $((len / 2))
        expect_found "$src" "$dst" "$rel" $((len / 2))
    fi
    [ "$keep" = 1 ] || rm -rf "${work:?}/$set"
    unset secs rss med cpus
done

cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
{
    echo "Machine: $cores cores, ${cpu:-unknown CPU}, $(uname -r); warm page cache; median of $runs runs."
    echo "SHA-256 on one core (openssl speed, 1 MiB blocks): $(awk -v r="$sha_rate" 'BEGIN { printf "%.0f MB/s", r / 1e6 }')."
    echo
    echo "| set | tool | median s | x diff -r | peak RSS MiB |"
    echo "|---|---|---:|---:|---:|"
    for r in "${results[@]}"; do
        IFS='|' read -r set t s ratio m <<<"$r"
        echo "| ${label[$set]} | $t | $s | $ratio | $m |"
    done
    val() { # set tool SEC|RATIO|RSS
        local r s t sec ratio m
        for r in "${results[@]}"; do
            IFS='|' read -r s t sec ratio m <<<"$r"
            if [ "$s|$t" = "$1|$2" ]; then
                case "$3" in SEC) echo "$sec" ;; RATIO) echo "$ratio" ;; RSS) echo "$m" ;; esac
            fi
        done
    }
    check() { # description expression [target_seconds set]
        local note=
        if [ $# -eq 4 ]; then
            if awk -v t="$3" -v f="$(floor "$4" HASH)" 'BEGIN { exit !(t < f) }'; then
                note=" -- the target, $3 s, is below the $(floor "$4" HASH) s that hashing alone takes here"
            elif awk -v t="$3" -v f="$(floor "$4" READ)" 'BEGIN { exit !(t < f) }'; then
                note=" -- the target, $3 s, is below the estimate of $(floor "$4" READ) s for hashing plus reading as diff -r does"
            fi
        fi
        if awk "BEGIN { exit !($2) }"; then echo "- met: $1$note"; else echo "- MISSED: $1$note"; fi
    }
    secs_of() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a * b }'; }
    rvname="restore-verifier"
    floor() { # set HASH|READ
        local f s h r
        for f in "${floors[@]}"; do
            IFS='|' read -r s h r <<<"$f"
            if [ "$s" = "$1" ]; then
                case "$2" in HASH) echo "$h" ;; READ) echo "$r" ;; esac
            fi
        done
    }
    echo
    echo "What any compare that hashes every restored byte with SHA-256 needs on this machine:"
    echo "hashing alone on $cores cores (a lower bound: nothing hashes faster than one core's rate"
    echo "above), and hashing plus reading and comparing as diff -r does (its CPU time), spread"
    echo "over all cores (an estimate for a compare that reads files with read(2)):"
    echo
    echo "| set | hashing alone s | x rsync -rcn | hashing and reading s | x diff -r |"
    echo "|---|---:|---:|---:|---:|"
    for set in ${sets//,/ }; do
        h=$(floor "$set" HASH); r=$(floor "$set" READ)
        echo "| ${label[$set]} | $h | $(awk -v a="$h" -v b="$(val "$set" "rsync -rcn" SEC)" 'BEGIN { printf "%.2f", a / b }') | $r | $(awk -v a="$r" -v b="$(val "$set" "diff -r" SEC)" 'BEGIN { printf "%.2f", a / b }') |"
    done
    echo
    echo "Targets:"
    for set in ${sets//,/ }; do
        rv_s=$(val "$set" "$rvname" SEC); rv_r=$(val "$set" "$rvname" RATIO); rv_m=$(val "$set" "$rvname" RSS)
        rs_s=$(val "$set" "rsync -rcn" SEC); sh_s=$(val "$set" sha256sum SEC)
        df_s=$(val "$set" "diff -r" SEC)
        case "$set" in
            a) check "(a) at most 1.1 x diff -r (is $rv_r)" "$rv_r <= 1.1" "$(secs_of 1.1 "$df_s")" a
               check "(a) at most 0.6 x rsync -rcn (is $(awk -v a="$rv_s" -v b="$rs_s" 'BEGIN { printf "%.2f", a / b }'))" "$rv_s <= 0.6 * $rs_s" "$(secs_of 0.6 "$rs_s")" a
               check "(a) at least 10 x faster than sha256sum (is $(awk -v a="$rv_s" -v b="$sh_s" 'BEGIN { printf "%.1f", b / a }') x)" "$rv_s * 10 <= $sh_s" "$(secs_of 0.1 "$sh_s")" a ;;
            b) check "(b) at most 0.8 x diff -r (is $rv_r)" "$rv_r <= 0.8" "$(secs_of 0.8 "$df_s")" b
               check "(b) at least 10 x faster than sha256sum (is $(awk -v a="$rv_s" -v b="$sh_s" 'BEGIN { printf "%.1f", b / a }') x)" "$rv_s * 10 <= $sh_s" "$(secs_of 0.1 "$sh_s")" b ;;
            c) check "(c) peak RSS at most 64 MiB (is $rv_m)" "$rv_m <= 64"
               check "(c) at most 1.0 x diff -r (is $rv_r)" "$rv_r <= 1.0" "$(secs_of 1.0 "$df_s")" c ;;
        esac
    done
} | tee ${out:+"$out"}

if [ "$failures" -gt 0 ]; then
    echo "bench.sh: compare missed $failures planted change(s)" >&2
    exit 1
fi

#!/usr/bin/env bash
# The scenario suite and examples/real-programs/ on other kernels, each in a
# VM with a huge page pool, and on the host's kernel; then one table.
#
#   scripts/kernels.sh [--out DIR] [--suite-only | --path P...] [VERSION...]
#
# VERSION (default 6.1 6.12): a Debian 12 kernel series: its newest unsigned
# generic linux-image package. Fetched without installing anything (apt-get
# download + dpkg-deb -x), with Debian 12's QEMU and virtme-ng (PyPI,
# pinned), into the cache: $SHM_KERNELS_CACHE, else
# ${XDG_CACHE_HOME:-~/.cache}/shm-harness-kernels. Reports into DIR
# (default target/kernels/): <label>.json and <label>.junit.xml per kernel
# (label `host` or the VERSION), the raw runs in <label>/. Relative paths
# are taken from the current directory. --suite-only:
# scenarios/ alone, without examples/real-programs/ (a quicker run).
# Every timeout is multiplied by $SHM_KERNELS_TIMEOUT_SCALE (default 6:
# TCG runs the suite 5 to 10 times slower; `run --timeout-scale`). --path P
# (repeatable): these files or folders instead. Run as root.
# Exit 0: every kernel ran both isolations to the end and nothing failed;
# 1: a FAIL, a harness error, an XPASS or a missing report; 2: setup failed.
#
# Environment: SHM_KERNELS_ACCEL=kvm|tcg (default: kvm where /dev/kvm is
# usable and the CPU has vmx/svm), SHM_KERNELS_QEMU (a qemu-system-x86_64
# to use instead of Debian 12's), SHM_KERNELS_TIMEOUT (per step inside the
# VM, default 60s), SHM_KERNELS_VM_LIMIT (seconds a VM may take in all,
# default 1800), SHM_HARNESS (a shm-harness binary instead of building one).
set -euo pipefail
caller=$PWD
cd "$(dirname "$0")/.."
repo=$PWD

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
from_caller() { case "$1" in /*) echo "$1" ;; *) echo "$caller/$1" ;; esac; }
out=$repo/target/kernels
versions=()
paths=(scenarios/ examples/real-programs/)
given=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$(from_caller "$2"); shift 2 ;;
    --out=*) out=$(from_caller "${1#--out=}"); shift ;;
    --suite-only) paths=(scenarios/); shift ;;
    --path) given+=("$(from_caller "$2")"); shift 2 ;;
    --path=*) given+=("$(from_caller "${1#--path=}")"); shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "kernels: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) versions+=("$1"); shift ;;
  esac
done
[ ${#versions[@]} -gt 0 ] || versions=(6.1 6.12)
[ ${#given[@]} -eq 0 ] || paths=("${given[@]}")
[ "$(id -u)" = 0 ] || { echo "kernels: run as root (namespace isolation and the VMs' huge page pools need it)" >&2; exit 2; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
cache=${SHM_KERNELS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shm-harness-kernels}
mkdir -p "$cache"
timeout=${SHM_KERNELS_TIMEOUT_SCALE:-6}
vm_limit=${SHM_KERNELS_VM_LIMIT:-1800}
# shellcheck source=scripts/kernels/fetch.sh
source scripts/kernels/fetch.sh

# The release binary (built unless SHM_HARNESS names one): where cargo says
# its target directory is (CARGO_TARGET_DIR honoured).
harness=${SHM_HARNESS:-}
if [ -z "$harness" ]; then
  cargo build --release -p shm-harness
  target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  harness=$target_dir/release/shm-harness
fi
[ -x "$harness" ] || die "no shm-harness binary at $harness"
harness=$(cd "$(dirname "$harness")" && pwd)/$(basename "$harness")

accel=${SHM_KERNELS_ACCEL:-}
if [ -z "$accel" ]; then
  # /dev/kvm alone is not enough: under nested virtualisation without
  # vmx/svm it opens but cannot run a guest.
  if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qw -e vmx -e svm /proc/cpuinfo; then accel=kvm; else accel=tcg; fi
fi
case "$accel" in kvm | tcg) ;; *) die "SHM_KERNELS_ACCEL=$accel: expected kvm or tcg" ;; esac

apt_lists
fetch_qemu
fetch_vng
kernels=()
for v in "${versions[@]}"; do
  img=$(fetch_kernel "$v")
  kernels+=("$img")
done

# A fresh folder per kernel: a stale report never stands in for a run.
fresh() { rm -rf "${out:?}/$1" "$out/$1.json" "$out/$1.junit.xml"; mkdir -p "$out/$1"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f\n", b - a }'; }

echo "== host kernel $(uname -r): the suite inside a private IPC namespace" >&2
fresh host
t0=$(now)
unshare -i scripts/kernels/guest.sh "$out/host" "$harness" "$timeout" "${paths[@]}" || true
printf 'accel=host\nwall_s=%s\nvng_rc=-\n' "$(elapsed "$t0" "$(now)")" >"$out/host/meta"

for i in "${!versions[@]}"; do
  v=${versions[$i]} img=${kernels[$i]}
  echo "== kernel $v ($(basename "$img"), $accel): boot and run the suite in a VM" >&2
  fresh "$v"
  printf -v guest '%q ' scripts/kernels/guest.sh "$out/$v" "$harness" "$timeout" "${paths[@]}"
  vng_args=(--run "$img" --qemu "$QEMU_BIN" --force-9p --cpus 2 --memory 4G
    --append 'hugepagesz=2M hugepages=16 hugepagesz=1G hugepages=1'
    --rwdir "$out/$v" --cwd "$repo"
    --exec "$guest")
  [ -n "$BUSYBOX" ] && vng_args+=(--busybox "$BUSYBOX")
  [ -n "$QEMU_OPTS" ] && vng_args+=(--qemu-opts "$QEMU_OPTS")
  [ "$accel" = tcg ] && vng_args+=(--disable-kvm)
  t0=$(now)
  # vng's own status and console say nothing reliable (no udevd: 255):
  # the verdict is in the files guest.sh wrote; its output is kept for
  # when it did not get that far.
  # In the background, so that an interrupted script takes its VM along
  # (timeout leads a process group of its own: QEMU is in it).
  PATH="$(dirname "$VNG"):$PATH" timeout --kill-after=30 "$vm_limit" \
    "$VNG" "${vng_args[@]}" </dev/null >"$out/$v/vng.log" 2>&1 &
  vm=$!
  trap 'kill -- -$vm 2>/dev/null; exit 130' INT TERM
  rc=0
  wait "$vm" || rc=$?
  trap - INT TERM
  printf 'accel=%s\nwall_s=%s\nvng_rc=%s\nimage=%s\n' "$accel" "$(elapsed "$t0" "$(now)")" "$rc" "$(basename "$img")" >"$out/$v/meta"
done

python3 scripts/kernels/table.py "$out" host "${versions[@]}"

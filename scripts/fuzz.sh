#!/usr/bin/env bash
# Runs every fuzz target for SECONDS_PER_TARGET (default 30) and prints, per
# target: executions, execs/s, new coverage, crashes; then checks that the
# host IPC namespace holds nothing new.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
#   FUZZ_SANITIZER=address scripts/fuzz.sh 60   # nightly toolchain, AddressSanitizer
#   FUZZ_TARGETS="ops args" scripts/fuzz.sh      # a subset
#
# The committed seed corpora (fuzz/corpus/<target>/) are read, never written:
# new inputs go to a temporary directory, crashes to fuzz/artifacts/<target>/.
# Every target enters a private IPC namespace of its own (it refuses the
# host's), so this needs root or unprivileged user namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-30}"
sanitizer="${FUZZ_SANITIZER:-none}"
targets="${FUZZ_TARGETS:-args ops parser ftok}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: installing it from crates.io"
  cargo install cargo-fuzz --locked
fi
if [ "$sanitizer" = none ]; then
  toolchain=()
  san=(-s none)
else
  toolchain=(+nightly)
  san=(-s "$sanitizer")
fi

ipcs_ids() { ipcs -m 2>/dev/null | awk 'NR>3 && NF>=5 {print $2}' | sort; }
before=$(mktemp)
ipcs_ids >"$before"

echo "== building the targets (sanitizer: $sanitizer)"
(cd fuzz && cargo "${toolchain[@]}" fuzz build "${san[@]}" -O)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
printf '\n%-8s %12s %10s %8s %8s %8s\n' target executions execs/s cov new crashes
for t in $targets; do
  mkdir -p "$work/$t" "fuzz/artifacts/$t"
  log="$work/$t.log"
  status=0
  (cd fuzz && cargo "${toolchain[@]}" fuzz run "${san[@]}" -O "$t" "$work/$t" "corpus/$t" -- \
      -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 -max_len=4096 \
      -artifact_prefix="artifacts/$t/") >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  new=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  crashes=$(grep -c -E '^==[0-9]+== ?ERROR|deadly signal|panicked at' "$log" || true)
  printf '%-8s %12s %10s %8s %8s %8s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${new:-?}" "$crashes"
  if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    failed=1
    echo "---- $t failed (exit $status); the end of its log:"
    tail -40 "$log"
    echo "---- reproduce: (cd fuzz && cargo fuzz run ${san[*]} $t artifacts/$t/<crash-file>)"
  fi
done

after=$(mktemp)
ipcs_ids >"$after"
new=$(comm -13 "$before" "$after")
if [ -n "$new" ]; then
  echo "leak: the host IPC namespace gained segments: $new" >&2
  ipcs -m -p >&2
  failed=1
else
  echo "host IPC namespace: nothing new"
fi
exit "$failed"

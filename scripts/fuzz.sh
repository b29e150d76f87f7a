#!/usr/bin/env bash
# Runs every fuzz target for SECONDS_PER_TARGET (default 30) and prints, per
# target: executions, execs/s, new coverage, crashes; then checks what the
# targets' own IPC namespaces held when they ended.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
#   FUZZ_SANITIZER=address scripts/fuzz.sh 60   # nightly toolchain, AddressSanitizer
#   FUZZ_TARGETS="ops args" scripts/fuzz.sh      # a subset
#   FUZZ_RUN_AS=65534 scripts/fuzz.sh 5          # as root: build, then fuzz as that uid (CI's unprivileged smoke)
#
# The committed seed corpora (fuzz/corpus/<target>/) are read, never written:
# new inputs go to a temporary directory, crashes to fuzz/artifacts/<target>/.
# The args and ops targets enter a private IPC namespace of their own before
# libFuzzer starts its threads (as root, or as any user where unprivileged
# user namespaces are allowed) and refuse the host's; each says at exit how
# many segments its namespace still holds, which must be 0. The machine's
# own namespace is not compared before and after: other programs may create
# segments there meanwhile, and the targets never touch it.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-30}"
sanitizer="${FUZZ_SANITIZER:-none}"
targets="${FUZZ_TARGETS:-args ops parser ftok}"
run_as="${FUZZ_RUN_AS:-}"

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

echo "== building the targets (sanitizer: $sanitizer)"
(cd fuzz && cargo "${toolchain[@]}" fuzz build "${san[@]}" -O)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -n "$run_as" ]; then
  # Run the built binaries directly as that user, on copies it can read and write.
  # Where cargo puts them (honours CARGO_TARGET_DIR and .cargo/config).
  target_dir=$(cd fuzz && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  [ -d "$target_dir" ] || { echo "cargo metadata gave no target directory for fuzz/" >&2; exit 1; }
  triple=$(rustc -vV | sed -n 's/^host: //p')
  bin_dir="$target_dir/$triple/release"
  mkdir -p "$work/bin"
  for t in $targets; do
    cp "$bin_dir/$t" "$work/bin/$t"
    mkdir -p "$work/seeds/$t" "$work/artifacts/$t"
    cp -r "fuzz/corpus/$t/." "$work/seeds/$t/"
  done
  chmod -R a+rwX "$work"
  echo "== fuzzing as uid $run_as (setpriv), binaries from $bin_dir"
fi
failed=0
printf '\n%-8s %12s %10s %8s %8s %8s  %s\n' target executions execs/s cov new crashes "IPC namespace at exit"
for t in $targets; do
  mkdir -p "$work/$t"
  log="$work/$t.log"
  status=0
  flags=(-max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 -max_len=4096)
  if [ -n "$run_as" ]; then
    chmod a+rwx "$work/$t"
    setpriv --reuid="$run_as" --regid="$run_as" --clear-groups \
      "$work/bin/$t" "${flags[@]}" -artifact_prefix="$work/artifacts/$t/" "$work/$t" "$work/seeds/$t" \
      >"$log" 2>&1 || status=$?
  else
    mkdir -p "fuzz/artifacts/$t"
    (cd fuzz && cargo "${toolchain[@]}" fuzz run "${san[@]}" -O "$t" "$work/$t" "corpus/$t" -- \
        "${flags[@]}" -artifact_prefix="artifacts/$t/") >"$log" 2>&1 || status=$?
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  new=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  crashes=$(grep -c -E '^==[0-9]+== ?ERROR|deadly signal|panicked at' "$log" || true)
  # The targets that touch shared memory report their namespace at exit.
  ns="-"
  if grep -q 'shm-harness fuzzing: private IPC namespace' "$log"; then
    left=$(sed -n 's/^shm-harness fuzzing: at exit the private IPC namespace holds \([0-9]*\) segments$/\1/p' "$log" | tail -1)
    if [ "$left" = 0 ]; then
      ns="private, empty"
    else
      ns="private, ${left:-no end-of-run report} segments left"
      failed=1
    fi
  elif grep -q 'shm-harness fuzzing: host IPC namespace' "$log"; then
    ns="host (SHM_HARNESS_FUZZ_KEYS)"
  fi
  printf '%-8s %12s %10s %8s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${new:-?}" "$crashes" "$ns"
  if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    failed=1
    echo "---- $t failed (exit $status); the end of its log:"
    tail -40 "$log"
    if [ -n "$run_as" ]; then
      mkdir -p "fuzz/artifacts/$t"
      cp -r "$work/artifacts/$t/." "fuzz/artifacts/$t/" 2>/dev/null || true
    fi
    echo "---- reproduce: (cd fuzz && cargo ${toolchain[*]} fuzz run ${san[*]} -O $t artifacts/$t/<crash-file>)"
  fi
done
exit "$failed"

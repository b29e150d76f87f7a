#!/usr/bin/env bash
# The memory API's race-freedom, checked by tools that can say no:
#
# 1. ThreadSanitizer on tests/race.rs (two threads hammer one attachment
#    through the safe API): must run clean.
# 2. The same test with the planted bug `plain-copies` (read_at/write_at as
#    plain memcpy): ThreadSanitizer must report a data race. This is the
#    control that shows step 1 could fail.
# 3. Miri on the copy routines (sysv::atomic_copy) over ordinary memory.
#
# Needs the nightly toolchain with rust-src and miri; installs them with
# rustup if missing (rustup fetches from the Rust dist server). If they
# cannot be installed, says so and exits 0 with SKIPPED: the checks did not
# run, which is not a pass. Separate target dirs keep the sanitized builds
# apart from the normal ones.
set -euo pipefail
cd "$(dirname "$0")/.."

host=$(rustc -vV | sed -n 's/^host: //p')
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  if ! rustup toolchain install nightly --profile minimal; then
    echo "SKIPPED: the nightly toolchain is not installed and rustup cannot install it here" >&2
    exit 0
  fi
fi
for component in rust-src miri; do
  if ! rustup +nightly component list --installed 2>/dev/null | grep -q "^$component"; then
    if ! rustup +nightly component add "$component"; then
      echo "SKIPPED: nightly component $component is missing and rustup cannot install it here" >&2
      exit 0
    fi
  fi
done

tsan() {
  # Everything, std included (-Zbuild-std), is instrumented.
  RUSTFLAGS="-Zsanitizer=thread" RUSTDOCFLAGS="-Zsanitizer=thread" \
    TSAN_OPTIONS="halt_on_error=1" \
    cargo +nightly test -Zbuild-std --target "$host" --target-dir target/tsan \
    -p shm-harness --test race "$@"
}

echo "== ThreadSanitizer: the safe API from two threads (must be clean)"
log=$(mktemp)
if ! tsan 2>&1 | tee "$log"; then
  echo "FAILED: the race test failed under ThreadSanitizer" >&2
  exit 1
fi
if grep -q "ThreadSanitizer" "$log"; then
  echo "FAILED: ThreadSanitizer reported something on the safe API" >&2
  exit 1
fi
if ! grep -q "^race test: ok" "$log"; then
  echo "FAILED: the race test did not run (no 'race test: ok' line; skipped?)" >&2
  exit 1
fi

echo "== ThreadSanitizer: the planted plain-copies race (must be reported)"
if SHM_HARNESS_PLANTED=plain-copies tsan --features planted-bugs 2>&1 | tee "$log"; then
  echo "FAILED: with plain copies the race test passed: ThreadSanitizer saw no race, so step 1 proves nothing" >&2
  exit 1
fi
if ! grep -q "WARNING: ThreadSanitizer: data race" "$log"; then
  echo "FAILED: the planted race test failed, but not with a ThreadSanitizer data race report" >&2
  exit 1
fi
echo "planted race reported, as it must be"

echo "== Miri: the copy routines on ordinary memory"
cargo +nightly miri test --target-dir target/miri -p shm-harness --lib sysv::atomic_copy
rm -f "$log"
echo "sanitizers: all checks passed"

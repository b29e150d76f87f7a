#!/usr/bin/env bash
# Mutation testing of the wrapper and the fuzz model (not run in CI: each
# mutant rebuilds, so the whole run takes hours on two cores).
#
#   scripts/mutants.sh            # every mutant of sysv/ and fuzzing/model.rs
#   scripts/mutants.sh --shard 1/4   # (extra arguments go to cargo mutants)
#
# The judge is `cargo test --workspace`. Everything runs inside a private IPC
# namespace (`unshare -i`, root), so a mutant that breaks removal can leave
# segments only there, never on the host. Results: target/mutants/mutants.out
# (caught.txt, missed.txt, unviable.txt, timeout.txt). Mutants that cannot be
# observed are listed, with the reason, in harness/mutants-equivalent.md.
# Excluded: planted.rs and the operators of shmget_raw, which are all in
# `#[cfg(feature = "planted-bugs")]` code that `cargo test --workspace` does
# not compile (the planted bugs have their own test, tests/planted_bugs.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants
run=(cargo mutants
  -f 'harness/src/sysv/*.rs' -f harness/src/fuzzing/model.rs
  --exclude harness/src/sysv/planted.rs
  --exclude-re ' in shmget_raw$'
  --test-workspace true
  --copy-target false
  --baseline skip
  --timeout "${MUTANTS_TIMEOUT:-240}"
  --build-timeout "${MUTANTS_BUILD_TIMEOUT:-900}"
  --jobs "${MUTANTS_JOBS:-1}"
  --output target/mutants
  "$@")
if [ "$(id -u)" = 0 ] && unshare -i true 2>/dev/null; then
  exec unshare -i "${run[@]}"
fi
echo "not root (or no unshare -i): running in this IPC namespace; the tests isolate themselves" >&2
exec "${run[@]}"

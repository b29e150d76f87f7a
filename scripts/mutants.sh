#!/usr/bin/env bash
# Mutation testing of the wrapper and the fuzz model.
#
#   scripts/mutants.sh                 # every mutant of sysv/ and fuzzing/model.rs (hours on two cores)
#   scripts/mutants.sh --shard 1/4     # (extra arguments go to cargo mutants)
#   scripts/mutants.sh --ci-shard      # what CI runs: one random shard, judged against the list
#   MUTANTS_SHARD=3 scripts/mutants.sh --ci-shard   # replay the shard CI printed
#
# The judge is `cargo test --workspace`. Everything runs inside a private IPC
# namespace (`unshare -i`, root), so a mutant that breaks removal can leave
# segments only there, never on the host. Results: target/mutants/mutants.out
# (caught.txt, missed.txt, unviable.txt, timeout.txt). Mutants that cannot be
# observed are listed, with the reason, in harness/mutants-equivalent.md.
# Excluded: harness/src/sysv/planted.rs, the one file with
# `#[cfg(feature = "planted-bugs")]` code, which `cargo test --workspace`
# does not compile (the planted bugs have their own test,
# tests/planted_bugs.rs); the rest of the crate reaches it through calls
# without operators of their own.
#
# --ci-shard: shard K of MUTANTS_SHARDS (default 48, about 11 mutants, each a rebuild of the
# workspace's tests and a run of them: under 5 minutes on two idle cores; K random unless
# MUTANTS_SHARD is set, and printed so that a failure can be replayed), in
# place (the tree's own target/, warm after `cargo test --workspace`; the
# sources are restored after each mutant). Mutants that time out are run
# once more with a longer timeout. Fails only on a missed mutant that
# harness/mutants-equivalent.md does not list (its `equivalent-mutants`
# block: one line per mutant, `FILE: DESCRIPTION` without line and column, a
# line given as often as that many mutants of that name may be missed).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=27.1.0
if [ "$(cargo mutants --version 2>/dev/null)" != "cargo-mutants $VERSION" ]; then
  cargo install --locked cargo-mutants --version "$VERSION"
fi

files=(-f 'harness/src/sysv/*.rs' -f harness/src/fuzzing/model.rs
  --exclude harness/src/sysv/planted.rs)
common=(--test-workspace true
  --baseline skip
  --build-timeout "${MUTANTS_BUILD_TIMEOUT:-900}")

# Runs cargo mutants with its arguments, in a private IPC namespace if root.
mutants() {
  if [ "$(id -u)" = 0 ] && unshare -i true 2>/dev/null; then
    unshare -i cargo mutants "$@"
  else
    echo "not root (or no unshare -i): running in this IPC namespace; the tests isolate themselves" >&2
    cargo mutants "$@"
  fi
}

if [ "${1:-}" != --ci-shard ]; then
  run=("${files[@]}" "${common[@]}"
    --copy-target false
    --timeout "${MUTANTS_TIMEOUT:-240}"
    --jobs "${MUTANTS_JOBS:-1}"
    --output target/mutants
    "$@")
  mutants "${run[@]}"
  exit
fi

# Lines of FILE (cargo-mutants' missed.txt or timeout.txt) as the list's
# keys: `FILE: DESCRIPTION`, line and column dropped, sorted.
keys() {
  sed -E 's/^([^:]+):[0-9]+:[0-9]+: /\1: /' "$1" | LC_ALL=C sort
}

# The names in FILE as one anchored regex for --re (the characters Rust's
# regex::escape escapes, escaped).
names_re() {
  python3 -c 'import re,sys; print("^(" + "|".join(re.sub(r"([\\.+*?()|\[\]{}^$#&~-])", r"\\\1", l.rstrip("\n")) for l in open(sys.argv[1]) if l.strip()) + ")$")' "$1"
}

# Exit status of cargo mutants: 0 all caught, 2 missed, 3 timeouts; others
# (usage, a build that cannot start) are failures of the run itself.
judge_status() {
  case "$1" in
    0 | 2 | 3) ;;
    *)
      echo "cargo mutants failed to run (status $1)" >&2
      exit "$1"
      ;;
  esac
}

shards=${MUTANTS_SHARDS:-48}
shard=${MUTANTS_SHARD:-$((RANDOM % shards))}
timeout=${MUTANTS_TIMEOUT:-240}
out=target/mutants-ci
rm -rf "$out" "$out-retry"
echo "mutants: shard $shard/$shards (replay: MUTANTS_SHARD=$shard MUTANTS_SHARDS=$shards scripts/mutants.sh --ci-shard)"
start=$SECONDS
status=0
mutants "${files[@]}" "${common[@]}" --in-place --timeout "$timeout" \
  --shard "$shard/$shards" --sharding round-robin --output "$out" || status=$?
judge_status "$status"
missed=$(mktemp)
cat "$out/mutants.out/missed.txt" >"$missed"
if [ -s "$out/mutants.out/timeout.txt" ]; then
  echo "mutants: $(wc -l <"$out/mutants.out/timeout.txt") timed out; once more with timeout $((timeout * 3))s"
  status=0
  mutants "${files[@]}" "${common[@]}" --in-place --timeout "$((timeout * 3))" \
    --re "$(names_re "$out/mutants.out/timeout.txt")" --output "$out-retry" || status=$?
  judge_status "$status"
  cat "$out-retry/mutants.out/missed.txt" >>"$missed"
  if [ -s "$out-retry/mutants.out/timeout.txt" ]; then
    # A mutant under which the tests never finish is not one they pass.
    echo "mutants: still timing out (the tests hang under them, so they are not missed):"
    cat "$out-retry/mutants.out/timeout.txt"
  fi
fi
listed=$(mktemp)
sed -n '/^```text equivalent-mutants$/,/^```$/{/^```/d;p}' harness/mutants-equivalent.md | LC_ALL=C sort >"$listed"
unlisted=$(LC_ALL=C comm -23 <(keys "$missed") "$listed")
n_missed=$(grep -c . "$missed" || true)
n_unlisted=$(printf '%s' "$unlisted" | grep -c . || true)
echo "mutants: shard $shard/$shards in $((SECONDS - start))s: $(grep -c . "$out/mutants.out/caught.txt" || true) caught," \
  "$n_missed missed ($((n_missed - n_unlisted)) listed as equivalent), $(grep -c . "$out/mutants.out/unviable.txt" || true) unviable"
if [ -n "$unlisted" ]; then
  echo "FAILED: missed mutants that harness/mutants-equivalent.md does not list (kill each with a test, or list it with the reason):" >&2
  printf '  %s\n' "$unlisted" >&2
  echo "every missed mutant of this shard, with its line:" >&2
  sed 's/^/  /' "$missed" >&2
  exit 1
fi

#!/usr/bin/env bash
# Mutation testing of the wrapper and the fuzz model.
#
#   scripts/mutants.sh                 # every mutant of sysv/ and fuzzing/model.rs (hours on two cores)
#   scripts/mutants.sh --shard 1/4     # (extra arguments go to cargo mutants)
#   scripts/mutants.sh --ci            # what CI runs: the mutants of the code changed since the
#                                      # baseline, judged against the list
#
# Two judges, in turn. The quick one is the tests that exercise these files
# (`cargo test -p shm-harness --lib --test mapping --test wrapper --test race
# --test fuzz_replay`, seconds); a mutant it misses, or under which it times
# out, goes to the full one (`cargo test --workspace`, over a minute). A
# mutant is missed only if the full judge misses it. Everything runs inside a
# private IPC namespace (`unshare -i`, root), so a mutant that breaks removal
# can leave segments only there, never on the host. Results:
# target/mutants/{quick,full}/mutants.out (caught.txt, missed.txt,
# unviable.txt, timeout.txt). Mutants that cannot be observed are listed, with
# the reason, in harness/mutants-equivalent.md.
# Excluded: harness/src/sysv/planted.rs, the one file with
# `#[cfg(feature = "planted-bugs")]` code, which `cargo test --workspace`
# does not compile (the planted bugs have their own test,
# tests/planted_bugs.rs); the rest of the crate reaches it through calls
# without operators of their own.
#
# --ci: deterministic. The set is the mutants in `git diff BASELINE` of the
# files above, BASELINE being the `mutants-baseline:` commit in
# harness/mutants-equivalent.md, the tree in which every mutant was last
# run and found caught or listed. The same tree always gives the same set,
# so CI's verdict never depends on a draw. More than MUTANTS_CI_MAX (16)
# mutants in the diff: the 16 whose names hash lowest (see `choose`; still
# deterministic, and stable while the code only moves), and a line saying
# that the baseline is due for a move (run `scripts/mutants.sh --ci` with
# MUTANTS_CI_MAX=100000 locally, then
# record HEAD). Fails only on a missed mutant that
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
paths=(harness/src/sysv harness/src/fuzzing/model.rs)
common=(--baseline skip --in-place
  --build-timeout "${MUTANTS_BUILD_TIMEOUT:-900}")
quick_judge=(--test-workspace false --test-package shm-harness
  --timeout "${MUTANTS_QUICK_TIMEOUT:-120}"
  -- --lib --test mapping --test wrapper --test race --test fuzz_replay)
timeout=${MUTANTS_TIMEOUT:-240}

# Runs cargo mutants with its arguments, in a private IPC namespace if root.
mutants() {
  if [ "$(id -u)" = 0 ] && unshare -i true 2>/dev/null; then
    unshare -i cargo mutants "$@"
  else
    echo "not root (or no unshare -i): running in this IPC namespace; the tests isolate themselves" >&2
    cargo mutants "$@"
  fi
}

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

count() { grep -c . "$1" 2>/dev/null || true; }

# The N mutants of FILE (cargo-mutants' --list) whose `FILE: DESCRIPTION`
# (line and column dropped, and the occurrence's rank among mutants of that
# name) hashes lowest: a choice that moving code up or down leaves alone.
choose() {
  python3 - "$1" "$2" <<'PY'
import hashlib, re, sys
seen, ranked = {}, []
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if not line:
        continue
    key = re.sub(r"^([^:]+):[0-9]+:[0-9]+: ", r"\1: ", line)
    seen[key] = seen.get(key, 0) + 1
    ranked.append((hashlib.sha256(f"{key}#{seen[key]}".encode()).hexdigest(), line))
for _, line in sorted(ranked)[: int(sys.argv[2])]:
    print(line)
PY
}

# Judges the mutants that ARGS select (file filters, --in-diff, --shard,
# --re ...) in two tiers, results under OUT/{quick,full}; the missed ones,
# with line and column, end up in OUT/missed.txt.
two_tiers() {
  local out=$1
  shift
  rm -rf "$out"
  mkdir -p "$out"
  local status=0
  mutants "${files[@]}" "${common[@]}" "$@" --output "$out/quick" "${quick_judge[@]}" || status=$?
  judge_status "$status"
  local q=$out/quick/mutants.out
  cat "$q/missed.txt" "$q/timeout.txt" >"$out/again.txt"
  echo "mutants: quick judge: $(count "$q/caught.txt") caught, $(count "$q/missed.txt") missed," \
    "$(count "$q/timeout.txt") timed out, $(count "$q/unviable.txt") unviable"
  : >"$out/missed.txt"
  if [ -s "$out/again.txt" ]; then
    echo "mutants: $(count "$out/again.txt") to the full judge (cargo test --workspace, timeout $((timeout * 3))s)"
    status=0
    mutants "${files[@]}" "${common[@]}" --re "$(names_re "$out/again.txt")" \
      --test-workspace true --timeout "$((timeout * 3))" --output "$out/full" || status=$?
    judge_status "$status"
    local f=$out/full/mutants.out
    cp "$f/missed.txt" "$out/missed.txt"
    echo "mutants: full judge: $(count "$f/caught.txt") caught, $(count "$f/missed.txt") missed," \
      "$(count "$f/timeout.txt") timed out"
    if [ -s "$f/timeout.txt" ]; then
      # A mutant under which the tests never finish is not one they pass.
      echo "mutants: timing out under the full judge too (the tests hang under them, so they are not missed):"
      cat "$f/timeout.txt"
    fi
  fi
}

# Fails if OUT/missed.txt names a mutant the list does not.
judge_against_list() {
  local out=$1 listed unlisted
  listed=$(mktemp)
  sed -n '/^```text equivalent-mutants$/,/^```$/{/^```/d;p}' harness/mutants-equivalent.md | LC_ALL=C sort >"$listed"
  unlisted=$(LC_ALL=C comm -23 <(keys "$out/missed.txt") "$listed")
  rm -f "$listed"
  local n_missed n_unlisted
  n_missed=$(count "$out/missed.txt")
  n_unlisted=$(printf '%s' "$unlisted" | grep -c . || true)
  echo "mutants: $n_missed missed ($((n_missed - n_unlisted)) listed as equivalent)"
  if [ -n "$unlisted" ]; then
    echo "FAILED: missed mutants that harness/mutants-equivalent.md does not list (kill each with a test, or list it with the reason):" >&2
    printf '  %s\n' "$unlisted" >&2
    echo "every missed mutant, with its line:" >&2
    sed 's/^/  /' "$out/missed.txt" >&2
    exit 1
  fi
}

if [ "${1:-}" != --ci ]; then
  two_tiers target/mutants "$@"
  judge_against_list target/mutants
  exit
fi

start=$SECONDS
baseline=$(sed -n 's/^mutants-baseline: \([0-9a-f]\{40\}\)$/\1/p' harness/mutants-equivalent.md)
if [ -z "$baseline" ]; then
  echo "harness/mutants-equivalent.md has no 'mutants-baseline: COMMIT' line" >&2
  exit 1
fi
out=target/mutants-ci
mkdir -p "$out"
if git cat-file -e "$baseline^{commit}" 2>/dev/null; then
  git diff "$baseline" -- "${paths[@]}" >"$out/changes.diff"
  if ! [ -s "$out/changes.diff" ]; then
    echo "mutants: no change to ${paths[*]} since the baseline ${baseline:0:12}: nothing to run"
    exit 0
  fi
  mutants "${files[@]}" --in-diff "$out/changes.diff" --list >"$out/list.txt"
else
  # A shallow clone: no diff to take. Every mutant of the files is a
  # candidate instead, and the same choice by name follows (still the same
  # set for the same code).
  echo "mutants: the baseline $baseline is not in this clone (shallow?): choosing among every mutant of ${paths[*]}"
  mutants "${files[@]}" --list >"$out/list.txt"
fi
n=$(count "$out/list.txt")
max=${MUTANTS_CI_MAX:-16}
echo "mutants: $n mutant(s) to choose from (baseline ${baseline:0:12})"
if [ "$n" -gt "$max" ]; then
  echo "mutants: more than $max: the $max whose names (file and description, without line) hash lowest." \
    "The same code gives the same choice. The baseline is due for a move: MUTANTS_CI_MAX=100000" \
    "scripts/mutants.sh --ci, then record HEAD in harness/mutants-equivalent.md"
fi
choose "$out/list.txt" "$max" >"$out/chosen.txt"
select=(--re "$(names_re "$out/chosen.txt")")
two_tiers "$out/run" "${select[@]}"
echo "mutants: done in $((SECONDS - start))s"
judge_against_list "$out/run"

#!/usr/bin/env bash
# Runs .clusterfuzzlite/build.sh outside Docker, as ClusterFuzzLite would in
# its image, into a temporary OUT; checks that every target, seed corpus zip
# and options file is there, and that each built target replays its seed
# corpus (-runs=0). build.sh runs as the executable it is (its shebang's
# flags kept), so its first failure stops this check too.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src" "$work/out"
ln -s "$repo" "$work/src/shm-harness"
for tool in zip unzip; do
  command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq zip unzip >/dev/null; }
done
SRC="$work/src" OUT="$work/out" WORK="$work" SANITIZER=none FUZZING_ENGINE=libfuzzer ARCHITECTURE=x86_64 \
  "$repo/.clusterfuzzlite/build.sh"
status=0
for t in args ops parser ftok; do
  for f in "$t" "${t}_seed_corpus.zip" "$t.options"; do
    [ -s "$work/out/$f" ] || { echo "missing in OUT: $f"; status=1; }
  done
  mkdir -p "$work/seeds/$t"
  unzip -q -o "$work/out/${t}_seed_corpus.zip" -d "$work/seeds/$t"
  n=$(find "$work/seeds/$t" -type f | wc -l)
  if "$work/out/$t" -runs=0 "$work/seeds/$t" >"$work/$t.log" 2>&1 && grep -q "INITED\|DONE" "$work/$t.log"; then
    echo "$t: built, $n seed inputs replayed"
  else
    echo "$t: replaying its seed corpus failed:"; tail -20 "$work/$t.log"; status=1
  fi
done
exit "$status"

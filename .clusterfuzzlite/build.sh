#!/bin/bash -eu
# Builds every fuzz target into $OUT with its seed corpus and libFuzzer
# options, for ClusterFuzzLite / OSS-Fuzz (in their base-builder-rust image),
# or by hand outside Docker:
#   SRC=/path/holding/shm-harness OUT=/tmp/out SANITIZER=none .clusterfuzzlite/build.sh
# SANITIZER=none builds without a sanitizer on stable (cargo fuzz -s none);
# any other value builds with plain `cargo fuzz build -O` on the image's
# nightly toolchain, the image's environment (RUSTFLAGS) choosing the
# sanitizer that SANITIZER names.
# The binaries are found where cargo put them: `cargo metadata`'s
# target_directory (so CARGO_TARGET_DIR is honoured), under the host triple.
# Run it as an executable (or with `bash -euo pipefail`): every failure stops it.
set -euo pipefail
project="$SRC/shm-harness"
cd "$project/fuzz"
sanitizer="${SANITIZER:-address}"
if [ "$sanitizer" = none ]; then
  cargo fuzz build -O -s none
else
  cargo fuzz build -O
fi
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
triple=$(rustc -vV | sed -n 's/^host: //p')
release="$target_dir/$triple/release"
if [ ! -d "$release" ]; then
  echo "build.sh: no built targets in $release (cargo metadata's target_directory, host $triple)" >&2
  exit 1
fi
for target in args ops parser ftok; do
  cp "$release/$target" "$OUT/$target"
  # Seed corpus: the committed inputs and the regressions.
  rm -f "$OUT/${target}_seed_corpus.zip"
  seeds=$(find "corpus/$target" -type f ! -name '*.md')
  if [ -d "regressions/$target" ]; then
    seeds+=$'\n'$(find "regressions/$target" -type f ! -name '*.md')
  fi
  printf '%s\n' "$seeds" | zip -q -j "$OUT/${target}_seed_corpus.zip" -@
  cat > "$OUT/$target.options" <<OPTIONS
[libfuzzer]
max_len = 4096
rss_limit_mb = 2560
OPTIONS
  # The targets refuse a shared IPC namespace unless told which keys they
  # own; in ClusterFuzzLite's container they may not get a private one.
  echo "0x5eed8000-0x5eed80ff" > "$OUT/$target.fuzz-keys"
done

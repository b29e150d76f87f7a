#!/bin/bash -eu
# Builds every fuzz target into $OUT with its seed corpus and libFuzzer
# options, for ClusterFuzzLite / OSS-Fuzz (in their base-builder-rust image),
# or by hand outside Docker:
#   SRC=/path/holding/shm-harness OUT=/tmp/out SANITIZER=none bash .clusterfuzzlite/build.sh
# SANITIZER=none builds without a sanitizer on stable (cargo fuzz -s none);
# any other value is passed to cargo fuzz (the image's nightly toolchain).
project="$SRC/shm-harness"
cd "$project/fuzz"
sanitizer="${SANITIZER:-address}"
if [ "$sanitizer" = none ]; then
  cargo fuzz build -O -s none
else
  cargo fuzz build -O
fi
release=$(find target -type d -path '*/release' -not -path '*/build/*' | head -n 1)
for target in args ops parser ftok; do
  cp "$release/$target" "$OUT/$target"
  # Seed corpus: the committed inputs and the regressions.
  rm -f "$OUT/${target}_seed_corpus.zip"
  (cd "$project/fuzz" && find "corpus/$target" "regressions/$target" -type f ! -name '*.md' 2>/dev/null \
     | zip -q -j "$OUT/${target}_seed_corpus.zip" -@)
  cat > "$OUT/$target.options" <<OPTIONS
[libfuzzer]
max_len = 4096
rss_limit_mb = 2560
OPTIONS
  # The targets refuse a shared IPC namespace unless told which keys they
  # own; in ClusterFuzzLite's container they may not get a private one.
  echo "0x5eed8000-0x5eed80ff" > "$OUT/$target.fuzz-keys"
done

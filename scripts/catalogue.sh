#!/bin/bash
# The catalogue's control: documented SysV shm behaviours, written from
# scenarios/README.md alone by an independent reviewer, each with a twin
# that changes one expectation (scripts/catalogue/README.md). Every base must
# PASS (or XFAIL, or SKIP with its reason); every twin must fail exactly at
# the line it changed (FAIL FILE:LINE:, or XPASS of that line under
# --strict), in namespace isolation and in host isolation (inside a private
# IPC namespace made by `unshare -i`, so the machine's is never touched).
# A twin that passes, or fails elsewhere, means the harness judged a changed
# expectation as right: exit 1.
#
#   scripts/catalogue.sh            # builds the debug binary first
#   SHM_HARNESS=path/to/shm-harness scripts/catalogue.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SHM_HARNESS:-}" ]; then
  cargo build -q -p shm-harness
  SHM_HARNESS="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/shm-harness"
fi
H=$SHM_HARNESS
python3 scripts/catalogue/make-twins.py
out_dir=$(mktemp -d)
trap 'rm -rf "$out_dir"' EXIT
bad=0 bases=0 twins=0
run() { # mode file -> status word; output kept in $out_dir
  local o="$out_dir/$(basename "$2").$1" st
  if [ "$1" = ns ]; then "$H" run --strict --color never "$2" >"$o" 2>&1 || true
  else unshare -i "$H" run --strict --color never --isolation host "$2" >"$o" 2>&1 || true; fi
  st=$(grep -oE '^(PASS|FAIL|SKIP|XFAIL|XPASS) ' "$o" | head -1 | tr -d ' ' || true)
  echo "${st:-ERR}"
}
printf '%-46s %-6s %-6s %-9s %-9s\n' behaviour ns host twin-ns twin-host
while IFS= read -r base; do
  twin=${base%.scn}.twin.scn
  line=$(cat "$twin.line")
  row=()
  for mode in ns host; do
    st=$(run "$mode" "$base")
    case $st in PASS|XFAIL|SKIP) ;; *) bad=$((bad + 1)); sed 's/^/    /' "$out_dir/$(basename "$base").$mode" | head -20 >&2 ;; esac
    row+=("$st")
    bases=$((bases + 1))
  done
  for mode in ns host; do
    base_st=${row[0]}; [ "$mode" = host ] && base_st=${row[1]}
    st=$(run "$mode" "$twin")
    o="$out_dir/$(basename "$twin").$mode"
    if [ "$st" = FAIL ] && grep -q "^FAIL $twin:$line:" "$o"; then row+=("FAIL@$line")
    elif [ "$st" = XPASS ] && grep -q "XPASS: line $line passed" "$o"; then row+=("XPASS@$line")
    elif [ "$st" = SKIP ] && [ "$base_st" = SKIP ]; then row+=(SKIP)
    else row+=("BAD:$st"); bad=$((bad + 1)); sed 's/^/    /' "$o" | head -20 >&2; fi
    twins=$((twins + 1))
  done
  printf '%-46s %-6s %-6s %-9s %-9s\n' "${base#scripts/catalogue/}" "${row[@]}"
done < <(find scripts/catalogue -name '*.scn' ! -name '*.twin.scn' | sort)
echo "catalogue: $((bases / 2)) behaviours, $bases base runs, $twins twin runs, $bad wrong"
[ "$bad" -eq 0 ]

#!/bin/bash
# Runs every catalogue scenario and its twin in namespace and host isolation.
# Base: must PASS (or SKIP/XFAIL, shown). Twin: must FAIL with the failing
# step at the line the twin changed (file NAME.twin.scn.line).
set -u
cd "$(dirname "$0")/.."
H=target/debug/shm-harness; STRICT=--strict
python3 catalogue/make-twins.py || exit 2
printf '%-48s %-6s %-6s %-10s %-10s\n' behaviour ns host twin-ns twin-host
for base in $(find catalogue -name '*.scn' ! -name '*.twin.scn' | sort); do
  twin=${base%.scn}.twin.scn; line=$(cat "$twin.line")
  r() { # mode file
    if [ "$1" = ns ]; then out=$($H run ${STRICT:-} "$2" 2>&1); else out=$(unshare -i $H run ${STRICT:-} --isolation host "$2" 2>&1); fi
    st=$(printf '%s\n' "$out" | grep -oE '^(PASS|FAIL|SKIP|XFAIL|XPASS) ' | head -1 | tr -d ' ')
    [ -z "$st" ] && st=ERR
    echo "$st"
    printf '%s\n' "$out" > "/tmp/cat-$(basename "$2").$1.out"
  }
  t() { # mode
    st=$(r "$1" "$twin")
    if [ "$st" = FAIL ] && grep -q "^FAIL $twin:$line:" "/tmp/cat-$(basename "$twin").$1.out"; then echo "FAIL@$line";
    elif [ "$st" = XPASS ] && grep -q "XPASS: line $line passed" "/tmp/cat-$(basename "$twin").$1.out"; then echo "XPASS@$line"; else echo "BAD:$st"; fi
  }
  printf '%-48s %-6s %-6s %-10s %-10s\n' "${base#catalogue/}" "$(r ns "$base")" "$(r host "$base")" "$(t ns)" "$(t host)"
done

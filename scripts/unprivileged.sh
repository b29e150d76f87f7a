#!/usr/bin/env bash
# Runs the scenario suite and the tests as an unprivileged user (uid and gid
# 65534, `nobody`, no supplementary groups), as root starts it, so that a
# scenario or a test that silently needs root fails here. Nothing is built
# twice: the release binary and the test executables root built are run.
#
#   scripts/unprivileged.sh suite   # the suite: --isolation auto, then host
#   scripts/unprivileged.sh tests   # every test executable of `cargo test --workspace`
#
# suite: the binary and scenarios/ are copied into a world-readable temporary
# folder. `auto` means a private IPC namespace per scenario through a user
# namespace where the kernel allows it (else host, and the run says so);
# `host` runs inside a private IPC namespace made by root for this run
# (`unshare -i`), so the machine's own namespace is never touched.
#
# tests: the executables run in place (the clone must be readable by that
# user; a clean clone under a world-readable folder is), with HOME and TMPDIR
# in a folder of that user's own (serial_test's lock files live in TMPDIR).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
uid=65534
as_user=(setpriv --reuid="$uid" --regid="$uid" --clear-groups)
what="${1:?usage: scripts/unprivileged.sh suite|tests}"

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/unprivileged.sh: run it as root (it switches to uid $uid itself)" >&2
  exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"

case "$what" in
suite)
  target_dir=$(cd "$repo" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  (cd "$repo" && cargo build --release -p shm-harness --quiet)
  cp "$target_dir/release/shm-harness" "$work/shm-harness"
  cp -r "$repo/scenarios" "$work/scenarios"
  chmod -R a+rX "$work"
  # A home of that user's own: host isolation keeps its journal under it
  # ($XDG_STATE_HOME, ~/.local/state) when there is no XDG_RUNTIME_DIR.
  mkdir -p "$work/home" && chown "$uid:$uid" "$work/home"
  cd "$work"
  echo "-- uid $uid, --isolation auto"
  "${as_user[@]}" env HOME="$work/home" ./shm-harness run --isolation auto -q scenarios/
  echo "-- uid $uid, --isolation host, in a private IPC namespace of this run"
  unshare -i "${as_user[@]}" env HOME="$work/home" ./shm-harness run --isolation host -q scenarios/
  ;;
tests)
  mapfile -t tests < <(cd "$repo" && cargo test --workspace --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["profile"]["test"] and m.get("executable"):
        print(m["executable"] + "\t" + m["manifest_path"])
')
  [ "${#tests[@]}" -gt 0 ] || { echo "no test executables found" >&2; exit 1; }
  if ! "${as_user[@]}" test -r "$repo/Cargo.toml"; then
    echo "the clone at $repo is not readable by uid $uid: clone it under a world-readable folder" >&2
    exit 1
  fi
  mkdir -p "$work/home" "$work/tmp"
  chown -R "$uid:$uid" "$work/home" "$work/tmp"
  for t in "${tests[@]}"; do
    exe=${t%%$'\t'*}
    dir=$(dirname "${t#*$'\t'}")
    echo "-- uid $uid: ${exe#"$repo"/}"
    (cd "$dir" && "${as_user[@]}" env HOME="$work/home" TMPDIR="$work/tmp" "$exe" -q)
  done
  ;;
*)
  echo "usage: scripts/unprivileged.sh suite|tests" >&2
  exit 2
  ;;
esac

#!/usr/bin/env bash
# A planted control for the chaos campaign's self-test (CHAOS_SELFTEST=1):
# runs the real harness ($CHAOS_REAL_HARNESS) with its arguments and plants
# one fault of the kind in $CHAOS_PLANT, which the campaign must then count.
# Planted around the harness, not through a scenario, so that the control
# keeps failing whatever the runner learns to clean up.
set -u
real=${CHAOS_REAL_HARNESS:?the real shm-harness binary}
case ${CHAOS_PLANT:?leak, stray, zombie, canary, canary-write, exit, hang or pass} in
  leak) ipcmk -M 4096 >/dev/null ;;
  stray) sleep 30 >/dev/null 2>&1 & ;;
  # A live parent that never reaps its exited child.
  zombie)
    py=/usr/bin/python3
    [ -x "$py" ] || py=python3
    "$py" -c 'import os, time
if os.fork() == 0:
    os._exit(0)
time.sleep(30)' </dev/null >/dev/null 2>&1 &
    sleep 0.3 # the zombie exists before the harness starts
    ;;
  canary) ipcrm -M "${CHAOS_CANARY_KEY:?}" ;;
  # One byte of the canary at that key overwritten (shmget, shmat, shmdt).
  canary-write)
    py=/usr/bin/python3
    [ -x "$py" ] || py=python3
    "$py" -c 'import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.shmdt.argtypes = [ctypes.c_void_p]
shmid = libc.shmget(int(sys.argv[1], 16), 0, 0)
addr = libc.shmat(shmid, None, 0)
assert shmid >= 0 and addr not in (None, 2**64 - 1), "cannot attach the canary"
ctypes.memset(addr + 100, 0x21, 1)
libc.shmdt(ctypes.c_void_p(addr))' "${CHAOS_CANARY_KEY:?}" ;;
  exit|hang|pass) ;;
  *) echo "planted-harness.sh: unknown CHAOS_PLANT=$CHAOS_PLANT" >&2; exit 2 ;;
esac
"$real" "$@"
rc=$?
case $CHAOS_PLANT in
  exit) exit 3 ;;
  hang) exec sleep 30 ;;
  # A harness that misses what it should notice: exit 0, and a JSON report
  # (--output FILE) that says every scenario passed.
  pass)
    out=
    prev=
    for a in "$@"; do
      [ "$prev" = --output ] && out=$a
      prev=$a
    done
    [ -n "$out" ] || { echo "planted-harness.sh: pass needs --output FILE" >&2; exit 2; }
    py=/usr/bin/python3
    [ -x "$py" ] || py=python3
    "$py" -c 'import json, sys
doc = json.load(open(sys.argv[1]))
for s in doc["scenarios"]:
    s.update(status="pass", reason=None, failure=None)
doc["summary"].update(passed=len(doc["scenarios"]), failed=0, errors=0)
json.dump(doc, open(sys.argv[1], "w"))' "$out" || exit 2
    exit 0
    ;;
esac
exit "$rc"

#!/usr/bin/env bash
# Fault-injection campaign: does the runner own what it makes?
#
#   scripts/chaos.sh [ITERATIONS]        # default 100 (CI); 1000 for the README table
#   SHM_HARNESS=path scripts/chaos.sh    # take this binary instead of building one
#   CHAOS_SEED=N                         # replay a campaign's random choices
#   CHAOS_RESULTS=dir                    # where logs and runs.jsonl go (default: a temp dir)
#   CHAOS_SELFTEST=1 scripts/chaos.sh    # planted controls: each oracle must catch its own,
#                                        # and a kill no step can notice must not be counted
#
# Runs the suite plus the slow scenarios of scripts/chaos/scenarios/ in both
# isolation modes with --jobs 1 and 2, each run with one random fault
# (SIGKILL of the coordinator, a supervisor, an actor or a program; SIGINT,
# SIGTERM or SIGHUP of the coordinator; SIGSTOP of an actor under a short
# --timeout; or none), with canary segments made before it starts, then a
# kill-then-rerun campaign. Prints per fault kind: runs, faults delivered,
# segments left for sweep / leaked, stray processes and zombies (0.3 s after
# the coordinator exited), hangs, canaries harmed, unexpected exit codes
# (a killed program that no later step of its scenario checks may give exit
# 0: scripts/chaos/notice.py decides from the run's JSON report).
# Exits 1 if any of those (but "left for sweep" that a sweep then removed)
# is nonzero, 2 if the campaign itself could not run.
#
# The whole campaign runs in a private IPC namespace of its own
# (`unshare -i`), host-mode runs included: the machine's namespace is
# checked to be unchanged at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

iterations=${1:-100}
case $iterations in
  '' | *[!0-9]*) echo "chaos.sh: ITERATIONS must be a number, not '$iterations'" >&2; exit 2 ;;
esac
if [ "$(id -u)" != 0 ]; then
  echo "chaos.sh: needs root (IPC namespaces, other processes' /proc entries)" >&2
  exit 2
fi
for tool in unshare nsenter ipcmk ipcrm ipcs; do
  command -v "$tool" >/dev/null || { echo "chaos.sh: $tool (util-linux) is missing" >&2; exit 2; }
done
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3) || { echo "chaos.sh: python3 is missing" >&2; exit 2; }
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' ||
  { echo "chaos.sh: needs python3 >= 3.9 (os.pidfd_open)" >&2; exit 2; }

if [ -n "${SHM_HARNESS:-}" ]; then
  binary=$SHM_HARNESS
else
  cargo build --release -p shm-harness >&2
  binary=${CARGO_TARGET_DIR:-target}/release/shm-harness
fi
[ -x "$binary" ] || { echo "chaos.sh: no binary at $binary" >&2; exit 2; }

export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in the tree
results=${CHAOS_RESULTS:-$(mktemp -d /tmp/shm-chaos.XXXXXX)}
mkdir -p "$results"
seed=()
[ -n "${CHAOS_SEED:-}" ] && seed=(--seed "$CHAOS_SEED")
selftest=()
[ "${CHAOS_SELFTEST:-0}" = 1 ] && selftest=(--selftest)

host_segments() { ipcs -m | awk 'NR>3 && NF>=5 {print $2}' | sort; }
before=$(host_segments)

rc=0
CHAOS_OUTER_IPC=$(readlink /proc/self/ns/ipc) unshare -i -- "$python" scripts/chaos/campaign.py --binary "$binary" \
  --iterations "$iterations" --results "$results" "${seed[@]}" "${selftest[@]}" || rc=$?

new=$(comm -13 <(echo "$before") <(host_segments))
if [ -n "$new" ]; then
  echo "chaos.sh: segments appeared in the machine's IPC namespace during the campaign: $new" >&2
  rc=1
else
  echo "chaos.sh: the machine's IPC namespace: nothing new"
fi
exit "$rc"

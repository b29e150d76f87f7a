#!/bin/bash
# One kernel's run: scripts/kernels/guest.sh OUT HARNESS TIMEOUT PATH...
# Runs inside the VM (root, the host's root filesystem read-only, OUT a
# shared read-write folder), and on the host inside `unshare -i`. Everything
# it has to say goes into files in OUT, never through the console (virtme-ng
# on a machine without udevd exits 255 and brings neither output nor status
# back):
#   kernel          uname -r
#   hugepages       the huge page lines of /proc/meminfo
#   uptime          seconds from the kernel's start to this script's
#   <run>.json      the report of run `namespace` or `host`
#   <run>.log       its progress; <run>.rc its exit status
#   suite_s         wall time of both runs
#   done            written last: the script ran to its end
# Namespace isolation; then host isolation inside a private IPC namespace of
# its own (unshare -i), so nothing lands in the namespace this script
# started in. --strict: an XPASS (a known defect gone) fails too.
set -u
out=$1 harness=$2 timeout=$3 # timeout: the --timeout-scale factor
shift 3
paths=("$@")

uname -r >"$out/kernel"
grep -i '^huge' /proc/meminfo >"$out/hugepages"
cut -d' ' -f1 /proc/uptime >"$out/uptime"

# run ISOLATION: one harness run, its status into ISOLATION.rc.
run() {
  local isolation=$1
  local cmd=("$harness" --color never run --isolation "$isolation" --strict --timeout-scale "$timeout"
    --format json --output "$out/$isolation.json" "${paths[@]}")
  [ "$isolation" = host ] && cmd=(unshare -i "${cmd[@]}")
  "${cmd[@]}" >"$out/$isolation.log" 2>&1
  echo $? >"$out/$isolation.rc"
}

start=$(date +%s.%N)
run namespace
run host
end=$(date +%s.%N)
awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f\n", b - a }' >"$out/suite_s"
echo "done" >"$out/done"

#!/usr/bin/env bash
# Installs, from Debian's packages, the programs examples/real-programs/
# drives, when they are missing; never fails: a program still missing
# afterwards makes its scenarios SKIP with the reason (their `needs`).
#
# Packages: util-linux (ipcs, ipcmk, ipcrm, lsipc, unshare), mount,
# procps (pmap, pgrep), perl (IPC::SysV), python3-sysv-ipc (for Debian's
# /usr/bin/python3), postgresql (postgres, initdb, pg_isready under
# /usr/lib/postgresql/*/bin).
#
# Installing the server must not start it (a running cluster would put a
# segment in the host's IPC namespace, and CI checks that nothing new is
# left there): a policy-rc.d that refuses every service start (Debian's
# mechanism for this) is put in place for the install when there is none.
set -uo pipefail

missing=()
have() { command -v "$1" >/dev/null 2>&1; }
for p in ipcs ipcmk ipcrm lsipc unshare; do have "$p" || { missing+=(util-linux); break; }; done
have mount || missing+=(mount)
{ have pmap && have pgrep; } || missing+=(procps)
{ have perl && perl -MIPC::SysV -e1 2>/dev/null; } || missing+=(perl)
/usr/bin/python3 -c 'import sysv_ipc' 2>/dev/null || missing+=(python3-sysv-ipc)
pg_found=
for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/postgres" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_isready" ] && pg_found=$d
done
[ -n "$pg_found" ] || missing+=(postgresql)

if [ ${#missing[@]} -eq 0 ]; then
    echo "real programs: all present (util-linux, mount, procps, perl, python3-sysv-ipc, postgresql in ${pg_found})"
    exit 0
fi
echo "real programs: installing from Debian's packages: ${missing[*]}"
if ! have apt-get; then
    echo "real programs: no apt-get here; the scenarios that need ${missing[*]} will skip" >&2
    exit 0
fi
policy=/usr/sbin/policy-rc.d
made_policy=
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
fi
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; }; then
    echo "real programs: apt-get failed; the scenarios that need ${missing[*]} will skip" >&2
fi
[ -n "$made_policy" ] && rm -f "$policy"
exit 0

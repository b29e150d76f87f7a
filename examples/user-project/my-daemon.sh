#!/bin/sh
# A stand-in for a user's program: it creates a SysV segment at start and
# must remove it when told to stop (SIGTERM).
id=$(ipcmk -M 4096 -p 0600 | sed -n 's/^Shared memory id: //p')
[ -n "$id" ] || exit 2
trap 'ipcrm -m "$id"; exit 0' TERM
echo "ready $id"
while :; do sleep 0.05; done

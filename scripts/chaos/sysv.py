"""SysV shared memory for the chaos campaign: the segment table of the
current IPC namespace (/proc/sysvipc/shm) and canary segments (shmget,
shmat, shmdt, shmctl through ctypes).

The campaign runs in a private IPC namespace of its own (scripts/chaos.sh
re-executes it under `unshare -i`), so every segment it sees was made by
the campaign or by the runs it started; `main` refuses to start otherwise.
"""

import ctypes
import ctypes.util
import os
import subprocess

IPC_PRIVATE = 0
IPC_CREAT = 0o1000
IPC_EXCL = 0o2000
IPC_RMID = 0
SHM_RDONLY = 0o10000

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
_libc.shmget.restype = ctypes.c_int
_libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
_libc.shmat.restype = ctypes.c_void_p
_libc.shmdt.argtypes = [ctypes.c_void_p]
_libc.shmdt.restype = ctypes.c_int
_libc.shmctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
_libc.shmctl.restype = ctypes.c_int

# The columns of /proc/sysvipc/shm that IPC_STAT also reports; a canary's
# snapshot is all of them, so any change (nattch, lpid, atime, dtime, mode,
# ctime, owner, size) shows.
FIELDS = ("key", "shmid", "perms", "size", "cpid", "lpid", "nattch",
          "uid", "gid", "cuid", "cgid", "atime", "dtime", "ctime")


class SysvError(Exception):
    """A SysV call or the segment table failed: the campaign cannot see."""


def _err(call):
    e = ctypes.get_errno()
    return SysvError(f"{call}: {os.strerror(e)} (errno {e})")


def segments():
    """Reads /proc/sysvipc/shm: {shmid: {field: int}} of this namespace."""
    try:
        with open("/proc/sysvipc/shm", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise SysvError(f"read /proc/sysvipc/shm: {e}; the leak oracle "
                        "cannot see, so the campaign stops") from e
    head = lines[0].split()
    idx = {name: head.index(name) for name in FIELDS}
    out = {}
    for line in lines[1:]:
        cols = line.split()
        if not cols:
            continue
        row = {name: int(cols[i], 8 if name == "perms" else 10)
               for name, i in idx.items()}
        out[row["shmid"]] = row
    return out


def identity(row):
    """What makes a segment the same one across scans (ids are reused)."""
    return (row["shmid"], row["cpid"], row["ctime"])


def remove(shmid):
    """shmctl(IPC_RMID); only ever called inside the campaign's namespace."""
    if _libc.shmctl(shmid, IPC_RMID, None) != 0:
        raise _err(f"shmctl({shmid}, IPC_RMID)")


def _pattern(shmid, size):
    unit = f"chaos-canary-{shmid}|".encode()
    return (unit * (size // len(unit) + 1))[:size]


def write_pattern(shmid, size):
    """shmat, copies the canary's pattern in, shmdt."""
    addr = _libc.shmat(shmid, None, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        raise _err(f"shmat({shmid}, NULL, 0)")
    data = _pattern(shmid, size)
    ctypes.memmove(addr, data, size)
    if _libc.shmdt(addr) != 0:
        raise _err(f"shmdt({shmid})")


def pattern_intact(shmid, size):
    """shmat(SHM_RDONLY), compares the pattern, shmdt. Changes atime, dtime
    and lpid: call it after the IPC_STAT comparison, then re-snapshot."""
    addr = _libc.shmat(shmid, None, SHM_RDONLY)
    if addr in (None, ctypes.c_void_p(-1).value):
        raise _err(f"shmat({shmid}, NULL, SHM_RDONLY)")
    try:
        return ctypes.string_at(addr, size) == _pattern(shmid, size)
    finally:
        if _libc.shmdt(addr) != 0:
            raise _err(f"shmdt({shmid})")


class Canary:
    """A segment the campaign made before the runs and that no run may
    touch: its /proc/sysvipc/shm row and its content must stay as they were."""

    def __init__(self, name, make):
        self.name = name
        self._make = make
        self.create()

    def create(self):
        self.shmid, self.size = self._make()
        write_pattern(self.shmid, self.size)
        self.row = segments()[self.shmid]

    def check(self):
        """Returns what changed (empty when intact), then re-snapshots (the
        content check itself moves lpid/atime/dtime), recreating a canary
        that is gone or damaged so one bad run does not poison the next."""
        row = segments().get(self.shmid)
        if row is None or identity(row) != identity(self.row):
            harm = [f"removed (shmid {self.shmid}, key {self.row['key'] & 0xffffffff:#010x}, "
                    f"cpid {self.row['cpid']})"]
        else:
            harm = [f"{f} {self.row[f]} -> {row[f]}" for f in FIELDS if row[f] != self.row[f]]
            if not pattern_intact(self.shmid, self.size):
                harm.append("content changed")
        if harm:
            if row is not None and identity(row) == identity(self.row):
                remove(self.shmid)
            self.create()
        else:
            self.row = segments()[self.shmid]
        return harm


def make_canaries(key):
    """Three canaries: one at a literal key a slow scenario uses, one
    IPC_PRIVATE, one made by `ipcmk` (its creator's pid has died)."""

    def at_key():
        shmid = _libc.shmget(key, 4096, IPC_CREAT | IPC_EXCL | 0o600)
        if shmid < 0:
            raise _err(f"shmget({key:#010x}, 4096, IPC_CREAT|IPC_EXCL|0600)")
        return shmid, 4096

    def private():
        shmid = _libc.shmget(IPC_PRIVATE, 8192, IPC_CREAT | 0o640)
        if shmid < 0:
            raise _err("shmget(IPC_PRIVATE, 8192, IPC_CREAT|0640)")
        return shmid, 8192

    def dead_creator():
        out = subprocess.run(["ipcmk", "-M", "12288", "-p", "0600"], check=True,
                             capture_output=True, text=True).stdout
        return int(out.strip().rsplit(":", 1)[1]), 12288

    return [Canary(f"key {key:#010x}", at_key), Canary("IPC_PRIVATE", private),
            Canary("dead creator (ipcmk)", dead_creator)]

"""Processes for the chaos campaign: a view of /proc, the roles of a run's
process tree, and signals sent through pidfds (a pid can be recycled
between the look and the kill; a pidfd cannot).

Every run's coordinator carries SHM_CHAOS_RUN=<run id> in its environment,
which every descendant inherits: strays are found by that tag, not by pids.
"""

import os
import signal

TAG = "SHM_CHAOS_RUN"


class ProcError(Exception):
    """/proc could not be read: the stray oracle cannot see."""


class Proc:
    __slots__ = ("pid", "ppid", "pgrp", "state", "comm", "exe", "tags")

    def __init__(self, pid, ppid, pgrp, state, comm, exe, tags):
        self.pid, self.ppid, self.pgrp, self.state = pid, ppid, pgrp, state
        self.comm, self.exe, self.tags = comm, exe, tags

    def describe(self):
        return f"{self.pid} ({self.comm}, state {self.state}, parent {self.ppid})"


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def stat_of(pid):
    raw = _read(f"/proc/{pid}/stat").decode("utf-8", "replace")
    comm = raw[raw.index("(") + 1:raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), comm, int(rest[2])


def scan(with_tags=True):
    """Every process of the machine: {pid: Proc}, with the tags of the
    campaign's own descendants (the only processes a run can have made:
    the campaign is a child subreaper, so no orphan of a run leaves its
    subtree; other processes' environments may not even be readable). A
    process that vanishes while being read is left out; an unreadable file
    of a descendant is an error (fail closed: an oracle that cannot see
    must not pass)."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            state, ppid, comm, pgrp = stat_of(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
        except PermissionError as e:
            raise ProcError(f"cannot read /proc/{pid}/stat: {e}") from e
        out[pid] = Proc(pid, ppid, pgrp, state, comm, "", set())
    prefix = (TAG + "=").encode()
    for pid in descendants(out, os.getpid()):
        p = out[pid]
        if p.state in "ZX":
            continue  # a zombie has no environment (ESRCH) nor exe
        try:
            if with_tags:
                for var in _read(f"/proc/{pid}/environ").split(b"\0"):
                    if var.startswith(prefix):
                        p.tags.add(var[len(prefix):].decode("ascii", "replace"))
            try:
                p.exe = os.readlink(f"/proc/{pid}/exe")
            except FileNotFoundError:
                p.exe = ""  # zombies have none
        except (FileNotFoundError, ProcessLookupError):
            try:  # died while being read: a zombie now, or gone
                p.state = stat_of(pid)[0]
            except (FileNotFoundError, ProcessLookupError):
                del out[pid]
        except PermissionError as e:
            raise ProcError(f"cannot read /proc/{pid} (a descendant of the campaign): {e}; "
                            "the stray oracle cannot see, so the campaign stops") from e
    return out


def descendants(procs, root):
    """The processes under `root` (not root itself), with their depth."""
    children = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    out, todo = {}, [(c, 1) for c in children.get(root, [])]
    while todo:
        pid, depth = todo.pop()
        out[pid] = depth
        todo.extend((c, depth + 1) for c in children.get(pid, []))
    return out


def role(procs, pid, coordinator, harness_exe):
    """supervisor, actor, program, or something else ("harness": another
    named process of the harness; "program child": a process a program
    started; "unknown"). The redesign names its processes (prctl
    PR_SET_NAME: shm-sup, shm-act-NAME); the current code does not, so fall
    back on what it does: a forked copy of the harness that stayed in the
    coordinator's process group and has forked actors is a supervisor
    (actors get a group of their own; the namespace probe, also in the
    coordinator's group, forks nothing), and a different executable started
    by a harness process is a program."""
    p = procs[pid]
    if p.comm == "shm-sup":
        # A supervisor is the coordinator's child; a process it forked
        # (an actor, a `needs` probe) carries its name until it renames
        # itself or execs: not a supervisor, and not a target.
        return "supervisor" if p.ppid == coordinator else "harness"
    if p.comm.startswith("shm-act-"):
        return "actor"

    def harness(q):
        return q is not None and (q.comm.startswith("shm-") or (
            q.exe != "" and q.exe.removesuffix(" (deleted)") == harness_exe))

    if harness(p):
        if p.comm.startswith("shm-") and p.comm != "shm-harness":
            return "harness"
        if p.pgrp != procs[coordinator].pgrp:
            return "actor"
        has_children = any(q.ppid == pid for q in procs.values())
        return "supervisor" if has_children else "harness"
    if not p.exe:
        return "unknown"  # exiting, or between fork and exec: not a target
    return "program" if harness(procs.get(p.ppid)) else "program child"


def tagged(procs, tags, also=()):
    """The processes carrying one of `tags` (or in `also`), plus everything
    under them: zombies (whose environment is empty) and children that
    scrubbed their environment."""
    hit = {pid for pid, p in procs.items() if p.tags & tags} | set(also)
    changed = True
    while changed:
        changed = False
        for pid, p in procs.items():
            if pid not in hit and p.ppid in hit:
                hit.add(pid)
                changed = True
    return hit


def signal_pid(pid, sig, still_ours):
    """pidfd_open, re-checks that the pid is still the process we mean
    (`still_ours()`, e.g. its tag), then pidfd_send_signal. Returns False
    when the process is gone."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if not still_ours():
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def has_tag(pid, tags):
    try:
        env = _read(f"/proc/{pid}/environ")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return any(f"{TAG}={t}".encode() in env.split(b"\0") for t in tags)


def reap_orphans():
    """The campaign is a child subreaper: orphans of a run are reparented
    to it. Reaps those that have exited (call only when no subprocess of
    the campaign's own is being waited for)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return

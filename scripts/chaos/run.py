"""One run of the chaos campaign: start the coordinator with a tag, deliver
one fault, wait, and measure what is left (segments, strays, zombies,
canaries, exit status)."""

import os
import random
import re
import signal
import subprocess
import time

import notice
import procs
import sysv

STRAY_WAIT = 0.3  # seconds after the coordinator's exit before looking

# Fault kinds: (name, role aimed at, signal).
KINDS = [
    ("none", None, None),
    ("SIGKILL coordinator", "coordinator", signal.SIGKILL),
    ("SIGKILL supervisor", "supervisor", signal.SIGKILL),
    ("SIGKILL actor", "actor", signal.SIGKILL),
    ("SIGKILL program", "program", signal.SIGKILL),
    ("SIGINT coordinator", "coordinator", signal.SIGINT),
    ("SIGTERM coordinator", "coordinator", signal.SIGTERM),
    ("SIGHUP coordinator", "coordinator", signal.SIGHUP),
    ("SIGSTOP actor", "actor", signal.SIGSTOP),
]
# The faults after which the run's owner may have had no chance to clean
# up: what they leave may be removed by `shm-harness sweep` (or a rerun).
SWEPT = {"SIGKILL coordinator", "SIGINT coordinator", "SIGTERM coordinator",
         "SIGHUP coordinator"}


def acceptable(kind, rc, out, run=None, repo=None):
    """Whether the coordinator's exit fits the fault. rc is Popen's
    returncode (negative: killed by that signal). `run` (with its victim,
    JSON report and no-fault baseline) and `repo` let a SIGKILLed program
    that no later step checks give exit 0 (see notice.py)."""
    _, role, sig = next(k for k in KINDS if k[0] == kind)
    if kind == "SIGKILL program" and rc == 0 and run is not None:
        jobs = 1 if run.mode == "host" else run.jobs  # host isolation runs one at a time
        return notice.exit0_expected(run.victim, run.report, repo, run.baseline, jobs)
    if kind == "none":
        return rc == 0
    if kind == "SIGKILL coordinator":
        return rc == -signal.SIGKILL
    if role == "coordinator":  # SIGINT, SIGTERM, SIGHUP
        return rc in (-sig, 128 + sig) or (rc in (1, 2) and out.strip() != "")
    # A killed supervisor, actor or program, or a stopped actor: the run
    # must fail (1) with a FAIL report, and a stopped actor must be reported
    # (a step timeout, "no answer within 500ms", or found stopped at
    # teardown), not hang. (Processes that are done with their scenario
    # rename themselves shm-sup-end / shm-end-NAME and are not picked.)
    if rc != 1 or "FAIL" not in out:
        return False
    return kind != "SIGSTOP actor" or re.search(r"time(d)? ?out|no answer within|was stopped", out, re.I) is not None


class Run:
    def __init__(self, ident, kind, mode, jobs, paths, timeout):
        self.id, self.kind, self.mode, self.jobs = ident, kind, mode, jobs
        self.paths, self.timeout = paths, timeout
        self.delay = None
        self.delivered = kind == "none"
        self.target = ""
        self.rc = None
        self.hang = False
        self.duration = 0.0
        self.left = []      # segments present right after the run
        self.leaked = []    # still present after the sweep (or = left)
        self.strays = []
        self.zombies = []
        self.harmed = []
        self.ok_exit = True
        self.sweep_rc = None  # `shm-harness sweep`'s exit status, when it ran
        self.report = None    # the run's JSON report (--format json --output)
        self.victim = None    # the killed program, as notice.victim describes it
        self.out = None       # the run's stdout (its progress lines)
        self.baseline = None  # {file: status} of the no-fault run of this configuration

    def cmd(self, binary):
        return [binary, "run", "--isolation", self.mode, "--jobs", str(self.jobs),
                "--timeout", self.timeout, "--format", "json", "--output", self.report,
                *self.paths]

    def record(self):
        return {k: getattr(self, k) for k in (
            "id", "kind", "mode", "jobs", "timeout", "delay", "delivered", "target", "rc",
            "hang", "duration", "left", "leaked", "strays", "zombies", "harmed", "ok_exit",
            "sweep_rc", "victim")}


def _default_interrupts():
    """In the child before exec: SIGINT, SIGTERM and SIGHUP to their
    default dispositions (the campaign runs no threads, so a preexec_fn is
    safe here)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def start(binary, run, logdir, repo):
    env = dict(os.environ)
    env[procs.TAG] = run.id
    # The JSON report goes to a file; stdout keeps the text report.
    run.report = os.path.join(logdir, f"{run.id}.json")
    run.out = os.path.join(logdir, f"{run.id}.out")
    out = open(run.out, "wb")
    err = open(os.path.join(logdir, f"{run.id}.err"), "wb")
    # A session of its own: nothing the harness does to its own process
    # groups can reach the campaign. The interrupts the campaign sends
    # must arrive as a user's do: the harness keeps an inherited ignore
    # (`nohup`, a background job's SIGINT), so the campaign, whatever it
    # inherited, starts the harness with the default dispositions.
    p = subprocess.Popen(run.cmd(binary), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                         env=env, cwd=repo, start_new_session=True, preexec_fn=_default_interrupts)
    out.close()
    err.close()
    return p


def deliver(p, run, binary, sig, role, attempts):
    """Sends `sig` to a process of `role` in the run's tree; retried while
    no such process exists, then given up ("not delivered")."""
    for _ in range(attempts):
        if p.poll() is not None:
            return False
        if role == "coordinator":
            try:
                p.send_signal(sig)  # Popen knows whether it was reaped
            except ProcessLookupError:
                return False
            run.target = f"coordinator {p.pid}"
            return True
        table = procs.scan(with_tags=False)
        under = procs.descendants(table, p.pid)
        if p.pid not in table:
            return False
        # The harness executable is the coordinator's own (SHM_HARNESS may
        # be a wrapper that execs it).
        harness_exe = table[p.pid].exe or os.path.realpath(binary)
        cands = [pid for pid in under if table[pid].state not in "ZX"
                 and procs.role(table, pid, p.pid, harness_exe) == role]
        random.shuffle(cands)
        for pid in cands:
            want = table[pid]

            def same(pid=pid, want=want):
                try:
                    state, ppid, comm, _ = procs.stat_of(pid)
                except (FileNotFoundError, ProcessLookupError):
                    return False
                return ppid == want.ppid and comm == want.comm and state not in "ZX"

            # Who the program is, read before the kill (its /proc goes with it).
            victim = notice.victim(table, pid) if role == "program" else None
            done = notice.finished(run.out)
            if procs.signal_pid(pid, sig, same):
                run.target = f"{role} {want.describe()}"
                if victim is not None:
                    victim.update(done_before=done, done_after=len(notice.finished(run.out)))
                run.victim = victim
                return True
        time.sleep(0.01)
    return False


def kill_tree(tags):
    """SIGKILLs every process carrying one of `tags` or under the campaign
    (stopped ones too: SIGKILL needs no SIGCONT), until none is left;
    returns what it found."""
    found = []
    for _ in range(200):
        table = procs.scan()
        live = [pid for pid in procs.tagged(table, tags, procs.descendants(table, os.getpid()))
                if table[pid].state not in "ZX"]
        if not live:
            break
        for pid in live:
            if not found or pid not in {f[0] for f in found}:
                found.append((pid, table[pid].describe()))

            def mine(pid=pid, ppid=table[pid].ppid):
                if procs.has_tag(pid, tags):
                    return True
                try:
                    return procs.stat_of(pid)[1] == ppid
                except (FileNotFoundError, ProcessLookupError):
                    return False

            procs.signal_pid(pid, signal.SIGKILL, mine)
        time.sleep(0.01)
        procs.reap_orphans()
    else:
        raise procs.ProcError(f"processes tagged {sorted(tags)} survive SIGKILL")
    procs.reap_orphans()
    return found


def look(tags):
    """Strays (live) and zombies: the tagged processes, and any process
    left under the campaign (call when none of its own children runs: a
    run's orphans are reparented to it, tag or no tag). A stray in an IPC
    namespace other than the campaign's (a scenario's, in namespace
    isolation) keeps that namespace and its segments alive: those are
    named after it."""
    table = procs.scan()
    hit = procs.tagged(table, tags, procs.descendants(table, os.getpid()))
    live = [p for p in sorted(hit) if table[p].state not in "ZX"]
    strays = [table[p].describe() + held_segments(p) for p in live]
    zombies = [table[p].describe() for p in sorted(hit) if table[p].state == "Z"]
    return strays, zombies


def held_segments(pid):
    """", holding IPC namespace N with K segments" when the process is in
    an IPC namespace other than the campaign's; "" otherwise."""
    try:
        ns = os.readlink(f"/proc/{pid}/ns/ipc")
    except (FileNotFoundError, ProcessLookupError):
        return ""
    if ns == os.readlink("/proc/self/ns/ipc"):
        return ""
    got = subprocess.run(["nsenter", f"--ipc=/proc/{pid}/ns/ipc", "cat", "/proc/sysvipc/shm"],
                         capture_output=True, text=True, check=False)
    if got.returncode != 0:
        return f", in IPC namespace {ns} (its segments unreadable: {got.stderr.strip()})"
    return f", holding IPC namespace {ns} with {len(got.stdout.splitlines()) - 1} segment(s)"


def new_segments(before, canaries):
    """Segments of the campaign's namespace that were not there before the
    run and are not canaries."""
    keep = {sysv.identity(r) for r in before.values()}
    keep |= {sysv.identity(c.row) for c in canaries}
    return {i: r for i, r in sysv.segments().items() if sysv.identity(r) not in keep}


def describe_segment(r):
    return f"shmid {r['shmid']} key {r['key'] & 0xffffffff:#010x} cpid {r['cpid']} nattch {r['nattch']}"


def execute(binary, run, logdir, repo, canaries, expected, sweep_cmd, hang_bound):
    """Runs one campaign run and fills in its measurements."""
    _, role, sig = next(k for k in KINDS if k[0] == run.kind)
    before = sysv.segments()
    t0 = time.monotonic()
    p = start(binary, run, logdir, repo)
    if sig is not None:
        run.delay = round(random.uniform(0.005, max(0.02, expected)), 3)
        time.sleep(run.delay)
        attempts = 40 if role == "program" else 10
        run.delivered = deliver(p, run, binary, sig, role, attempts)
    try:
        p.wait(timeout=hang_bound)
    except subprocess.TimeoutExpired:
        run.hang = True
        p.kill()  # first, so that kill_tree's reaping cannot take its status
        p.wait()
        kill_tree({run.id})
    run.duration = round(time.monotonic() - t0, 3)
    run.rc = p.returncode
    time.sleep(STRAY_WAIT)
    procs.reap_orphans()
    run.strays, run.zombies = look({run.id})
    kill_tree({run.id})
    left = new_segments(before, canaries)
    run.left = [describe_segment(r) for r in left.values()]
    # After every fault that may leave something for it (not only when
    # something was left: the sweep must not touch canaries either).
    if sweep_cmd and run.kind in SWEPT and run.delivered:
        env = dict(os.environ)
        env[procs.TAG] = run.id + "-sweep"
        with open(os.path.join(logdir, f"{run.id}.sweep"), "wb") as f:
            try:
                run.sweep_rc = subprocess.run(sweep_cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                                              cwd=repo, timeout=hang_bound, check=False).returncode
            except subprocess.TimeoutExpired:
                run.hang = True
        kill_tree({run.id + "-sweep"})
        left = new_segments(before, canaries)
    run.leaked = [describe_segment(r) for r in left.values()]
    for shmid in left:
        sysv.remove(shmid)  # so one bad run does not poison the next
    for c in canaries:
        harm = c.check()
        if harm:
            run.harmed.append(f"{c.name}: {', '.join(harm)}")
    with open(os.path.join(logdir, f"{run.id}.out"), encoding="utf-8", errors="replace") as f:
        out = f.read()
    with open(os.path.join(logdir, f"{run.id}.err"), encoding="utf-8", errors="replace") as f:
        out += f.read()
    # A fault that never arrived leaves a run that must behave as "none".
    judged = run.kind if run.delivered else "none"
    run.ok_exit = run.hang or (acceptable(judged, run.rc, out, run, repo) and run.sweep_rc in (None, 0))
    return run

"""The chaos campaign's engine (started by scripts/chaos.sh, which builds
the binary and puts the campaign in a private IPC namespace of its own).

usage: campaign.py --binary PATH --iterations N --results DIR [--seed S] [--selftest]
"""

import argparse
import ctypes
import json
import os
import random
import subprocess
import sys
import time

import notice
import procs
import rerun as rerunmod
import run as runmod
import sysv

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PATHS = ["scenarios/", "scripts/chaos/scenarios/"]
CANARY_KEY = 0x7C4A0001  # a literal key of scripts/chaos/scenarios/chaos-slow-programs.scn
CONFIGS = [("namespace", 1), ("namespace", 2), ("host", 1), ("host", 2)]
PR_SET_CHILD_SUBREAPER = 36

COLUMNS = ["runs", "delivered", "not delivered", "left for sweep", "leaked", "strays",
           "zombies", "hangs", "canaries harmed", "unexpected exits"]
FAILING = ["leaked", "strays", "zombies", "hangs", "canaries harmed", "unexpected exits"]


def die(msg):
    print(f"chaos: {msg}", file=sys.stderr)
    sys.exit(2)


def own_namespace_or_die():
    mine = os.readlink("/proc/self/ns/ipc")
    outer = os.environ.get("CHAOS_OUTER_IPC", "")
    if not outer or mine == outer:
        die("refusing to run in the machine's IPC namespace: start me through "
            "scripts/chaos.sh (it re-executes under `unshare -i`)")
    if sysv.segments():
        die("the campaign's IPC namespace is not empty at start; it must be fresh")


def counts(r):
    fault = r.kind != "none"
    swept = r.kind in runmod.SWEPT
    return {
        "runs": 1,
        "delivered": int(fault and r.delivered),
        "not delivered": int(fault and not r.delivered),
        "left for sweep": len(r.left) if swept else 0,
        "leaked": len(r.leaked),
        "strays": len(r.strays),
        "zombies": len(r.zombies),
        "hangs": int(r.hang),
        "canaries harmed": len(r.harmed),
        "unexpected exits": int(not r.ok_exit),
    }


def table(title, rows, columns):
    width = max([len(title)] + [len(k) for k in rows]) + 2
    print(f"\n{title:<{width}}" + "".join(f"{c:>{max(len(c), 4) + 2}}" for c in columns))
    for name, row in rows.items():
        print(f"{name:<{width}}" + "".join(f"{row[c]:>{max(len(c), 4) + 2}}" for c in columns))


def add(total, part):
    for k, v in part.items():
        total[k] = total.get(k, 0) + v


def measure_expected(binary, logdir, canaries):
    """One no-fault run per configuration: how long a run lasts (the
    window faults are drawn from), and the status of each scenario (what a
    run whose fault went unnoticed must report). Each is also a "none" run
    of the table."""
    expected, baselines, runs = {}, {}, []
    for mode, jobs in CONFIGS:
        r = runmod.Run(f"base-{mode}-j{jobs}", "none", mode, jobs, PATHS, "3s")
        runmod.execute(binary, r, logdir, REPO, canaries, 0.0, None, 60.0)
        if r.rc != 0:
            die(f"the no-fault run {r.id} failed (exit {r.rc}; {logdir}/{r.id}.out): "
                "faults cannot be judged against a run that fails by itself")
        expected[(mode, jobs)] = r.duration
        baselines[(mode, jobs)] = notice.statuses(r.report)
        if baselines[(mode, jobs)] is None:
            die(f"the no-fault run {r.id} wrote no JSON report ({r.report})")
        runs.append(r)
    return expected, baselines, runs


def plan(n, rng):
    """Fault kinds in shuffled rounds (balanced), each with a configuration
    drawn from CONFIGS (every scenario has its own supervisor process, in
    both isolations and at any --jobs)."""
    kinds = [k[0] for k in runmod.KINDS]
    out = []
    while len(out) < n:
        round_ = kinds[:]
        rng.shuffle(round_)
        for kind in round_:
            mode, jobs = rng.choice(CONFIGS)
            out.append((kind, mode, jobs))
    return out[:n]


def report_offenders(runs, logdir):
    bad = {}
    for r in runs:
        c = counts(r)
        for col in FAILING:
            if c[col]:
                bad.setdefault(col, []).append(r)
    for col, rs in bad.items():
        print(f"\n{col}: {len(rs)} run(s); first ones:")
        for r in rs[:4]:
            print(f"  {r.id} [{r.kind}, {r.mode}, --jobs {r.jobs}, fault after {r.delay} s "
                  f"to {r.target or '-'}] exit {r.rc}; logs {logdir}/{r.id}.*")
            detail = {"leaked": r.leaked, "strays": r.strays, "zombies": r.zombies,
                      "canaries harmed": r.harmed}.get(col, [])
            for d in detail[:3]:
                print(f"      {d}")
    return bad


def campaign(args, binary, command, canaries, logdir, rng):
    sweep = None
    if subprocess.run([binary, "sweep", "--help"], capture_output=True, check=False).returncode == 0:
        sweep = [binary, "sweep"]
    print(f"chaos: binary {binary}; `sweep` {'supported' if sweep else 'not supported'}; "
          f"seed {args.seed}; {args.iterations} runs + {max(4, args.iterations // 10)} reruns")
    expected, baselines, runs = measure_expected(binary, logdir, canaries)
    print("chaos: no-fault run durations: " + ", ".join(
        f"{m} --jobs {j}: {d:.2f} s" for (m, j), d in expected.items()))
    for i, (kind, mode, jobs) in enumerate(plan(args.iterations - len(runs), rng)):
        timeout = "500ms" if kind == "SIGSTOP actor" else "3s"
        r = runmod.Run(f"r{i:04d}", kind, mode, jobs, PATHS, timeout)
        exp = expected[(mode, jobs)]
        r.baseline = baselines[(mode, jobs)]
        runmod.execute(command, r, logdir, REPO, canaries, exp, sweep, 3 * exp + 10)
        runs.append(r)
        if (i + 1) % 25 == 0:
            print(f"chaos: {len(runs)} runs done", file=sys.stderr)
    reruns = []
    for i in range(max(4, args.iterations // 10)):
        jobs = rng.choice([1, 2])
        rr = rerunmod.Rerun(f"k{i:03d}", jobs)
        exp = expected[("host", jobs)]
        rerunmod.execute(binary, rr, logdir, REPO, PATHS, canaries, exp, 3 * exp + 10)
        reruns.append(rr)
    return runs, reruns


def print_tables(runs, reruns):
    by_kind = {k[0]: {c: 0 for c in COLUMNS} for k in runmod.KINDS}
    by_conf = {f"{m} --jobs {j}": {c: 0 for c in COLUMNS} for m, j in CONFIGS}
    total = {c: 0 for c in COLUMNS}
    for r in runs:
        c = counts(r)
        add(by_kind[r.kind], c)
        add(by_conf[f"{r.mode} --jobs {r.jobs}"], c)
        add(total, c)
    by_kind["total"] = total
    table("fault", by_kind, COLUMNS)
    table("configuration", by_conf, COLUMNS)
    fail = sum(total[c] for c in FAILING)
    # A fault kind that mostly never arrived measured nothing.
    for kind, row in by_kind.items():
        if kind not in ("none", "total") and row["runs"] >= 4 and row["delivered"] * 2 < row["runs"]:
            print(f"chaos: {kind}: only {row['delivered']} of {row['runs']} faults delivered")
            fail += 1
    if reruns:
        cols = ["runs", "kill delivered", "left segments", "left strays", "rerun removed",
                "rerun reported", "left, reported unproven", "remaining after rerun",
                "removed, not reported",
                "strays after rerun", "zombies", "hangs", "canaries harmed", "unexpected exits"]
        rows = {"kill coordinator, rerun": {c: 0 for c in cols},
                "kill everything, rerun": {c: 0 for c in cols}}
        for rr in reruns:
            f = rerunmod.failures(rr)
            row = rows["kill everything, rerun" if rr.everything else "kill coordinator, rerun"]
            add(row, {"runs": 1, "kill delivered": int(rr.delivered), "left segments": len(rr.left),
                      "left strays": len(rr.left_strays), "rerun removed": len(rr.removed),
                      "rerun reported": len(rr.reported),
                      # Not failing: a creation killed before its journal write,
                      # reported by the rerun, never removed (unproven).
                      "left, reported unproven": len(rr.unproven), **f})
            fail += sum(f.values())
        print("\nkill-then-rerun (host isolation, SIGKILL of the coordinator or of every process of the run,"
              " then the same command):")
        table("campaign", rows, cols)
    return fail


def selftest(binary, canaries, logdir):
    """Planted controls: each must be counted, or the referee cannot fail.
    And one clean control: a SIGKILL no step can notice, which must not be
    counted (or the campaign fails at random on a correct harness)."""
    plant = os.path.join(HERE, "controls", "planted-harness.sh")
    os.environ["CHAOS_REAL_HARNESS"] = binary
    os.environ["CHAOS_CANARY_KEY"] = f"{CANARY_KEY:#010x}"
    seed = ["scenarios/seed-exclusive-create.scn"]
    checked = [os.path.relpath(os.path.join(HERE, "controls", "checked-programs.scn"), REPO)]
    unchecked = [os.path.relpath(os.path.join(HERE, "controls", "unchecked-programs.scn"), REPO)]
    cases = [("leak", "none", PATHS, "leaked"), ("stray", "none", seed, "strays"),
             ("zombie", "none", seed, "zombies"), ("canary", "none", seed, "canaries harmed"),
             ("canary-write", "none", seed, "canaries harmed"),
             ("exit", "none", seed, "unexpected exits"), ("hang", "none", seed, "hangs"),
             ("none", "SIGKILL program", seed, "not delivered"),
             # A checked program killed, and a harness that exits 0 with a
             # JSON report saying every scenario passed.
             ("pass", "SIGKILL program", checked, "unexpected exits")]
    missed = 0
    runs = []
    for plant_kind, kind, paths, col in cases:
        os.environ["CHAOS_PLANT"] = plant_kind if plant_kind != "none" else "exit"
        command = plant if plant_kind != "none" else binary
        r = runmod.Run(f"selftest-{plant_kind}", kind, "host", 1, paths, "3s")
        runmod.execute(command, r, logdir, REPO, canaries, 0.05, None, 2.0)
        runs.append(r)
        got = counts(r)[col]
        if col == "unexpected exits" and kind != "none" and not r.delivered:
            got = 0  # judged as a no-fault run: the control did not happen
        aim = f" (killed: {r.target or 'nothing'})" if kind != "none" else ""
        print(f"chaos selftest: planted {plant_kind:<12} -> {col}: {got} "
              f"{'(caught)' if got else '(MISSED: this oracle cannot fail)'}{aim}")
        for d in (r.leaked + r.strays + r.zombies + r.harmed)[:2]:
            print(f"    {d}")
        missed += got == 0
    r = runmod.Run("selftest-unchecked", "SIGKILL program", "host", 1, unchecked, "3s")
    runmod.execute(binary, r, logdir, REPO, canaries, 0.05, None, 2.0)
    runs.append(r)
    bad = sum(counts(r)[c] for c in FAILING)
    ok = r.delivered and r.rc == 0 and bad == 0
    print(f"chaos selftest: unnoticeable kill ({r.target or 'not delivered'}), exit {r.rc} -> "
          f"failing counts: {bad} {'(accepted)' if ok else '(WRONG: a correct run was counted, or no kill)'}")
    missed += not ok
    missed += rerunmod.selftest()
    return runs, missed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--results", required=True)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--selftest", action="store_true")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 32)
    rng = random.Random(args.seed)
    random.seed(rng.random())
    binary = os.path.realpath(args.binary)
    own_namespace_or_die()
    # Orphans of a run come to the campaign, not to init: found and reaped here.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        die("prctl(PR_SET_CHILD_SUBREAPER) failed")
    logdir = os.path.join(args.results, "logs")
    os.makedirs(logdir, exist_ok=True)
    try:
        canaries = sysv.make_canaries(CANARY_KEY)
        t0 = time.monotonic()
        if args.selftest:
            runs, missed = selftest(binary, canaries, logdir)
            print_tables(runs, [])
            return 1 if missed else 0
        runs, reruns = campaign(args, binary, binary, canaries, logdir, rng)
        fail = print_tables(runs, reruns)
        bad = report_offenders(runs, logdir)
        for rr in reruns:
            if any(rerunmod.failures(rr).values()):
                bad.setdefault("rerun", []).append(rr)
        print(f"\nchaos: {len(runs)} runs and {len(reruns)} reruns in "
              f"{time.monotonic() - t0:.0f} s; seed {args.seed}; results in {args.results}")
        with open(os.path.join(args.results, "runs.jsonl"), "w", encoding="utf-8") as f:
            for r in runs:
                f.write(json.dumps(r.record()) + "\n")
            for rr in reruns:
                f.write(json.dumps({"rerun": rr.record()}) + "\n")
        # Keep the logs of the runs that failed a check; drop the rest.
        keep = {r.id for rs in bad.values() for r in rs}
        keep |= {i + s for i in keep for s in ("-killed", "-rerun")}
        for name in os.listdir(logdir):
            if name.rsplit(".", 1)[0] not in keep:
                os.remove(os.path.join(logdir, name))
        print(f"chaos: {'FAIL' if fail else 'PASS'}: {fail} failing count(s)")
        return 1 if fail else 0
    except (sysv.SysvError, procs.ProcError) as e:
        die(f"{e}")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The kernels' table: scenario x kernel, from the runs scripts/kernels.sh made.

    table.py OUT LABEL...   (the first LABEL is the reference, e.g. host)

Reads OUT/<label>/ (what scripts/kernels/guest.sh wrote: namespace.json,
host.json, *.rc, suite_s, kernel, done; and meta from kernels.sh), writes
OUT/<label>.json (both runs and the timings in one document) and
OUT/<label>.junit.xml (both runs, one <testsuite> each, written from the
JSON reports with the mapping of harness/src/report/junit.rs under
--strict), prints the table with every cell that differs from the
reference kernel's marked `*`, then the timings. Exit 1 on a FAIL or XPASS
in any run, a harness error, a run that did not end with status 0, a
missing report, or a run that did not reach its end; else 0.
"""

import json
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

RUNS = ("namespace", "host")


def read(path):
    """A small text file's content, stripped; None when it is missing."""
    try:
        return path.read_text().strip()
    except OSError:
        return None


def load_kernel(out, label):
    """Everything about one kernel's runs, and what went wrong with them."""
    folder = out / label
    meta = dict(line.split("=", 1) for line in (read(folder / "meta") or "").splitlines() if "=" in line)
    k = {
        "label": label,
        "kernel": read(folder / "kernel"),
        "accel": meta.get("accel"),
        "image": meta.get("image"),
        "wall_s": float(meta["wall_s"]) if "wall_s" in meta else None,
        "suite_s": float(read(folder / "suite_s") or "nan"),
        "guest_uptime_at_start_s": float(read(folder / "uptime") or "nan"),
        "hugepages": (read(folder / "hugepages") or "").splitlines(),
        "runs": {},
        "problems": [],
    }
    if read(folder / "done") is None:
        k["problems"].append(f"the run did not reach its end (see {folder}/vng.log)")
    for run in RUNS:
        rc = read(folder / f"{run}.rc")
        if rc is None:
            k["problems"].append(f"{run}: no exit status")
        elif rc != "0":
            k["problems"].append(f"{run}: exit status {rc} (see {folder}/{run}.log)")
        try:
            doc = json.loads((folder / f"{run}.json").read_text())
            k["runs"][run] = {"exit_status": read(folder / f"{run}.rc"), "report": doc}
        except (OSError, ValueError) as e:
            k["problems"].append(f"{run}: unreadable JSON report: {e}")
    if k["wall_s"] is not None and k["accel"] != "host":
        k["boot_s"] = round(k["wall_s"] - k["suite_s"], 1)
    return k


def cells(k):
    """(file, isolation) -> status label, for one kernel."""
    result = {}
    for run, data in k["runs"].items():
        for s in data["report"]["scenarios"]:
            result[(s["file"], s["isolation"])] = s["status"].upper()
            if s["status"] in ("fail", "xpass"):
                what = failure_message(s)
                what = what if len(what) <= 240 else what[:237] + "..."
                k["problems"].append(f"{s['status'].upper()} {s['file']} [{s['isolation']}]: {what}")
    return result


def failure_message(s):
    """JUnit's message for a failed scenario (ScenarioReport::failure_message)."""
    f = s.get("failure")
    if f:
        return f"line {f['line']}: {f['step']}: expected {f['expected']}, got {f['actual']}"
    if s.get("reason"):
        return s["reason"]
    if s.get("leaks"):
        return f"leak: {s['leaks'][0]['message']}"
    return s["status"]


def test_case(s):
    """One scenario as a <testcase>, as harness/src/report/junit.rs writes it under --strict."""
    folder = "/".join(c for c in os.path.dirname(s["file"]).split("/") if c not in ("", ".")) or "."
    case = ET.Element("testcase", name=s["name"], classname=folder, time=f"{s['duration_us'] / 1e6:.3f}")
    status = s["status"]
    if status == "xpass":
        ET.SubElement(case, "failure", type="Xpass", message=s.get("reason") or "XPASS")
    elif status == "xfail":
        message = f"{s.get('reason') or 'xfail'}: {failure_message(s)}"
        ET.SubElement(case, "skipped", type="Xfail", message=message)
    elif status == "skip":
        ET.SubElement(case, "skipped", message=s.get("reason") or "skipped")
    elif status == "fail":
        if not s.get("failure") and s.get("reason"):
            kind, ty = "error", "HarnessError"
        else:
            kind, ty = "failure", "StepFailure" if s.get("failure") else "Leak"
        ET.SubElement(case, kind, type=ty, message=failure_message(s))
    return case


def write_junit(out, k):
    """Both runs of a kernel as one JUnit file, a <testsuite> per run named for kernel and run."""
    root = ET.Element("testsuites", name=f"shm-harness {k['label']}")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    time = 0.0
    for run, data in k["runs"].items():
        doc = data["report"]
        cases = [test_case(s) for s in doc["scenarios"]]
        counts = {
            "tests": len(cases),
            "skipped": sum(1 for c in cases if c.find("skipped") is not None),
            "failures": sum(1 for c in cases if c.find("failure") is not None),
            "errors": sum(1 for c in cases if c.find("error") is not None),
        }
        suite = ET.SubElement(
            root,
            "testsuite",
            name=f"shm-harness {k['label']} {run}",
            timestamp=doc["summary"]["started"],
            time=f"{doc['summary']['duration_s']:.3f}",
            **{key: str(v) for key, v in counts.items()},
        )
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="isolation", value=run)
        ET.SubElement(props, "property", name="kernel", value=k["kernel"] or "?")
        ET.SubElement(props, "property", name="accel", value=k["accel"] or "?")
        suite.extend(cases)
        for key in totals:
            totals[key] += counts[key]
        time += doc["summary"]["duration_s"]
    root.set("time", f"{time:.3f}")
    for key, value in totals.items():
        root.set(key, str(value))
    ET.ElementTree(root).write(out / f"{k['label']}.junit.xml", encoding="utf-8", xml_declaration=True)


def fmt_s(x):
    return "-" if x is None or x != x else f"{x:.1f} s"


def print_table(kernels, grid):
    ref = grid[0]
    rows = sorted(set().union(*grid), key=lambda r: (r[0], RUNS.index(r[1]) if r[1] in RUNS else 9))
    first = max([len("scenario [isolation]")] + [len(f"{f} [{i}]") for f, i in rows])
    width = max(8, *(len(k["label"]) + 1 for k in kernels))
    print(f"{'scenario [isolation]':<{first}}  " + "  ".join(f"{k['label']:<{width}}" for k in kernels))
    differing = 0
    for row in rows:
        line = []
        for n, g in enumerate(grid):
            cell = g.get(row, "-")
            marked = n > 0 and cell != ref.get(row, "-")
            differing += marked
            line.append(f"{cell + ('*' if marked else ''):<{width}}")
        print(f"{row[0] + ' [' + row[1] + ']':<{first}}  " + "  ".join(line).rstrip())
    print(f"\n* differs from {kernels[0]['label']}: {differing} cell(s)\n")
    for k, g in zip(kernels, grid):
        counts = {}
        for status in g.values():
            counts[status] = counts.get(status, 0) + 1
        tally = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no results"
        boot = f"boot {fmt_s(k.get('boot_s'))}, " if "boot_s" in k else ""
        print(
            f"{k['label']}: kernel {k['kernel'] or '?'}, {k['accel'] or '?'}, {boot}"
            f"suite {fmt_s(k['suite_s'])}, wall {fmt_s(k['wall_s'])}: {tally}"
        )


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[1])
    kernels = [load_kernel(out, label) for label in argv[2:]]
    grid = [cells(k) for k in kernels]
    for k in kernels:
        (out / f"{k['label']}.json").write_text(json.dumps(k, indent=2) + "\n")
        write_junit(out, k)
    print_table(kernels, grid)
    problems = [f"{k['label']}: {p}" for k in kernels for p in k["problems"]]
    for p in problems:
        print(f"problem: {p}")
    print(f"reports: {out}/<label>.json and <label>.junit.xml")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

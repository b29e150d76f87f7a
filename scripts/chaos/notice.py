"""Which kills of a program a scenario can notice: the referee's rule for
the "SIGKILL program" fault.

A SIGKILLed program fails its scenario only when a later step looks at it.
The referee therefore identifies the killed program (at the kill: its pid
as its own PID namespace sees it, its argv, the scenario process it belongs
to) in the run's JSON report (`--format json --output`) among the
scenarios that can have been running at the kill (not reported done in
the run's progress lines just before it, and below the number reported
done just after it plus the supervisors the coordinator keeps started:
--jobs + 1), and decides from the scenario's text:

- a program of a `spawn D = ...` step (its pid is in the report's
  transcript) goes unnoticed when every step after that line naming D
  (`wait D`, `signal D`, `${D}`, `cpid D`, `lpid D`, ...) cannot tell a
  SIGKILL from what the scenario does to D itself: `signal D KILL`,
  `signal D SIG => EPERM` (a killed, unreaped program keeps its
  credentials), `wait D` without checks or `=> signal KILL`. A spawn that
  no later step names (left to the teardown) always goes unnoticed;
- a program of a `run` step goes unnoticed only under `eventually` (the
  killed try is repeated). The report's transcript gives the pid of each
  `run` step's program (its last try's under `eventually`), so a `run`
  line whose entry names another pid did not start the killed program
  and is not a candidate (two lines with the same command, one under
  `eventually`, would otherwise be indistinguishable);
- a `needs command` probe (a child of the supervisor) makes its scenario
  skip, with a reason naming the command;
- any other program whose parent is a supervisor is an orphan that a
  program left running in the background (the supervisor is the
  scenario's subreaper or PID 1): no step can name it.

Exit 0 after such a kill is then expected only if the report shows every
scenario with the status it had in the no-fault run of the same
configuration (all "pass" when there is none), but a killed `needs command`
probe's scenario, which may be "skip" with that reason; and only if every
candidate the killed program could be (pids of two scenarios' PID
namespaces can coincide) goes unnoticed. Anything else keeps today's
expectation: exit 1 with a FAIL report.
"""

import json
import os
import re
import shlex

_PROGRESS = re.compile(r"^\s*(?:PASS|FAIL|SKIP|XFAIL|XPASS) (\S+) \[(?:namespace|host)\]")
_STEP = re.compile(r"^(?:&\s*)?(?:(eventually)\s+\S+:\s*)?(\w+):\s*(\w+)\b\s*(.*)$")
_KILL = {"KILL", "SIGKILL", "9"}
_cache = {}


def victim(table, pid):
    """What the referee needs to know of a program about to be killed:
    {"pid", "nspid", "argv", "actor"} (actor None when its owner is the
    supervisor), or None when /proc no longer has it."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode("utf-8", "replace") for a in f.read().split(b"\0")[:-1]]
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as f:
            nspid = next(int(l.split()[-1]) for l in f if l.startswith("NSpid:"))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return None
    actor, q = None, table[pid].ppid
    while q in table:
        comm = table[q].comm
        if comm.startswith(("shm-act-", "shm-end-")):
            actor = comm[len("shm-act-"):]
            break
        if comm.startswith("shm-sup"):
            break
        q = table[q].ppid
    return {"pid": pid, "nspid": nspid, "argv": argv, "actor": actor}


def finished(out_path):
    """The scenario files a run's progress lines (its stdout so far) report
    done."""
    try:
        with open(out_path, encoding="utf-8", errors="replace") as f:
            return [m.group(1) for m in map(_PROGRESS.match, f) if m]
    except FileNotFoundError:
        return []


def _outside_strings(line):
    """The line without its comment, and the text outside its "strings"
    (each string replaced by a placeholder), and the strings."""
    out, strings, cur, in_str, esc = [], [], [], False, False
    for ch in line:
        if in_str:
            if esc:
                cur.append(ch)
                esc = False
            elif ch == "\\":
                cur.append(ch)
                esc = True
            elif ch == '"':
                strings.append("".join(cur))
                cur, in_str = [], False
                out.append('""')
            else:
                cur.append(ch)
        elif ch == '"':
            in_str = True
        elif ch == "#":
            break
        else:
            out.append(ch)
    return " ".join("".join(out).split()), strings


def _unescape(s):
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), s)


def parse(path):
    """{line number: (text outside strings, strings)} of a scenario file
    (comments and blank lines left out); cached."""
    if path not in _cache:
        lines = {}
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, raw in enumerate(f, 1):
                outside, strings = _outside_strings(raw.rstrip("\n"))
                if outside:
                    lines[n] = (outside, strings)
        _cache[path] = lines
    return _cache[path]


def _names(outside, strings, name):
    return re.search(rf"(?<![\w$]){re.escape(name)}\b", outside) is not None or any(
        "${" + name + "}" in s for s in strings)


def blind(outside):
    """Whether a step naming a spawned program cannot tell that the program
    was SIGKILLed before it (see the module's doc)."""
    m = _STEP.match(outside)
    if not m:
        return False
    _, _, op, rest = m.groups()
    args, _, expect = (part.strip() for part in rest.partition("=>"))
    words = args.split()
    if op == "signal" and len(words) == 2:
        return (words[1].upper() in _KILL and expect in ("", "ok")) or expect == "EPERM"
    if op == "wait" and len(words) == 1:
        return expect == "" or re.fullmatch(r"signal\s+(SIG)?KILL|signal\s+9", expect, re.I) is not None
    return False


def spawn_unnoticed(lines, line, name):
    """Whether a kill of the program that `spawn NAME = ...` at `line`
    started can go unnoticed: every later step naming it is blind."""
    if not name:
        return True
    return all(blind(outside) for n, (outside, strings) in lines.items()
               if n > line and _names(outside, strings, name))


def _argv_matches(command, argv):
    """Whether a scenario's command (a string literal's content) splits
    into argv, a `${NAME}` standing for any text."""
    try:
        words = shlex.split(_unescape(command))
    except ValueError:
        return False
    if len(words) != len(argv):
        return False
    for w, a in zip(words, argv):
        pat = "".join(".*" if p.startswith("${") else re.escape(p) for p in re.split(r"(\$\{\w+\})", w))
        if re.fullmatch(pat, a, re.S) is None:
            return False
    return True


def _same_actor(name, actor):
    # A comm holds 15 bytes: "shm-act-" leaves 7 for the name.
    return name == actor or (len(actor) == 7 and name.startswith(actor))


def candidates(v, scenario, repo):
    """[(unnoticed, skip reason or None)] for each way this scenario of the
    report could own the killed program `v`; the reason is the start of the
    skip reason the kill may give the scenario."""
    lines = parse(os.path.join(repo, scenario["file"]))
    out = []
    if v["actor"] is None:
        for outside, strings in lines.values():
            if outside.startswith("needs ") and "command" in outside:
                for command in strings:
                    if _argv_matches(command, v["argv"]):
                        out.append((True, f"needs command `{_unescape(command)}`"))
        return out
    joined = " ".join(v["argv"])
    for e in scenario.get("transcript", []):
        m = re.fullmatch(r"spawn (.*?)(?: \[(\w+)\])?", e["call"], re.S)
        # The same pid in the same process, running the spawned command, or
        # what that command exec'd (`sh -c '...; exec sleep 30'`).
        if m and e["answer"] == f"pid {v['nspid']}" and _same_actor(e["process"], v["actor"]) \
                and (m.group(1) == joined or f"exec {joined}" in m.group(1)):
            out.append((spawn_unnoticed(lines, e["line"], m.group(2)), None))
    ran = {e["line"]: e.get("pid") for e in scenario.get("transcript", []) if e["call"].startswith("run ")}
    for n, (outside, strings) in lines.items():
        m = _STEP.match(outside)
        if m and m.group(3) == "run" and _same_actor(m.group(2), v["actor"]) and strings \
                and _argv_matches(strings[0], v["argv"]):
            eventually = m.group(1) == "eventually"
            if not eventually and ran.get(n) not in (None, v["nspid"]):
                continue  # this line's program had another pid
            out.append((eventually, None))
    return out


def load(report):
    try:
        with open(report, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def statuses(report):
    """{scenario file: status} of a JSON report, or None."""
    doc = load(report)
    return None if doc is None else {s["file"]: s["status"] for s in doc.get("scenarios", [])}


def running_at_kill(doc, v, jobs):
    """The scenarios of the report that can have been running when `v`
    was killed: not done before the kill, and among the first (done after
    it) + jobs + 1 (the coordinator starts scenarios in order, keeping at
    most jobs + 1 supervisors, and prints each one's line before it starts
    the next)."""
    before = set(v["done_before"])
    bound = v["done_after"] + jobs + 1
    return [s for i, s in enumerate(doc.get("scenarios", [])) if i < bound and s["file"] not in before]


def exit0_expected(v, report, repo, baseline, jobs):
    """Whether exit 0 fits a SIGKILL of program `v` (see the module's doc).
    `baseline`: {file: status} of the no-fault run, or None; `jobs`: the
    scenarios the run ran at once (1 in host isolation)."""
    doc = load(report)
    if v is None or doc is None:
        return False
    found, may_skip = [], {}
    for s in running_at_kill(doc, v, jobs):
        for unnoticed, skip in candidates(v, s, repo):
            found.append(unnoticed)
            if skip:
                may_skip.setdefault(s["file"], []).append(skip)
    if v["actor"] is None and not found:
        found.append(True)  # an orphan of a program, adopted by its supervisor
    if not found or not all(found):
        return False
    if baseline is not None and set(baseline) != {s["file"] for s in doc["scenarios"]}:
        return False
    for s in doc["scenarios"]:
        want = baseline.get(s["file"]) if baseline is not None else "pass"
        reason = s.get("reason") or ""
        if s["status"] != want and not (
                s["status"] == "skip" and any(reason.startswith(r) for r in may_skip.get(s["file"], []))):
            return False
    return True

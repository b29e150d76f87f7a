#!/usr/bin/env python3
"""Compares two `shm-harness run --format json` reports, transcript by
transcript, with what differs between two runs of the same binary masked
(timings, addresses, clock times, host pids, inode-derived keys, paths).
Usage: scripts/compare-reports.py BEFORE.json AFTER.json; exit 1 on a difference.
Scenarios that are nondeterministic by design (real servers with
`eventually`, races) are compared by status, reason, failure and leaks only."""
import json, re, sys
DROP = {'duration_us', 'duration', 'duration_ms', 'elapsed', 'time', 'seconds', 'started', 'ended', 'ms'}
PATS = [
    (re.compile(r'0x7f[0-9a-f]{10}'), 'ADDR'),
    (re.compile(r'0x5[0-9a-f]{11}'), 'ADDR'),
    (re.compile(r'0x[0-9a-f]{9,16}'), 'ADDR'),
    (re.compile(r'0x5348[0-9a-f]{4}'), 'HOSTKEY'),
    (re.compile(r'\b1[6-9][0-9]{8}\b'), 'TIME'),
    (re.compile(r'/tmp/[^\s"\'/]+'), '/tmp/X'),
    (re.compile(r'\bpid \d+'), 'pid N'),
    (re.compile(r'/work/(base|main)/'), '/REPO/'),
    (re.compile(r'(kill|waitpid)\(\d+'), r'\1(N'),
    (re.compile(r'/proc/\d+/'), '/proc/N/'),
    (re.compile(r'\(pid \d+'), '(pid N'),
    (re.compile(r'\b\d+(\.\d+)? ?(ms|s)\b'), 'DUR'),
    (re.compile(r'0x[0-9a-f]{8}\b'), 'KEY8'),
    (re.compile(r'0000[0-9a-f]{12}'), 'ADDR'),
    (re.compile(r'[A-Z][a-z]{2} +\d+ \d\d:\d\d(:\d*)?( \d{4})?'), 'DATE'),
    (re.compile(r'stdout "\d+\\n"'), 'stdout "N\\n"'),
]
def norm(v):
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items() if k not in DROP}
    if isinstance(v, list):
        return [norm(x) for x in v]
    if isinstance(v, str):
        for p, r in PATS:
            v = p.sub(r, v)
        return v
    return v


def load(path):
    d = json.load(open(path))
    return {s['file']: s for s in norm(d.get('scenarios', d))}


TRY = re.compile(r' \(try \d+, after DUR\)')


def main():
    a, b = load(sys.argv[1]), load(sys.argv[2])
    diff = steps = 0
    for f in sorted(set(a) | set(b)):
        x, y = a.get(f), b.get(f)
        if not x or not y:
            print('only in one report:', f)
            diff += 1
            continue
        for k in ('status', 'reason', 'leaks', 'failure', 'processes'):
            if x.get(k) != y.get(k):
                print(f, k, str(x.get(k))[:300], '|', str(y.get(k))[:300])
                diff += 1
        if 'postgres' in f or '/conc-' in f:
            continue
        tx, ty = x['transcript'], y['transcript']
        steps += len(tx)
        if len(tx) != len(ty):
            print(f, 'transcript length', len(tx), len(ty))
            diff += 1
            continue
        for s, t in zip(tx, ty):
            s, t = dict(s), dict(t)
            s['answer'], t['answer'] = TRY.sub('', s['answer']), TRY.sub('', t['answer'])
            if s != t:
                print(f, '\n  before:', s, '\n  after: ', t)
                diff += 1
    print(f'{len(a)} scenarios, {steps} steps compared, {diff} differences')
    sys.exit(1 if diff else 0)


main()

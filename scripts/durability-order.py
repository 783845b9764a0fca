#!/usr/bin/env python3
"""Checks that every acknowledged write's WAL sync happened before its acknowledgement left the
process, from an `strace -f -tt -T -yy` trace of a node under write load.

SIGKILL cannot show this (the page cache survives a killed process); the syscall order can. For
every HTTP response that acknowledges a write (`201 Created` or `200 OK` with `"ok":true` to a
PUT/POST/DELETE) on a TCP socket, the request it answers was read on the same socket; between
that read and the response write, a WAL sync (`fdatasync`/`fsync` on a `.log` file of the data
directory) must have *returned*. A response with no such sync is a violation.

    scripts/durability-order.py TRACE_FILE

Prints the counts and exits 1 on any violation (or when the trace holds no acknowledged write,
which would make the check vacuous).
"""
import re
import sys

# 12345 10:00:00.123456 syscall(args) = ret <0.000012>
LINE = re.compile(r"^(\d+)\s+(\d+):(\d+):(\d+\.\d+)\s+(.*)$")
UNFINISHED = re.compile(r"^(\w+)\((.*) <unfinished \.\.\.>$")
RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
# A socket renders as 7<TCP:[127.0.0.1:5984->127.0.0.1:40000]> (note the "->" inside).
FD = re.compile(r"^(\d+)<(TCP:\[[^\]]*\]|[^>]*)>")


def seconds(h, m, s):
    return int(h) * 3600 + int(m) * 60 + float(s)


def parse(path):
    """Yields (start, end, syscall, args) per completed syscall, joining unfinished/resumed."""
    pending = {}
    with open(path, errors="replace") as f:
        for raw in f:
            m = LINE.match(raw.rstrip("\n"))
            if not m:
                continue
            pid, h, mi, s, rest = m.groups()
            t = seconds(h, mi, s)
            u = UNFINISHED.match(rest)
            if u:
                pending[(pid, u.group(1))] = (t, u.group(2))
                continue
            r = RESUMED.match(rest)
            if r:
                name = r.group(1)
                start, args = pending.pop((pid, name), (t, ""))
                yield start, t, name, args + r.group(2)
                continue
            call = re.match(r"^(\w+)\((.*)$", rest)
            if call:
                yield t, t, call.group(1), call.group(2)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    syncs = []  # end times of WAL syncs
    requests = {}  # socket -> start time of the last write request read on it
    acks = []  # (socket, request time, response time)
    for start, end, name, args in parse(sys.argv[1]):
        fd = FD.match(args)
        target = fd.group(2) if fd else ""
        if name in ("fdatasync", "fsync") and target.endswith(".log"):
            syncs.append(end)
        elif name in ("read", "recvfrom", "readv") and target.startswith("TCP"):
            if re.search(r'"(PUT|POST|DELETE) /', args):
                requests[target] = start
        elif name in ("write", "writev", "sendto", "sendmsg") and target.startswith("TCP"):
            if re.search(r'"HTTP/1\.1 (201|200) ', args) and target in requests:
                acks.append((target, requests.pop(target), start))
    syncs.sort()
    import bisect

    violations = 0
    for sock, req, resp in acks:
        # A sync that returned after the request was read and before the response went out.
        i = bisect.bisect_right(syncs, req)
        if i >= len(syncs) or syncs[i] > resp:
            violations += 1
            if violations <= 10:
                print(f"violation: {sock} request at {req:.6f}, ack at {resp:.6f}, no WAL sync between")
    print(f"acknowledged writes {len(acks)}, WAL syncs {len(syncs)}, violations {violations}")
    if not acks:
        print("no acknowledged write in the trace: nothing was checked", file=sys.stderr)
        return 1
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""dibr's _LIB/outfilter.py: diskimage-builder's log filter.

Reads lines on stdin, drops xtrace bookkeeping (`set +o`, `xtrace`), and
writes each line to stdout with -v (prefixed with a UTC timestamp unless
-b) and, timestamped, to the file given with -o (appended).
"""
import argparse
import datetime
import re
import sys

NOISE = re.compile(r"(set \+o|xtrace)")


def main():
    ap = argparse.ArgumentParser(description="filter build output")
    ap.add_argument("-o", "--outfile")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("-b", "--no-timestamp", action="store_true")
    a = ap.parse_args()
    log = open(a.outfile, "ab", 0) if a.outfile else None
    for line in iter(sys.stdin.readline, ""):
        if NOISE.search(line):
            continue
        ts = datetime.datetime.now(datetime.timezone.utc)
        stamped = "%s | %s" % (ts.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], line)
        if a.verbose:
            sys.stdout.write(line if a.no_timestamp else stamped)
            sys.stdout.flush()
        if log:
            log.write(stamped.encode("utf-8", errors="surrogateescape"))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(1)

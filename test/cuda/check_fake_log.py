"""Reads the log of test/cuda/fake_libcuda.cc and prints one line for
FileCheck: how many calls the runtime made, how many allocations the
repeated ones made (a call whose launches were seen before must reuse its
buffers), launches outside calls, the fake's errors, and what was never
released.

A call is the run of events that ends with a synchronization and contains
launches (kernels, or a replayed graph). Before its launches come only the
input copies (and, on a function's first call, its allocations); after them
only the output copies.
"""
import re
import sys


def summarize(path):
    calls = repeated = repeated_allocs = misordered = errors = 0
    seen = set()
    segment = []
    unreleased = None
    for line in open(path):
        line = line.strip()
        if line.startswith("error:"):
            errors += 1
        if line.startswith("unreleased:"):
            unreleased = line
            continue
        if line != "sync":
            segment.append(line)
            continue
        kinds = [e.split()[0] for e in segment]
        runs = [e for e in segment if e.split()[0] in ("launch", "graph-launch")]
        if runs:
            calls += 1
            signature = tuple(runs)
            allocs = kinds.count("alloc")
            if signature in seen:
                repeated += 1
                repeated_allocs += allocs
            seen.add(signature)
            first = kinds.index(runs[0].split()[0])
            last = len(kinds) - 1 - kinds[::-1].index(runs[-1].split()[0])
            # Launches back to back; outputs copied after them, inputs before.
            between = set(kinds[first:last + 1]) - {"launch", "graph-launch"}
            if between or "dtoh" in kinds[:first] or "htod" in kinds[last:]:
                misordered += 1
        segment = []
    leaks = 0
    if unreleased:
        leaks = sum(int(n) for n in re.findall(r"(\d+) (?:allocations|modules|"
                                               r"streams|events|graphs|graph "
                                               r"execs|contexts)", unreleased))
    return (f"calls={calls} repeated={repeated} repeated-allocs={repeated_allocs} "
            f"misordered={misordered} errors={errors} "
            f"unloaded={'yes' if unreleased else 'no'} unreleased={leaks}")


if __name__ == "__main__":
    print(summarize(sys.argv[1]))

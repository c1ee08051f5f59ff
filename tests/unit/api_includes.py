#!/usr/bin/env python3
"""api/ has no loop of files using each other: a unit (x.c and x.h) uses
another when it includes its header; the graph of uses must be acyclic.
Prints TAP; the argument is the api/ folder."""
import os
import re
import sys


def uses(folder):
    units = {f[:-2] for f in os.listdir(folder) if f.endswith(".c")}
    graph = {}
    for unit in units:
        included = set()
        for name in (unit + ".c", unit + ".h"):
            path = os.path.join(folder, name)
            if os.path.exists(path):
                with open(path) as f:
                    included |= set(re.findall(r'#include "api/(\w+)\.h"', f.read()))
        graph[unit] = {h for h in included if h in units and h != unit}
    return graph


def loops(graph):
    found, state, stack = [], {}, []

    def visit(u):
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                found.append(stack[stack.index(v):] + [v])
            elif not state.get(v):
                visit(v)
        stack.pop()
        state[u] = 2

    for u in sorted(graph):
        if not state.get(u):
            visit(u)
    return found


graph = uses(sys.argv[1])
found = loops(graph)
print("1..2")
print(("ok" if len(graph) > 10 else "not ok") + f" 1 - api/ has its units ({len(graph)})")
for loop in found:
    print("# " + " -> ".join(loop))
print(("not ok" if found else "ok") + " 2 - no file in api/ uses one that uses it")

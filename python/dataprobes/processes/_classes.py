"""Closed classes of a Markov chain's support graph (a reducible chain has
more than one, and then infinitely many stationary laws)."""

from __future__ import annotations

import numpy as np

#: Largest state space whose closed classes are computed (V**order states).
MAX_STATES = 1 << 14
#: Largest number of positive transitions whose closed classes are computed.
MAX_EDGES = 1 << 22


def successor_graph(transition: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR form ``(indptr, successors)`` of the state graph of an order-k
    chain with ``[V**k, V]`` table ``transition``: state ``s`` leads to
    ``(s * V + x) mod V**k`` for every token ``x`` with ``P[s, x] > 0``."""
    states, v = transition.shape
    rows, cols = np.nonzero(transition > 0)  # row-major: sorted by row
    succ = (rows.astype(np.int64) * v + cols) % states if order > 0 else cols.astype(np.int64)
    indptr = np.searchsorted(rows, np.arange(states + 1))
    return indptr, succ


def closed_classes(indptr: np.ndarray, succ: np.ndarray) -> list[np.ndarray]:
    """The closed classes (strongly connected components that no edge leaves)
    of the graph with CSR adjacency ``(indptr, succ)``, each as a sorted array
    of states, ordered by their smallest state. Iterative Tarjan (1972): linear
    in states plus edges, no recursion."""
    n = len(indptr) - 1
    ends = indptr.tolist()
    nxt = succ.tolist()
    index = [-1] * n
    low = [0] * n
    comp_of = [-1] * n
    on_stack = [False] * n
    ptr = ends[:-1]  # next edge to look at, per node
    idx = 0
    ncomp = 0
    stack: list[int] = []
    for root in range(n):
        if index[root] >= 0:
            continue
        call = [root]
        index[root] = low[root] = idx
        idx += 1
        stack.append(root)
        on_stack[root] = True
        while call:
            v = call[-1]
            if ptr[v] < ends[v + 1]:
                w = nxt[ptr[v]]
                ptr[v] += 1
                if index[w] < 0:
                    index[w] = low[w] = idx
                    idx += 1
                    stack.append(w)
                    on_stack[w] = True
                    call.append(w)
                elif on_stack[w]:
                    low[v] = min(low[v], index[w])
                continue
            call.pop()
            if call:
                u = call[-1]
                low[u] = min(low[u], low[v])
            if low[v] == index[v]:
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    comp_of[w] = ncomp
                    if w == v:
                        break
                ncomp += 1
    # a component is closed when every edge out of its states stays inside it
    comp = np.asarray(comp_of, dtype=np.int64)
    src = np.repeat(np.arange(n), np.diff(indptr))
    leaves = np.zeros(ncomp, dtype=bool)
    leaves[comp[src][comp[src] != comp[succ]]] = True
    classes = [np.flatnonzero(comp == c) for c in range(ncomp) if not leaves[c]]
    return sorted(classes, key=lambda c: int(c[0]))


def describe(classes: list[np.ndarray], limit: int = 4) -> str:
    """``{0, 3}, {1}, ...``: the classes for a message (at most ``limit`` of
    them, each cut after a few states)."""
    parts = []
    for c in classes[:limit]:
        shown = ", ".join(str(int(s)) for s in c[:6])
        parts.append("{" + shown + (f", ... ({len(c)} states)" if len(c) > 6 else "") + "}")
    more = f" and {len(classes) - limit} more" if len(classes) > limit else ""
    return ", ".join(parts) + more

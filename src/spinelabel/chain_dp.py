"""The exact solver of the chain model: min-sum dynamic programming over sorted candidates.

``labeling.py`` writes the model (its costs); this module finds the best
labeling and every min-marginal of it for given node costs ``U`` (candidate x
level), pair costs ``P`` (level x level x allowed pair x scale) and the costs
of starting or ending a labeled range. A labeling is an increasing path
through candidates sorted cranio-caudally; costs are relative to "every
candidate unassigned".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pairs:
    """Allowed ordered pairs (upper i, lower j) of sorted candidates, grouped by j."""

    i: np.ndarray  # (m,)
    j: np.ndarray  # (m,)
    dist: np.ndarray  # (m,) mm
    direction: np.ndarray  # (m,) direction cost
    sagittal: np.ndarray  # (m,) shape_model.sagittal_angle of the step, deg
    by_j: np.ndarray  # (n + 1,) pairs by_j[j]:by_j[j+1] end at j


def forward(U: np.ndarray, P: np.ndarray, pairs: Pairs, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best cost of a labeling ending with candidate j at level b.

    Parameters
    ----------
    U : ndarray, shape (n, L)
        Node costs (``_node_costs``).
    P : ndarray, shape (L, L, m, S)
        Pair costs (``_pair_costs``).
    start : ndarray, shape (L, n, S)
        Cost of a labeled range starting at (j, b) (``_end_costs``).

    Returns
    -------
    F : ndarray, shape (L, n, S)
        Includes the node cost of (j, b); relative to "all unassigned".
    G : ndarray, shape (L, m, S)
        ``G[b, p, s]``: best cost up to candidate ``pairs.i[p]`` plus the edge to
        ``pairs.j[p]`` at level b (minimised over the level of ``pairs.i[p]``).
    """
    L, _, m, S = P.shape
    n = U.shape[0]
    F = np.empty((L, n, S))
    G = np.empty((L, m, S))
    for j in range(n):
        lo, hi = pairs.by_j[j], pairs.by_j[j + 1]
        F[:, j] = U[j][:, None] + start[:, j]
        if hi > lo:
            G[:, lo:hi] = (P[:, :, lo:hi] + F[:, None, pairs.i[lo:hi]]).min(axis=0)
            F[:, j] = U[j][:, None] + np.minimum(G[:, lo:hi].min(axis=1), start[:, j])
    return F, G


def backward(U: np.ndarray, P: np.ndarray, pairs: Pairs, end: np.ndarray) -> np.ndarray:
    """Best cost of the rest of a labeling after candidate i at level a.

    Pushes from the caudal end: when the pairs ending at j are visited, every
    pair leaving j (ending further caudally) has been, so B[:, j] is final.

    Parameters
    ----------
    end : ndarray, shape (L, n, S)
        Cost of a labeled range ending at (i, a) (``_end_costs``).

    Returns
    -------
    B : ndarray, shape (L, n, S)
        Excludes the node cost of (i, a); at most ``end`` (ending there).
    """
    B = end.copy()
    for j in range(U.shape[0] - 1, 0, -1):
        lo, hi = pairs.by_j[j], pairs.by_j[j + 1]
        if hi > lo:
            i = pairs.i[lo:hi]  # distinct within the group
            rest = np.repeat((U[j][:, None] + B[:, j])[:, None], hi - lo, axis=1)  # (L, k, S)
            B[:, i] = np.minimum(B[:, i], (P[:, :, lo:hi] + rest[None]).min(axis=1))
    return B


def unassigned_marginals(
    U: np.ndarray, pairs: Pairs, F: np.ndarray, G: np.ndarray, B: np.ndarray, start: np.ndarray, end: np.ndarray
) -> np.ndarray:
    """Best cost (relative to "all unassigned") of a labeling that leaves candidate i out.

    Such a labeling is empty, ends before i, starts after i, or jumps over i
    with one edge (k, m), k < i < m.

    Returns
    -------
    ndarray, shape (n, S)
    """
    _, n, S = F.shape
    inf = np.full((1, S), np.inf)
    ends = (F + end).min(axis=0)  # (n, S)
    starts = (U.T[:, :, None] + start + B).min(axis=0)
    before = np.minimum.accumulate(np.concatenate([inf, ends[:-1]]), axis=0)
    after = np.minimum.accumulate(np.concatenate([starts[1:], inf])[::-1], axis=0)[::-1]
    best = np.minimum(np.minimum(before, after), 0.0)
    if len(pairs.i):
        jump = (G + U.T[:, pairs.j, None] + B[:, pairs.j]).min(axis=0)  # (m, S)
        k = np.arange(n)
        over = (pairs.i[:, None] < k[None]) & (k[None] < pairs.j[:, None])  # (m, n)
        best = np.minimum(best, np.where(over[:, :, None], jump[:, None, :], np.inf).min(axis=0))
    return best


def backtrack(
    F: np.ndarray, G: np.ndarray, P: np.ndarray, pairs: Pairs, start: np.ndarray, end: np.ndarray
) -> list[tuple[int, int]]:
    """The best labeling at one scale as (sorted candidate, level index), cranial first.

    Parameters
    ----------
    F, start, end : ndarray, shape (L, n)
    G : ndarray, shape (L, m)
    P : ndarray, shape (L, L, m)
        One scale of ``forward``'s output, of the end costs and of the pair costs.
    """
    total = F + end
    if total.size == 0 or total.min() >= 0.0:
        return []
    b, j = (int(x) for x in np.unravel_index(int(np.argmin(total)), total.shape))
    path = [(j, b)]
    while pairs.by_j[j + 1] > pairs.by_j[j]:
        lo, hi = pairs.by_j[j], pairs.by_j[j + 1]
        p = lo + int(np.argmin(G[b, lo:hi]))
        if G[b, p] >= start[b, j]:
            break
        j, b = int(pairs.i[p]), int(np.argmin(F[:, pairs.i[p]] + P[:, b, p]))
        path.append((j, b))
    return path[::-1]

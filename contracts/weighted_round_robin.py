"""The smooth weighted round robin (nginx's), the one way Ferry spreads requests by weight: versions of a
service by their traffic share (gateway/balancer.py), members of a service group by their group weight
(gateway/app.py). A 20 % share gets exactly 20 of every 100 choices, spread evenly, whatever the load."""

from __future__ import annotations

from collections.abc import MutableSequence, Sequence


def next_choice(credits: MutableSequence[int], weights: Sequence[int], total: int) -> int:
    """The index of the next choice among `weights` (`total` is their sum). Each choice adds every weight to its
    credit, picks the highest credit (the first one on a tie) and takes `total` off it, so 80 / 20 goes
    0, 0, 1, 0, 0, 0, 0, 1, ... `credits` (one per weight, 0 to begin with) is kept by the caller between
    choices and updated here."""
    best = 0
    for index, weight in enumerate(weights):
        credits[index] += weight
        if credits[index] > credits[best]:
            best = index
    credits[best] -= total
    return best

"""Collision-free output names for a list of input files (prediction tools).

Outputs are named by the input's stem. When stems clash (``case1.jpg`` / ``case1.png`` /
``case1.JPG``, or the same name in two input folders) the clashing inputs keep their extension
(``case1.jpg``, ``case1.png``), and if that still clashes they mirror their folders relative to
the inputs' common parent (``a/case1``, ``b/case1``). Names are compared case-insensitively, so
the outputs are distinct on case-insensitive file systems too; what cannot be told apart that
way is an error naming the inputs.
"""
import os
from collections import defaultdict
from typing import Dict, List, Sequence

__all__ = ["output_stems"]


def _clashes(names: Sequence[str]) -> Dict[str, List[int]]:
    groups: Dict[str, List[int]] = defaultdict(list)
    for i, n in enumerate(names):
        groups[n.lower()].append(i)
    return {k: v for k, v in groups.items() if len(v) > 1}


def output_stems(files: Sequence[str]) -> List[str]:
    """One output stem per input (relative, may contain ``/``), all distinct ignoring case.

    Raises:
        ValueError: naming the inputs whose names cannot be told apart (e.g. ``a.JPG`` and
            ``a.jpg`` in one folder).
    """
    files = [os.path.abspath(f) for f in files]
    stems = [os.path.splitext(os.path.basename(f))[0] for f in files]
    for idx in _clashes(stems).values():
        for i in idx:
            stems[i] = os.path.basename(files[i])  # keep the extension
    clashing = [i for idx in _clashes(stems).values() for i in idx]
    if clashing:
        root = os.path.commonpath([os.path.dirname(files[i]) for i in clashing])
        for i in clashing:
            stems[i] = os.path.relpath(files[i], root).replace(os.sep, "/")
    left = _clashes(stems)
    if left:
        names = "; ".join(", ".join(files[i] for i in idx) for idx in left.values())
        raise ValueError(f"Inputs whose outputs would overwrite each other (names differ only in case): {names}. "
                         f"Rename them or predict them into separate --output folders.")
    return stems

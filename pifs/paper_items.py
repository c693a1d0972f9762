"""The paper's numbered items (arXiv:2603.13069v1), by section: what the book must cover.

Every numbered definition, theorem, proposition, corollary, table and figure of the
paper, in the paper's own numbering, under the section that states it. The report's
coverage table counts, per section, the items that have at least one claim record
that is evidence about the paper (or that only the ``full`` profile can decide).

Source: the paper's text, ``Definition 1`` … ``Theorem 37``, ``Table 1`` … ``Table 11``,
``Figure 1`` (§7.6). Theorems 4 and 5 are the classical Banach and collage theorems that
§2.2 recalls.
"""
from __future__ import annotations

from collections import Counter

from .claims import EVIDENCE_STATUSES, PAPER_BASES

__all__ = ["PAPER_ITEMS", "item_section", "coverage"]

PAPER_ITEMS: dict[str, tuple[str, ...]] = {
    "§2": ("Definition 1", "Theorem 2", "Proposition 3", "Theorem 4", "Theorem 5"),
    "§3": ("Theorem 6", "Definition 7", "Corollary 8", "Theorem 9", "Definition 10", "Corollary 11",
           "Theorem 12", "Theorem 13", "Theorem 14", "Theorem 15"),
    "§4": ("Theorem 16", "Theorem 17", "Definition 18", "Proposition 19", "Definition 20", "Definition 21",
           "Theorem 22", "Theorem 23"),
    "§5": ("Proposition 24", "Theorem 25", "Theorem 26", "Theorem 27"),
    "§6": ("Theorem 28", "Corollary 29", "Corollary 30", "Table 1", "Definition 31", "Theorem 32", "Table 2",
           "Proposition 33", "Proposition 34", "Theorem 35"),
    "§7": ("Table 3", "Table 4", "Table 5", "Table 6", "Table 7", "Table 8", "Table 9", "Table 10", "Figure 1",
           "Table 11"),
    "Appendix A": ("Definition 36", "Theorem 37"),
}


def item_section(item: str) -> str | None:
    """The section that states a numbered item (``"Theorem 28"`` → ``"§6"``), None if unknown."""
    for sec, items in PAPER_ITEMS.items():
        if item in items:
            return sec
    return None


def coverage(records: list[dict]) -> dict[str, dict]:
    """Coverage of the numbered items by evidence, per section.

    Parameters
    ----------
    records : list of dict
        A build's claim records.

    Returns
    -------
    dict
        ``{section: {"items": [...], "evidence": {item: Counter(status)}, "missing": [...],
        "model_only": [...]}}``: an item is covered when a record with that ``result``
        on a paper basis has an evidence status (:data:`pifs.claims.EVIDENCE_STATUSES`)
        or ``needs full profile``; ``model_only`` lists uncovered items that have
        records on a model basis only.
    """
    by_item: dict[str, Counter] = {}
    any_item: dict[str, Counter] = {}
    for r in records:
        any_item.setdefault(r["result"], Counter())[r["status"]] += 1
        if r["basis"] in PAPER_BASES and (r["status"] in EVIDENCE_STATUSES or r["status"] == "needs full profile"):
            by_item.setdefault(r["result"], Counter())[r["status"]] += 1
    out = {}
    for sec, items in PAPER_ITEMS.items():
        ev = {i: by_item[i] for i in items if i in by_item}
        missing = [i for i in items if i not in ev]
        out[sec] = {"items": list(items), "evidence": ev, "missing": missing,
                    "model_only": [i for i in missing if i in any_item]}
    return out

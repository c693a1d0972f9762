"""Claim checks: every numbered result, table cell and figure of the paper, checked.

A notebook opens one :class:`ClaimBook` and records each check with one call.
Every call displays a one-row table in the notebook (so the reader sees the
paper's value, ours and the verdict where the claim is discussed) and appends
a JSON record to ``<claims_dir>/<notebook>.jsonl``. The build collects the
records of all notebooks into ``_build/claims.json`` and generates the
*Reproducibility report* and *Errata* pages from them.

Statuses (DESIGN.md, plus one, see below)
-----------------------------------------
================== ==============================================================
``re-derived``     the symbolic derivation holds (SymPy simplifies the difference to 0)
``reproduced``     our number agrees with the paper's within the tolerance, or the
                   statement holds on our computation
``deviates``       our number disagrees with the paper's (listed on the errata page)
``does not hold``  a statement that our derivation or a counter-example refutes (errata)
``needs full profile`` not run in this profile (the paper's checkpoints / protocol)
``not comparable`` our number comes from a different model or data than the paper's
                   (e.g. the ``small`` profile's own CIFAR-10 model against
                   google/ddpm-cifar10-32): shown side by side, never counted as
                   agreement or disagreement. Added because the ``small`` profile
                   must show every §7 table without pretending the numbers are
                   the paper's experiment.
================== ==============================================================

The computed value is always ours: the API has no way to copy the paper's value
into it (``computed`` is required and recorded as given).
"""
from __future__ import annotations

import html
import json
import math
import numbers
import os
import re
from pathlib import Path

__all__ = ["STATUSES", "ERRATA_STATUSES", "ClaimBook", "parse_paper_number", "load_records"]

STATUSES = (
    "re-derived",
    "reproduced",
    "deviates",
    "does not hold",
    "needs full profile",
    "not comparable",
)
ERRATA_STATUSES = ("deviates", "does not hold")

_NUM = re.compile(r"^\s*([+-]?)(\d*)(?:\.(\d*))?(?:\s*(?:[eE]|[x×]\s*10\^?)\s*([+-−]?\d+))?\s*$")


def parse_paper_number(text: str):
    """Parse a number as printed in the paper and the half-unit of its last digit.

    ``"0.805"`` → (0.805, 0.0005); ``"1.2e-8"`` / ``"1.2×10^-8"`` → (1.2e-8, 5e-10);
    ``"3072"`` → (3072.0, 0.5); ``"−0.050"`` → (−0.05, 0.0005).

    Parameters
    ----------
    text : str

    Returns
    -------
    (float, float)
        The value and the rounding half-width implied by the printed digits.

    Raises
    ------
    ValueError
        If ``text`` is not a plain decimal number.
    """
    s = str(text).replace("−", "-").replace("+", "+").strip()
    m = _NUM.match(s)
    if not m or (not m.group(2) and not m.group(3)):
        raise ValueError(f"paper: cannot parse {text!r} as a printed number")
    sign, ip, fp, ex = m.groups()
    fp = fp or ""
    exp = int(ex.replace("−", "-")) if ex else 0
    value = float(f"{sign}{ip or '0'}.{fp or '0'}") * 10.0**exp
    half = 0.5 * 10.0 ** (exp - len(fp))
    return value, half


def _fmt(x):
    if x is None:
        return ""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, numbers.Integral):
        return str(int(x))
    if isinstance(x, numbers.Real):
        x = float(x)
        if math.isnan(x) or math.isinf(x):
            return str(x)
        if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
            return f"{x:.4g}"
        return f"{x:.6g}"
    return str(x)


def _jsonable(x):
    if x is None or isinstance(x, (str, bool)):
        return x
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        x = float(x)
        return x if math.isfinite(x) else str(x)
    return str(x)


class ClaimBook:
    """The claim records of one notebook.

    Parameters
    ----------
    notebook : str
        Notebook stem, e.g. ``"06_practical"``; names the record file.
    section : str
        Paper section, e.g. ``"§6"`` or ``"Appendix A"``.
    profile : str
        The build profile (``smoke``, ``small``, ``full``), recorded with each claim.
    claims_dir : str or path-like, optional
        Where to write ``<notebook>.jsonl``. Default: ``$PIFS_CLAIMS_DIR``, else
        ``_build/claims`` under the current directory. The file is truncated on
        construction so re-running a notebook does not duplicate records.
    display : bool
        Show a row in the notebook for each check (default True).

    Examples
    --------
    >>> book = ClaimBook("06_practical", "§6", profile="small")      # doctest: +SKIP
    >>> book.number("Table 1 · Linear · mean L*", L.mean(), paper="0.805")  # doctest: +SKIP
    """

    def __init__(self, notebook: str, section: str, profile: str = "small", claims_dir=None, display: bool = True):
        if not re.match(r"^[A-Za-z0-9_.-]+$", notebook):
            raise ValueError(f"notebook: expected a file stem like '06_practical', got {notebook!r}")
        self.notebook, self.section, self.profile = notebook, section, profile
        d = claims_dir or os.environ.get("PIFS_CLAIMS_DIR") or Path("_build") / "claims"
        self.path = Path(d) / f"{notebook}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")
        self.records: list[dict] = []
        self._display = display
        self._ids: set[str] = set()

    # -- recording ---------------------------------------------------------------
    def _add(self, id, status, computed, paper=None, tol=None, note="", kind="number", evidence=""):
        if status not in STATUSES:
            raise ValueError(f"status: expected one of {STATUSES}, got {status!r}")
        if not id or not isinstance(id, str):
            raise ValueError("id: expected the paper's numbering, e.g. 'Theorem 17(b)'")
        if id in self._ids:
            raise ValueError(f"id: claim {id!r} recorded twice in {self.notebook}")
        self._ids.add(id)
        rec = {
            "id": id,
            "section": self.section,
            "notebook": self.notebook,
            "profile": self.profile,
            "kind": kind,
            "paper": _jsonable(paper),
            "computed": _jsonable(computed),
            "tol": _jsonable(tol),
            "status": status,
            "note": note,
            "evidence": evidence,
        }
        self.records.append(rec)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        if self._display:
            _show([rec])
        return rec

    def number(self, id, computed, paper, *, tol=None, rtol=None, note=""):
        """Compare a computed number with a number printed in the paper.

        Parameters
        ----------
        id : str
            The paper's numbering, e.g. ``"Table 1 · Linear · CV L*"``.
        computed : float
            Our value (computed in the notebook, never typed in).
        paper : str or float
            The paper's value; pass the string *as printed* (``"0.805"``) so the
            default tolerance is the half-unit of its last printed digit.
        tol, rtol : float, optional
            Absolute / relative tolerance overriding the printed-digit default
            (use when the paper's text says "≈" or rounds loosely; say why in ``note``).
        note : str

        Returns
        -------
        dict
            The record; ``status`` is ``reproduced`` if |computed − paper| ≤ tol
            else ``deviates``.
        """
        if isinstance(paper, str):
            pval, half = parse_paper_number(paper)
        else:
            pval, half = float(paper), 0.0
        c = float(computed)
        if tol is None and rtol is not None:
            tol = abs(rtol * pval)
        if tol is None:
            tol = half
            if tol == 0:
                raise ValueError(f"{id}: give tol= or the paper value as printed (a string)")
        ok = math.isfinite(c) and abs(c - pval) <= tol * (1 + 1e-9)
        return self._add(id, "reproduced" if ok else "deviates", c, paper, tol, note)

    def statement(self, id, holds: bool, *, paper: str, computed, note=""):
        """Check a qualitative statement of the paper on our computation.

        Parameters
        ----------
        id : str
        holds : bool
            Whether our computation agrees with the statement.
        paper : str
            The statement, paraphrased closely ("f_t is strictly increasing in λ").
        computed : str or number
            What we measured that decides it ("min ∂f/∂λ = 3.1e-5 > 0 over 10^6 points").
        note : str

        Returns
        -------
        dict, ``status`` ``reproduced`` or ``does not hold``.
        """
        return self._add(id, "reproduced" if bool(holds) else "does not hold", computed, paper, None, note, "statement")

    def symbolic(self, id, lhs, rhs=0, *, paper: str = "", assumptions_note="", note=""):
        """Re-derive an identity with SymPy: ``simplify(lhs − rhs) == 0``.

        Parameters
        ----------
        id : str
        lhs, rhs : sympy expressions (or equal-shaped sympy matrices)
        paper : str
            The identity as the paper states it.
        note : str

        Returns
        -------
        dict, ``status`` ``re-derived`` if the difference simplifies to 0, else
        ``does not hold`` with the residual as computed value.
        """
        import sympy as sp

        diff = sp.simplify(sp.sympify(lhs) - sp.sympify(rhs))
        zero = diff == 0 or (hasattr(diff, "is_zero_matrix") and diff.is_zero_matrix) or diff.is_zero is True
        comp = "difference simplifies to 0" if zero else f"residual: {sp.sstr(diff)[:300]}"
        return self._add(id, "re-derived" if zero else "does not hold", comp, paper, None,
                         note or assumptions_note, "symbolic")

    def text(self, id, computed: str, *, paper: str, note=""):
        """Compare a non-numeric item with the paper's (a cross-reference, a label, a formula as printed).

        Parameters
        ----------
        id : str
        computed : str
            What our derivation or reading gives (e.g. ``"Theorem 17(c)"``).
        paper : str
            What the paper prints (e.g. ``"Theorem 17(d)"``).
        note : str

        Returns
        -------
        dict, ``status`` ``reproduced`` when the two strings are equal (after
        stripping white space), else ``deviates``.
        """
        same = str(computed).strip() == str(paper).strip()
        return self._add(id, "reproduced" if same else "deviates", str(computed), str(paper), None, note, "text")

    def needs_full(self, id, *, paper, note="", computed=None):
        """A claim that only the ``full`` profile (the paper's checkpoints and protocol) can check."""
        return self._add(id, "needs full profile", computed if computed is not None else "", paper, None, note, "full-only")

    def other_model(self, id, computed, *, paper, note=""):
        """Our value on a different model/data than the paper's, shown side by side (``not comparable``)."""
        return self._add(id, "not comparable", computed, paper, None, note, "other-model")

    # -- display -----------------------------------------------------------------
    def summary(self):
        """Display all records of this notebook and return them as a pandas DataFrame."""
        import pandas as pd

        if self._display:
            _show(self.records, title=f"Claims of {self.section} ({len(self.records)})")
        return pd.DataFrame(self.records)


_COLOURS = {
    "re-derived": "#1b7837",
    "reproduced": "#1b7837",
    "deviates": "#b2182b",
    "does not hold": "#b2182b",
    "needs full profile": "#8c6d31",
    "not comparable": "#4d4d4d",
}


def _html_rows(records):
    rows = []
    for r in records:
        col = _COLOURS.get(r["status"], "#000")
        tol = f" ± {_fmt(r['tol'])}" if r.get("tol") not in (None, "") else ""
        rows.append(
            "<tr>"
            f"<td>{html.escape(r['id'])}</td>"
            f"<td>{html.escape(_fmt(r['paper']))}</td>"
            f"<td>{html.escape(_fmt(r['computed']))}{html.escape(tol)}</td>"
            f"<td style='color:{col};font-weight:bold'>{html.escape(r['status'])}</td>"
            f"<td>{html.escape(r.get('note') or '')}</td>"
            "</tr>"
        )
    return "".join(rows)


def _show(records, title=None):
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:  # plain python: print
        for r in records:
            print(f"[{r['status']}] {r['id']}: paper={_fmt(r['paper'])} computed={_fmt(r['computed'])}")
        return
    if get_ipython() is None:
        for r in records:
            print(f"[{r['status']}] {r['id']}: paper={_fmt(r['paper'])} computed={_fmt(r['computed'])}")
        return
    cap = f"<caption>{html.escape(title)}</caption>" if title else ""
    display(HTML(
        "<table class='pifs-claims'>" + cap +
        "<thead><tr><th>claim</th><th>paper</th><th>computed (± tol)</th><th>status</th><th>note</th></tr></thead>"
        f"<tbody>{_html_rows(records)}</tbody></table>"
    ))


def load_records(claims_dir) -> list[dict]:
    """Read every ``*.jsonl`` record file in ``claims_dir`` (sorted by notebook name)."""
    out = []
    for p in sorted(Path(claims_dir).glob("*.jsonl")):
        for line in p.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out

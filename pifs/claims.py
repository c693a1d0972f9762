"""Claim checks: every numbered result, table cell and figure of the paper, checked.

A notebook opens one :class:`ClaimBook` and records each check with one call.
Every call appends a JSON record to ``<claims_dir>/<notebook>.jsonl``; in a
notebook the records of one cell are shown together, after the cell, as one
table grouped by the paper's numbered result (so the paper's Table 1 is one
table, not 26). The build collects the records of all notebooks into
``_build/claims.json``, checks them (:func:`validate`) and generates the
*Reproducibility report* and *Errata* pages from them.

Basis: what a record was computed on
------------------------------------
Every record carries a **basis** (a required argument of every check), because
only the paper's own setting can convict the paper:

=================== ====================================================== ==================
basis               computed on                                            may be an erratum
=================== ====================================================== ==================
``paper``           the paper's own setting: its schedules, formulas,      yes
                    data set (CIFAR-10, with the number of images used),
                    its checkpoints
``paper-numbers``   numbers printed in the paper (internal consistency:    yes, as
                    a p-value from a printed ρ, a ratio of printed means)  ``inconsistent``
``exact-model``     an exact score model (Gaussian, mixture, ideal         no
                    denoiser) standing in for the paper's network
``our-model``       a network trained by this project, or any model        no
                    other than the paper's
``substitute-data`` data other than the paper's (bundled photographs       no
                    when CIFAR-10 is missing)
=================== ====================================================== ==================

Statuses
--------
On basis ``paper`` / ``paper-numbers`` (evidence about the paper):

``re-derived``      the symbolic derivation holds (SymPy simplifies the difference to 0)
``reproduced``      our number agrees within the tolerance, or the statement holds
``deviates``        our number disagrees (errata, with the readings tried), basis ``paper``
``does not hold``   a statement our derivation or a counter-example refutes (errata), basis ``paper``
``inconsistent``    the paper's printed numbers contradict each other, basis ``paper-numbers``
``needs full profile`` only the ``full`` profile (the paper's checkpoints) can decide it

On the other bases (evidence about a model, never about the paper):

``shown``           a prediction of the paper holds on the exact model / our model / substitute data
``not shown``       it does not hold there
``not comparable``  a number from another model or data, shown beside the paper's

On any basis: ``illustrated`` -- holds by construction (an identity with one
expression on both sides, an inequality that always holds, an input echoed
back); shown for teaching and counted as no evidence.

The computed value is always ours: the API has no way to copy the paper's value
into it (``computed`` is required and recorded as given).
"""
from __future__ import annotations

import hashlib
import html
import json
import math
import numbers
import os
import re
from collections import Counter
from pathlib import Path

__all__ = [
    "BASES", "PAPER_BASES", "STATUSES", "ERRATA_STATUSES", "EVIDENCE_STATUSES", "AGREE", "DISAGREE",
    "ClaimBook", "parse_paper_number", "load_records", "validate", "ClaimsInvalid", "result_of",
    "anchor", "badge", "format_value", "STATUS_STYLE",
]

BASES = ("paper", "paper-numbers", "exact-model", "our-model", "substitute-data")
PAPER_BASES = ("paper", "paper-numbers")

STATUSES = (
    "re-derived",
    "reproduced",
    "deviates",
    "does not hold",
    "inconsistent",
    "needs full profile",
    "shown",
    "not shown",
    "not comparable",
    "illustrated",
)
#: statuses listed on the errata page (only on a paper basis, enforced by :class:`ClaimBook`)
ERRATA_STATUSES = ("deviates", "does not hold", "inconsistent")
#: statuses that are evidence about the paper
EVIDENCE_STATUSES = ("re-derived", "reproduced", "deviates", "does not hold", "inconsistent")
AGREE = ("re-derived", "reproduced")
DISAGREE = ERRATA_STATUSES

#: badge symbol and colour per status (white text on the colour: legible in light and dark mode;
#: the symbol and the word carry the meaning without the colour)
STATUS_STYLE = {
    "re-derived": ("∑✓", "#00695c"),
    "reproduced": ("✓", "#2e7d32"),
    "deviates": ("✗", "#c62828"),
    "does not hold": ("⊘", "#ad1457"),
    "inconsistent": ("≠", "#e65100"),
    "needs full profile": ("◐", "#6d5d00"),
    "shown": ("●", "#1565c0"),
    "not shown": ("○", "#4527a0"),
    "not comparable": ("∥", "#546e7a"),
    "illustrated": ("✎", "#6d4c41"),
}

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
    s = str(text).replace("−", "-").strip()
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
    """Full-precision text of a recorded value (claims.json keeps the value itself)."""
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


def _printed_decimals(paper) -> int | None:
    """Digits after the point of a printed paper number (``"0.805"`` → 3), None if not a number."""
    if not isinstance(paper, str):
        return None
    try:
        parse_paper_number(paper)
    except ValueError:
        return None
    s = paper.replace("−", "-").strip()
    mant = re.split(r"[eE]|[x×]", s)[0]
    return len(mant.split(".")[1]) if "." in mant else 0


def format_value(x, paper=None) -> str:
    """A value as shown in a claim table: rounded to the paper's printed digits plus one.

    Parameters
    ----------
    x : number, str, bool or None
        The recorded value.
    paper : str, optional
        The paper's value as printed; a plain number sets the rounding (one digit more
        than printed, in the same notation). Without one, 4 significant digits.

    Returns
    -------
    str
    """
    if x is None:
        return ""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        return _fmt(x)
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e6 and not isinstance(paper, str):
        return str(int(x))
    d = _printed_decimals(paper)
    if d is not None:
        s = paper.replace("−", "-")
        if re.search(r"[eE]|[x×]", s):  # scientific: same exponent style, one more significant digit
            sig = len(re.sub(r"[^0-9]", "", re.split(r"[eE]|[x×]", s)[0]).lstrip("0")) or 1
            return f"{x:.{sig}e}"
        return f"{x:.{d + 1}f}"
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.3e}"
    return f"{x:.4g}"


def _jsonable(x):
    if x is None or isinstance(x, (str, bool)):
        return x
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        x = float(x)
        return x if math.isfinite(x) else str(x)
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    return str(x)


_RESULT = re.compile(r"^((?:Theorem|Definition|Proposition|Corollary|Lemma|Table|Figure|Remark)\s+\d+"
                     r"|eq\.\s*\(\d+\)|§\s*[0-9]+(?:\.[0-9]+)*|Appendix\s+[A-Z])")


def result_of(claim_id: str) -> str:
    """The numbered result a claim id belongs to: its first ``·`` field, normalised.

    ``"Theorem 17(b) · diagonal"`` → ``"Theorem 17"``; ``"Table 1 · Linear · mean L*"`` →
    ``"Table 1"``; ``"§6.2 · λ*(1)"`` → ``"§6.2"``; anything else: the first field as is.
    """
    head = claim_id.split(" · ")[0].strip()
    m = _RESULT.match(head)
    return re.sub(r"\s+", " ", m.group(1)).replace("§ ", "§") if m else head


def anchor(notebook: str, claim_id: str) -> str:
    """The HTML id of a claim's row: readable prefix plus a hash of (notebook, id)."""
    slug = re.sub(r"[^a-z0-9]+", "-", claim_id.lower()).strip("-")[:40].strip("-")
    h = hashlib.sha1(f"{notebook}\x00{claim_id}".encode()).hexdigest()[:8]
    return f"claim-{slug}-{h}" if slug else f"claim-{h}"


def badge(status: str, wrap: bool = False, compact: bool = False) -> str:
    """HTML badge of a status: symbol, word and colour (``class="pifs-badge"``).

    The colour is a background under white text (legible in light and dark mode); the
    symbol and the word carry the meaning without it (print, colour-blind readers).
    ``wrap=True`` lets a long status break across lines; ``compact=True`` shows the symbol alone
    (the word in the tooltip: narrow table headers, with a legend nearby).
    """
    sym, col = STATUS_STYLE.get(status, ("?", "#000"))
    cls = "pifs-badge pifs-" + re.sub(r"[^a-z]+", "-", status)
    ws = "normal" if wrap else "nowrap"
    text = sym if compact else f"{sym} {html.escape(status)}"
    return (f"<span class='{cls}' title='{html.escape(status)}' style='background:{col};color:#fff;"
            f"border-radius:0.7em;padding:0 0.5em;white-space:{ws};font-size:0.85em'>{text}</span>")


class Record(dict):
    """A claim record (a plain ``dict``) that shows nothing when it is a cell's last value."""

    def _ipython_display_(self):  # the cell's claim table shows it
        return None


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
        In IPython, show each cell's records as one table after the cell (default True).

    Notes
    -----
    Every check takes ``basis`` (one of :data:`BASES`) as a required keyword. On a
    non-paper basis a check can never produce an erratum status: a number becomes
    ``not comparable`` and a statement ``shown`` / ``not shown``.

    Examples
    --------
    >>> book = ClaimBook("06_practical", "§6", profile="small")      # doctest: +SKIP
    >>> book.number("Table 1 · Linear · mean L*", L.mean(), paper="0.805", basis="paper")  # doctest: +SKIP
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
        self._pending: list[dict] = []
        self._hooked = False

    # -- recording ---------------------------------------------------------------
    def _add(self, id, status, computed, paper=None, tol=None, note="", kind="number", evidence="",
             *, basis, result=None, key=None, readings=None):
        if status not in STATUSES:
            raise ValueError(f"status: expected one of {STATUSES}, got {status!r}")
        if not id or not isinstance(id, str):
            raise ValueError("id: expected the paper's numbering, e.g. 'Theorem 17(b)'")
        if basis not in BASES:
            raise ValueError(f"basis: expected one of {BASES}, got {basis!r} (claim {id!r})")
        if status in ERRATA_STATUSES and basis not in PAPER_BASES:
            raise ValueError(f"{id}: status {status!r} on basis {basis!r}: only the paper's own setting "
                             "('paper', 'paper-numbers') can convict the paper")
        if id in self._ids:
            raise ValueError(f"id: claim {id!r} recorded twice in {self.notebook}")
        self._ids.add(id)
        rec = Record({
            "id": id,
            "result": result or result_of(id),
            "key": key or id,
            "section": self.section,
            "notebook": self.notebook,
            "anchor": anchor(self.notebook, id),
            "profile": self.profile,
            "basis": basis,
            "kind": kind,
            "paper": _jsonable(paper),
            "computed": _jsonable(computed),
            "tol": _jsonable(tol),
            "status": status,
            "note": note,
            "evidence": evidence,
            "readings": _jsonable(readings) if readings is not None else None,
        })
        self.records.append(rec)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self._queue(rec)
        return rec

    @staticmethod
    def _check_basis(basis, id):
        if basis not in BASES:
            raise ValueError(f"basis: expected one of {BASES}, got {basis!r} (claim {id!r})")

    def _readings(self, id, readings, pval, tol):
        """Evaluate alternative readings ``{label: value}`` against the paper value."""
        if readings is None:
            return None
        if isinstance(readings, dict):
            items = list(readings.items())
        else:
            items = [tuple(r) for r in readings]
        if not items:
            raise ValueError(f"{id}: readings: expected at least one (label, value) pair")
        out = []
        for label, v in items:
            v = float(v)
            out.append({"reading": str(label), "value": v,
                        "matches": bool(math.isfinite(v) and abs(v - pval) <= tol * (1 + 1e-9))})
        return out

    def number(self, id, computed, paper, *, basis, tol=None, rtol=None, note="", readings=None,
               result=None, key=None):
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
        basis : str
            One of :data:`BASES` (required).
        tol, rtol : float, optional
            Absolute / relative tolerance overriding the printed-digit default
            (use when the paper's text says "≈" or rounds loosely; say why in ``note``).
            The tolerance must be smaller than the effect a check tests.
        note : str
            The computation or explanation (required for a deviation on basis ``paper``:
            the build rejects an erratum without one).
        readings : dict or list of (str, float), optional
            Alternative readings a careful reader could have used (pixel scale, 0/1-based
            t, which chain, ...) with the value each gives. Each is compared with the
            paper's value under the same tolerance and recorded with ``matches``; the
            verdict stays on the paper's stated convention (``computed``).
        result, key : str, optional
            The numbered result (default: from ``id``, see :func:`result_of`) and the key
            of the paper statement for the one-verdict check (default: ``id``).

        Returns
        -------
        dict
            The record. Basis ``paper``: ``reproduced`` if |computed − paper| ≤ tol else
            ``deviates``; ``paper-numbers``: ``reproduced`` / ``inconsistent``; any other
            basis: ``not comparable`` (shown beside the paper's, never an erratum).

        Raises
        ------
        ValueError
            For an unknown basis, an unparseable printed value without ``tol``, or a
            duplicate id.
        """
        self._check_basis(basis, id)
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
        if basis == "paper":
            status = "reproduced" if ok else "deviates"
        elif basis == "paper-numbers":
            status = "reproduced" if ok else "inconsistent"
        else:
            status = "not comparable"
        return self._add(id, status, c, paper, tol, note, basis=basis, result=result, key=key,
                         readings=self._readings(id, readings, pval, tol))

    def statement(self, id, holds: bool, *, paper: str, computed, basis, note="", readings=None,
                  result=None, key=None):
        """Check a qualitative statement of the paper on our computation.

        Parameters
        ----------
        id : str
        holds : bool
            Whether our computation agrees with the statement. It must be able to be
            False: a statement that holds by construction is :meth:`illustrate`.
        paper : str
            The statement, paraphrased closely ("f_t is strictly increasing in λ").
        computed : str or number
            What we measured that decides it ("min ∂f/∂λ = 3.1e-5 > 0 over 10^6 points").
        basis : str
            One of :data:`BASES` (required).
        note : str
            Required when the statement does not hold on a paper basis (the explanation).
        readings : dict {str: bool}, optional
            Alternative readings of the statement and whether each holds.

        Returns
        -------
        dict
            Basis ``paper``: ``reproduced`` / ``does not hold``; ``paper-numbers``:
            ``reproduced`` / ``inconsistent``; other bases: ``shown`` / ``not shown``.
        """
        self._check_basis(basis, id)
        holds = bool(holds)
        if basis == "paper":
            status = "reproduced" if holds else "does not hold"
        elif basis == "paper-numbers":
            status = "reproduced" if holds else "inconsistent"
        else:
            status = "shown" if holds else "not shown"
        rd = None
        if readings is not None:
            rd = [{"reading": str(k), "value": bool(v), "matches": bool(v)} for k, v in dict(readings).items()]
        return self._add(id, status, computed, paper, None, note, "statement", basis=basis, result=result,
                         key=key, readings=rd)

    def symbolic(self, id, lhs, rhs=0, *, paper: str = "", basis, note="", assumptions_note="",
                 result=None, key=None):
        """Re-derive an identity with SymPy: ``simplify(lhs − rhs) == 0``.

        Parameters
        ----------
        id : str
        lhs, rhs : sympy expressions (or equal-shaped sympy matrices)
            Two *independently built* expressions. If SymPy already constructs them as
            the same expression (so the check could not fail), ``ValueError`` is raised:
            record it with :meth:`illustrate` instead.
        paper : str
            The identity as the paper states it.
        basis : str
            One of :data:`BASES` (required): ``"paper"`` for the paper's own algebra.
        note : str

        Returns
        -------
        dict, ``status`` ``re-derived`` if the difference simplifies to 0, else
        ``does not hold`` (``not shown`` off the paper basis) with the residual as computed value.

        Raises
        ------
        ValueError
            If ``lhs`` and ``rhs`` are the same expression before simplification.
        """
        import sympy as sp

        self._check_basis(basis, id)
        L, R = sp.sympify(lhs), sp.sympify(rhs)
        if L == R:
            raise ValueError(f"{id}: lhs and rhs are the same expression before simplification; "
                             "a check that cannot fail is not evidence (use ClaimBook.illustrate)")
        diff = sp.simplify(L - R)
        zero = diff == 0 or (hasattr(diff, "is_zero_matrix") and diff.is_zero_matrix) or diff.is_zero is True
        comp = "difference simplifies to 0" if zero else f"residual: {sp.sstr(diff)[:300]}"
        if zero:
            status = "re-derived"
        elif basis == "paper":
            status = "does not hold"
        elif basis == "paper-numbers":
            status = "inconsistent"
        else:
            status = "not shown"
        return self._add(id, status, comp, paper, None, note or assumptions_note, "symbolic",
                         basis=basis, result=result, key=key)

    def text(self, id, computed: str, *, paper: str, basis, note="", result=None, key=None):
        """Compare a non-numeric item with the paper's (a cross-reference, a label, a formula as printed).

        Parameters
        ----------
        id : str
        computed : str
            What our derivation or reading gives (e.g. ``"Theorem 17(c)"``).
        paper : str
            What the paper prints (e.g. ``"Theorem 17(d)"``).
        basis : str
        note : str

        Returns
        -------
        dict, ``status`` ``reproduced`` when the two strings are equal (after
        stripping white space), else ``deviates`` (``inconsistent`` on ``paper-numbers``).
        """
        self._check_basis(basis, id)
        same = str(computed).strip() == str(paper).strip()
        bad = {"paper": "deviates", "paper-numbers": "inconsistent"}.get(basis, "not shown")
        good = "reproduced" if basis in PAPER_BASES else "shown"
        return self._add(id, good if same else bad, str(computed), str(paper), None, note, "text",
                         basis=basis, result=result, key=key)

    def needs_full(self, id, *, paper, basis, note="", computed=None, result=None, key=None):
        """A claim that only the ``full`` profile (the paper's checkpoints and protocol) can check."""
        self._check_basis(basis, id)
        return self._add(id, "needs full profile", computed if computed is not None else "", paper, None, note,
                         "full-only", basis=basis, result=result, key=key)

    def other_model(self, id, computed, *, paper, basis, note="", result=None, key=None):
        """A number or value from a model or data other than the paper's, shown beside the paper's.

        Parameters
        ----------
        id : str
        computed : number or str
        paper : str
            The paper's value as printed (any text: "≈ 0.95", "+0.953").
        basis : {"exact-model", "our-model", "substitute-data"}
        note : str

        Returns
        -------
        dict, ``status`` ``not comparable``.

        Raises
        ------
        ValueError
            If ``basis`` is a paper basis (use :meth:`number` there).
        """
        self._check_basis(basis, id)
        if basis in PAPER_BASES:
            raise ValueError(f"{id}: other_model is for a non-paper basis; got {basis!r} (use number())")
        return self._add(id, "not comparable", computed, paper, None, note, "other-model",
                         basis=basis, result=result, key=key)

    def illustrate(self, id, computed, *, paper, basis, why, note="", result=None, key=None):
        """Record a check that holds by construction: shown for teaching, counted as no evidence.

        Parameters
        ----------
        id : str
        computed : str or number
            What is shown.
        paper : str
            The paper's statement.
        basis : str
        why : str
            Why it cannot fail (e.g. "Cauchy–Schwarz", "s clamped to 0.9 by the encoder").

        Returns
        -------
        dict, ``status`` ``illustrated``.
        """
        self._check_basis(basis, id)
        if not why:
            raise ValueError(f"{id}: why: say why this check cannot fail")
        return self._add(id, "illustrated", computed, paper, None, note, "illustration", evidence=why,
                         basis=basis, result=result, key=key)

    # -- display -----------------------------------------------------------------
    def _queue(self, rec):
        if not self._display:
            return
        ip = _ipython()
        if ip is None:
            print(f"[{rec['status']}] ({rec['basis']}) {rec['id']}: paper={_fmt(rec['paper'])} "
                  f"computed={_fmt(rec['computed'])}")
            return
        self._pending.append(rec)
        if not self._hooked:
            ip.events.register("post_run_cell", self._flush)
            self._hooked = True

    def _flush(self, *args, **kwargs):
        """Show the records of the cell that just ran as one table (IPython ``post_run_cell``)."""
        if not self._pending:
            return
        recs, self._pending = self._pending, []
        from IPython.display import HTML, display

        display(HTML(claims_table(recs)))

    def summary(self):
        """Show this notebook's verdict counts (once; the rows are in the cells above).

        Returns
        -------
        pandas.DataFrame
            All records of this notebook.
        """
        import pandas as pd

        self._flush()
        if self._display and _ipython() is not None:
            from IPython.display import HTML, display

            display(HTML(counts_html(self.records, title=f"Verdicts of {self.section} in this build")))
        return pd.DataFrame(self.records)


def _ipython():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def counts_html(records, title="") -> str:
    """HTML line of badges with counts per basis group and status."""
    groups = [("about the paper", PAPER_BASES), ("on models or other data", ("exact-model", "our-model",
                                                                              "substitute-data"))]
    parts = []
    for label, bases in groups:
        c = Counter(r["status"] for r in records if r["basis"] in bases)
        if c:
            items = " ".join(f"{badge(s)}&nbsp;{c[s]}" for s in STATUSES if c.get(s))
            parts.append(f"<div><b>{html.escape(label)}</b> ({sum(c.values())}): {items}</div>")
    head = f"<div><b>{html.escape(title)}</b></div>" if title else ""
    return f"<div class='pifs-counts'>{head}{''.join(parts)}</div>"


def claims_table(records) -> str:
    """One HTML table for a list of records, grouped by numbered result, folded under its verdicts.

    Columns: claim, paper, ours, basis, status (badge). Values are rounded to the
    paper's printed digits plus one; the full value is in the cell's ``title``
    (hover) and in ``claims.json``. Each row has the record's ``anchor`` as id. The
    table sits in a ``<details>`` whose summary names the result(s) and counts the
    statuses as badges; a link to a row's anchor opens it (the book's ``pifs.js``).
    """
    rows = []
    last = None
    for r in records:
        if r["result"] != last:
            last = r["result"]
            rows.append(f"<tr class='pifs-result'><th colspan='5'>{html.escape(last)}</th></tr>")
        label = r["id"]
        pre = r["result"] + " · "
        if label.startswith(pre):
            label = label[len(pre):]
        elif label == r["result"]:
            label = "(the statement)"
        tol = f" ± {format_value(r['tol'], r['paper'])}" if r.get("tol") not in (None, "") else ""
        full = _fmt(r["computed"]) + (f" ± {_fmt(r['tol'])}" if tol else "")
        ours = format_value(r["computed"], r["paper"]) + tol
        paper = format_value(r["paper"])
        extra, parts = [], []
        if len(paper) > 28:  # a sentence, not a value: folded under the row with the explanation
            extra.append("<b>paper:</b> " + html.escape(paper))
            paper, _ = "(statement)", parts.append("paper")
        if len(ours) > 28:
            extra.append("<b>ours:</b> " + html.escape(ours))
            ours, _ = "(measured)", parts.append("ours")
        if r.get("note"):
            extra.append("<b>why:</b> " + html.escape(r["note"]))
            parts.append("why")
        if r.get("evidence") and r["status"] == "illustrated":
            extra.append("<b>holds by construction:</b> " + html.escape(r["evidence"]))
        if r.get("readings"):
            rd = "; ".join(f"{html.escape(x['reading'])}: {html.escape(format_value(x['value'], r['paper']))}"
                           f"{' (matches)' if x['matches'] else ''}" for x in r["readings"])
            extra.append("<b>readings tried:</b> " + rd)
            parts.append("readings")
        note = ""
        if extra:
            note = (f"<details class='pifs-more'><summary>{' · '.join(parts) or 'details'}</summary>"
                    + "".join(f"<div class='pifs-note'>{t}</div>" for t in extra) + "</details>")
        rows.append(
            f"<tr id='{r['anchor']}'>"
            f"<td><a class='pifs-anchor' href='#{r['anchor']}'>{html.escape(label)}</a>{note}</td>"
            f"<td>{html.escape(paper)}</td>"
            f"<td title='{html.escape(full)}'>{html.escape(ours)}</td>"
            f"<td>{html.escape(r['basis'])}</td>"
            f"<td>{badge(r['status'])}</td>"
            "</tr>"
        )
    table = ("<table class='pifs-claims'><colgroup><col style='width:43%'><col style='width:14%'>"
             "<col style='width:14%'><col style='width:13%'><col style='width:16%'></colgroup>"
             "<thead><tr><th>claim</th><th>paper</th><th>ours</th><th>basis</th><th>status</th></tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table>")
    # folded: the summary line carries the verdicts at a glance; a link to a row opens it (pifs.js)
    results = list(dict.fromkeys(r["result"] for r in records))
    c = Counter(r["status"] for r in records)
    counts = " ".join(f"{badge(s)}&nbsp;{c[s]}" for s in STATUSES if c.get(s))
    name = html.escape(", ".join(results[:3]) + (" …" if len(results) > 3 else ""))
    n = len(records)
    return (f"<details class='pifs-claims-box'><summary><span class='pifs-claims-title'>{name}</span> · "
            f"{n} claim{'s' if n != 1 else ''}: {counts}</summary>{table}</details>")


def load_records(claims_dir) -> list[dict]:
    """Read every ``*.jsonl`` record file in ``claims_dir`` (sorted by notebook name)."""
    out = []
    for p in sorted(Path(claims_dir).glob("*.jsonl")):
        for line in p.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


class ClaimsInvalid(ValueError):
    """The claim records of a build break a rule of the book (see :func:`validate`)."""


def validate(records: list[dict], strict: bool = True) -> list[str]:
    """Check the rules of a verdict over a whole build's records.

    Rules
    -----
    1. every record has a basis from :data:`BASES`;
    2. an erratum status (``deviates``, ``does not hold``, ``inconsistent``) only on a
       paper basis (``paper`` / ``paper-numbers``);
    3. one statement, one verdict: records on a paper basis that share a ``key``, or an
       ``id`` across notebooks, may not both agree (``reproduced`` / ``re-derived``) and
       disagree (an erratum status);
    4. (``strict``) every erratum has an explanation (``note``), and every ``deviates``
       number on basis ``paper`` lists the readings tried.

    Parameters
    ----------
    records : list of dict
    strict : bool
        Apply rule 4 (the ``smoke`` profile's numbers are meaningless, so the build
        passes ``strict=False`` there).

    Returns
    -------
    list of str
        The violations (empty when the records are valid).
    """
    errors = []
    for r in records:
        b = r.get("basis")
        if b not in BASES:
            errors.append(f"{r.get('notebook')}: {r.get('id')!r} has no valid basis ({b!r})")
            continue
        if r["status"] in ERRATA_STATUSES and b not in PAPER_BASES:
            errors.append(f"{r['notebook']}: {r['id']!r} is an erratum ({r['status']}) on basis {b!r}")
        if strict and r["status"] in ERRATA_STATUSES:
            if not (r.get("note") or "").strip():
                errors.append(f"{r['notebook']}: erratum {r['id']!r} has no explanation (note)")
            if r["status"] == "deviates" and r.get("kind") == "number" and not r.get("readings"):
                errors.append(f"{r['notebook']}: deviation {r['id']!r} lists no readings tried")
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        if r.get("basis") in PAPER_BASES:
            groups.setdefault(("key", r.get("key") or r["id"]), []).append(r)
            groups.setdefault(("id", r["id"]), []).append(r)
    for (kind, k), rs in groups.items():
        sts = {r["status"] for r in rs}
        if sts & set(AGREE) and sts & set(DISAGREE):
            where = ", ".join(f"{r['notebook']}:{r['id']!r}={r['status']}" for r in rs)
            errors.append(f"one statement, two verdicts ({kind} {k!r}): {where}")
    return sorted(set(errors))

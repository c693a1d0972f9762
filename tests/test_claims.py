"""pifs.claims: statuses, tolerances from printed digits, records on disk; pifs.report pages."""
import json

import pytest
import sympy as sp

from pifs.claims import ClaimBook, load_records, parse_paper_number
from pifs.report import errata_page, report_page


@pytest.mark.parametrize(
    "text, value, half",
    [("0.805", 0.805, 5e-4), ("3072", 3072.0, 0.5), ("1.2e-8", 1.2e-8, 5e-10), ("1.2×10^-8", 1.2e-8, 5e-10),
     ("−0.050", -0.05, 5e-4), ("+0.118", 0.118, 5e-4), ("0.00079", 0.00079, 5e-6)],
)
def test_parse_paper_number(text, value, half):
    v, h = parse_paper_number(text)
    assert v == pytest.approx(value, rel=1e-12)
    assert h == pytest.approx(half, rel=1e-12)


@pytest.mark.parametrize("bad", ["", "abc", "1.2.3", "≈2"])
def test_parse_paper_number_rejects(bad):
    with pytest.raises(ValueError, match="paper"):
        parse_paper_number(bad)


@pytest.fixture
def book(tmp_path):
    return ClaimBook("99_test", "§9", profile="smoke", claims_dir=tmp_path, display=False)


def test_number_uses_printed_digits(book):
    assert book.number("a", 0.80549, paper="0.805")["status"] == "reproduced"
    assert book.number("b", 0.80551, paper="0.805")["status"] == "deviates"
    assert book.number("c", 0.81, paper="0.805", tol=0.01)["status"] == "reproduced"
    assert book.number("d", 1.1, paper=1.0, rtol=0.05)["status"] == "deviates"
    assert book.number("e", float("nan"), paper="1.0")["status"] == "deviates"


def test_number_needs_a_tolerance_for_floats(book):
    with pytest.raises(ValueError, match="tol"):
        book.number("x", 1.0, paper=1.0)


def test_symbolic_and_statement(book):
    x = sp.symbols("x", positive=True)
    assert book.symbolic("id1", sp.sqrt(x) ** 2, x)["status"] == "re-derived"
    rec = book.symbolic("id2", x + 1, x)
    assert rec["status"] == "does not hold" and "residual" in rec["computed"]
    assert book.statement("s1", True, paper="p", computed="c")["status"] == "reproduced"
    assert book.statement("s2", False, paper="p", computed="c")["status"] == "does not hold"
    assert book.text("t1", "Theorem 17(c)", paper="Theorem 17(d)")["status"] == "deviates"
    assert book.text("t2", "eq. (5) ", paper="eq. (5)")["status"] == "reproduced"
    assert book.needs_full("f", paper="1.0")["status"] == "needs full profile"
    assert book.other_model("o", 0.5, paper="1.0")["status"] == "not comparable"


def test_duplicate_ids_are_rejected(book):
    book.number("dup", 1.0, paper="1.0")
    with pytest.raises(ValueError, match="twice"):
        book.number("dup", 1.0, paper="1.0")


def test_records_written_and_reloaded(tmp_path, book):
    book.number("Table 1 · x", 0.5, paper="0.5")
    book.statement("Theorem 1", False, paper="it holds", computed="counter-example", note="because")
    recs = load_records(tmp_path)
    assert [r["id"] for r in recs] == ["Table 1 · x", "Theorem 1"]
    assert recs[0]["computed"] == 0.5 and recs[0]["paper"] == "0.5"
    assert all(json.dumps(r) for r in recs)
    # re-opening truncates: re-running a notebook does not duplicate records
    ClaimBook("99_test", "§9", claims_dir=tmp_path, display=False)
    assert load_records(tmp_path) == []


def test_report_and_errata_pages(book):
    book.number("Table 1 · mean | L*", 0.81, paper="0.805", note="cost $x$")
    book.number("ok", 0.805, paper="0.805")
    runs = [{"notebook": "99_test", "section": "§9", "status": "ok", "seconds": 1.0, "parameters": {"n": 1}}]
    rep = report_page(book.records, runs, {"python": "3", "packages": {"numpy": "2"}}, "smoke")
    assert "| §9 |" in rep and "**2**" in rep and "99_test" in rep
    err = errata_page(book.records, "smoke")
    assert "Table 1 · mean \\| L\\*" in err and "\\$x\\$" in err and "**ok**" not in err
    assert "No deviations" in errata_page(book.records[1:], "smoke")
    book.number("§7.4 · λ** of n_k", 2.0, paper="1.0")
    assert "λ\\*\\* of n\\_k" in errata_page(book.records, "smoke")

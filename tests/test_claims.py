"""pifs.claims: statuses, bases, tolerances from printed digits, records on disk, the rules of a
verdict (validate); pifs.report pages and pifs.paper_items coverage."""
import json

import pytest
import sympy as sp

from pifs.claims import BASES, ClaimBook, format_value, load_records, parse_paper_number, result_of, validate
from pifs.paper_items import PAPER_ITEMS, coverage
from pifs.report import basis_counts, chapter_header, errata_page, report_page


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
    assert book.number("a", 0.80549, paper="0.805", basis="paper")["status"] == "reproduced"
    assert book.number("b", 0.80551, paper="0.805", basis="paper")["status"] == "deviates"
    assert book.number("c", 0.81, paper="0.805", tol=0.01, basis="paper")["status"] == "reproduced"
    assert book.number("d", 1.1, paper=1.0, rtol=0.05, basis="paper")["status"] == "deviates"
    assert book.number("e", float("nan"), paper="1.0", basis="paper")["status"] == "deviates"


def test_number_needs_a_tolerance_for_floats(book):
    with pytest.raises(ValueError, match="tol"):
        book.number("x", 1.0, paper=1.0, basis="paper")


def test_basis_is_required_and_checked(book):
    with pytest.raises(TypeError):
        book.number("x", 1.0, paper="1.0")  # no basis: a new check cannot forget it
    with pytest.raises(TypeError):
        book.statement("y", True, paper="p", computed="c")
    with pytest.raises(ValueError, match="basis"):
        book.number("z", 1.0, paper="1.0", basis="ours")


@pytest.mark.parametrize("basis", ["exact-model", "our-model", "substitute-data"])
def test_non_paper_basis_never_convicts_the_paper(book, basis):
    # a number far from the paper's and a failed prediction: shown, never an erratum
    assert book.number("n", 5.0, paper="1.0", basis=basis)["status"] == "not comparable"
    assert book.statement("s", False, paper="p", computed="c", basis=basis)["status"] == "not shown"
    assert book.statement("t", True, paper="p", computed="c", basis=basis)["status"] == "shown"
    assert book.other_model("o", 0.5, paper="≈ 1", basis=basis)["status"] == "not comparable"
    with pytest.raises(ValueError, match="non-paper"):
        book.other_model("o2", 0.5, paper="1", basis="paper")
    # a hand-made erratum status on a model basis is refused at the source
    with pytest.raises(ValueError, match="convict"):
        book._add("forged", "deviates", 1.0, "2.0", basis=basis)


def test_paper_numbers_give_inconsistent(book):
    assert book.number("p", 2.5e-4, paper="5e-5", basis="paper-numbers")["status"] == "inconsistent"
    assert book.statement("q", False, paper="p", computed="c", basis="paper-numbers")["status"] == "inconsistent"


def test_symbolic_statement_text_full_illustrate(book):
    x = sp.symbols("x", positive=True)
    assert book.symbolic("id1", sp.sqrt(x) ** 2 + sp.sin(x) ** 2 + sp.cos(x) ** 2, x + 1,
                         basis="paper")["status"] == "re-derived"
    rec = book.symbolic("id2", x + 1, x, basis="paper")
    assert rec["status"] == "does not hold" and "residual" in rec["computed"]
    with pytest.raises(ValueError, match="cannot fail"):  # the same expression on both sides
        book.symbolic("id3", x + x, 2 * x, basis="paper")
    assert book.statement("s1", True, paper="p", computed="c", basis="paper")["status"] == "reproduced"
    assert book.statement("s2", False, paper="p", computed="c", basis="paper")["status"] == "does not hold"
    assert book.text("t1", "Theorem 17(c)", paper="Theorem 17(d)", basis="paper")["status"] == "deviates"
    assert book.text("t2", "eq. (5) ", paper="eq. (5)", basis="paper")["status"] == "reproduced"
    assert book.needs_full("f", paper="1.0", basis="paper")["status"] == "needs full profile"
    r = book.illustrate("i", "‖L‖∞ = 0.9", paper="contractive", basis="paper", why="s clamped to 0.9")
    assert r["status"] == "illustrated"
    with pytest.raises(ValueError, match="why"):
        book.illustrate("i2", 1, paper="p", basis="paper", why="")


def test_readings_are_evaluated_against_the_paper(book):
    r = book.number("Table 1 · x", 1.0746, paper="1.049681", basis="paper", note="which chain",
                    readings={"49-step cosine": 1.0496812, "50-step linear": 1.0746})
    assert r["status"] == "deviates"
    assert [x["matches"] for x in r["readings"]] == [True, False]


def test_result_of():
    assert result_of("Theorem 17(b) · diagonal block") == "Theorem 17"
    assert result_of("Table 1 · Linear · mean L*") == "Table 1"
    assert result_of("§6.2 · λ*(1) (linear)") == "§6.2"
    assert result_of("Figure 1") == "Figure 1"


def test_format_value_rounds_to_printed_digits_plus_one():
    assert format_value(0.80549123, "0.805") == "0.8055"
    assert format_value(2.3e-4, "2.5e-4") == "2.30e-04"
    assert format_value(3072, "3072") == "3072.0"
    assert format_value(0.123456789) == "0.1235"


def test_duplicate_ids_are_rejected(book):
    book.number("dup", 1.0, paper="1.0", basis="paper")
    with pytest.raises(ValueError, match="twice"):
        book.number("dup", 1.0, paper="1.0", basis="paper")


def test_records_written_and_reloaded(tmp_path, book):
    book.number("Table 1 · x", 0.5, paper="0.5", basis="paper")
    book.statement("Theorem 1", False, paper="it holds", computed="counter-example", note="because", basis="paper")
    recs = load_records(tmp_path)
    assert [r["id"] for r in recs] == ["Table 1 · x", "Theorem 1"]
    assert recs[0]["computed"] == 0.5 and recs[0]["paper"] == "0.5" and recs[0]["basis"] == "paper"
    assert all(json.dumps(r) for r in recs)
    # re-opening truncates: re-running a notebook does not duplicate records
    ClaimBook("99_test", "§9", claims_dir=tmp_path, display=False)
    assert load_records(tmp_path) == []


def _rec(nb, id, status, basis="paper", key=None, note="why", readings=None, kind="number"):
    return {"id": id, "notebook": nb, "status": status, "basis": basis, "key": key or id, "note": note,
            "readings": readings, "kind": kind, "result": result_of(id), "section": "§9", "anchor": "a",
            "paper": "1", "computed": 1.0, "tol": None}


def test_validate_one_statement_one_verdict():
    ok = [_rec("05", "§6.2 · λ**", "reproduced"), _rec("06", "§6.2 · λ**", "reproduced")]
    assert validate(ok) == []
    bad = [_rec("05", "§6.2 · λ** (DDIM)", "reproduced", key="λ** DDIM"),
           _rec("06", "§6.2 · DDIM-50 λ**", "deviates", key="λ** DDIM", readings=[{"reading": "r"}])]
    assert any("two verdicts" in e for e in validate(bad))
    # the same id on a model basis may differ from the paper's verdict: not the same statement
    mixed = [_rec("05", "x", "reproduced"), _rec("07", "x", "not shown", basis="our-model")]
    assert validate(mixed) == []


def test_validate_errata_need_a_paper_basis_and_an_explanation():
    assert any("basis" in e for e in validate([_rec("07", "t", "deviates", basis="our-model")]))
    assert any("no explanation" in e for e in validate([_rec("02", "t", "does not hold", note="")]))
    assert any("no readings" in e for e in validate([_rec("06", "t", "deviates")]))
    assert validate([_rec("06", "t", "deviates")], strict=False) == []
    assert any("no valid basis" in e for e in validate([dict(_rec("06", "t", "reproduced"), basis=None)]))


def test_report_and_errata_pages(book):
    book.number("Table 1 · mean | L*", 0.81, paper="0.805", note="cost $x$", basis="paper",
                readings={"cosine s = 0": 0.805})
    book.number("Theorem 28 · ok", 0.805, paper="0.805", basis="paper")
    book.statement("Table 3 · ρ > 0 on our model", False, paper="ρ > 0", computed="ρ = −0.2", basis="our-model")
    book.number("Table 6 · p", 2.5e-4, paper="5e-5", basis="paper-numbers", note="2/8!")
    runs = [{"notebook": "99_test", "section": "§9", "status": "ok", "seconds": 1.0, "parameters": {"n": 1}}]
    rep = report_page(book.records, runs, {"python": "3", "packages": {"numpy": "2"}}, "smoke")
    assert "Basis `paper`" in rep and "Basis `our-model`" in rep and "Basis `paper-numbers`" in rep
    assert "Coverage" in rep and f"/ {sum(len(v) for v in PAPER_ITEMS.values())}" in rep
    assert "0.81" not in rep  # the report links to rows, it does not repeat them
    err = errata_page(book.records, "smoke")
    assert "Table 1 · mean \\| L\\*" in err and "\\$x\\$" in err and "Theorem 28 · ok" not in err
    assert "reproduces the printed value" in err  # the reading that matches is named
    assert "our model" not in err.split("are never listed here")[1]  # model results are not errata
    assert "Self-contradictions" in err and "2/8!" in err
    assert "No deviations" in errata_page(book.records[1:3], "smoke")
    assert "errata-99-test-errors" in chapter_header(book.records, "99_test")


def test_report_counts_each_basis_separately(book):
    book.number("Table 1 · a", 1.0, paper="1.0", basis="paper")
    book.number("Table 1 · b", 2.0, paper="1.0", basis="our-model")
    book.number("Table 1 · c", 2.0, paper="1.0", basis="exact-model")
    book.statement("Table 1 · d", True, paper="p", computed="c", basis="exact-model")
    bc = basis_counts(book.records)
    assert set(bc) == {"paper", "our-model", "exact-model"}
    assert bc["paper"]["§9"]["reproduced"] == 1
    assert bc["our-model"]["§9"]["not comparable"] == 1
    assert bc["exact-model"]["§9"] == {"not comparable": 1, "shown": 1}
    assert set(BASES) >= set(bc)


def test_coverage_counts_only_evidence_about_the_paper(book):
    book.number("Table 1 · a", 1.0, paper="1.0", basis="paper")
    book.illustrate("Theorem 28 · bound", "holds", paper="p", basis="paper", why="Cauchy–Schwarz")
    book.statement("Table 3 · x", True, paper="p", computed="c", basis="our-model")
    book.needs_full("Table 4 · κ̂", paper="1.0011", basis="paper")
    cov = coverage(book.records)
    assert "Table 1" not in cov["§6"]["missing"]
    assert "Theorem 28" in cov["§6"]["missing"]  # illustrated only: no evidence
    assert "Table 3" in cov["§7"]["model_only"]
    assert "Table 4" not in cov["§7"]["missing"]

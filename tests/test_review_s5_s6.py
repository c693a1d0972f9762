"""Review of §5–§6: without CIFAR-10, no record computed on the fallback photographs is an erratum."""
import json
import os

import pytest

from pifs.build import build
from pifs.claims import ERRATA_STATUSES


def test_06_on_substitute_data_has_no_errata(tmp_path, monkeypatch):
    empty, home = tmp_path / "no_data", tmp_path / "home"
    empty.mkdir(); home.mkdir()
    monkeypatch.setenv("PIFS_DATA_DIR", str(empty))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rc = build("smoke", root=root, build_dir=tmp_path / "bld", only=["06_practical"], html=False)
    assert rc == 0
    recs = [json.loads(line) for line in (tmp_path / "bld" / "claims" / "06_practical.jsonl").read_text().splitlines()]
    data_dependent = [r for r in recs if r["id"].startswith(("Table 2", "§6.3 ·")) or "every patch is expansion-forcing" in r["id"]]
    assert data_dependent, "no CIFAR-dependent records found"
    for r in data_dependent:
        if r["basis"] == "paper-numbers":
            continue   # computed from the paper's printed numbers only (no data involved)
        assert r["basis"] == "substitute-data", (r["id"], r["basis"])
    for r in recs:
        if r["basis"] == "substitute-data":
            assert r["status"] not in ERRATA_STATUSES, (r["id"], r["status"])

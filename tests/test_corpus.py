"""The reliability corpus (tests/corpus/): every case gives its exit status and exactly its
words, never a traceback, and a case that fails changes nothing in its folder. Also: the
table in docs/reliability.md is the one generated from the corpus."""

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent / "corpus"))
import corpus  # noqa: E402

from stylekit.files.images import TEMP_MARK  # noqa: E402

CASES = corpus.cases()
SAID = json.loads(corpus.SAID.read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_case(case, tmp_path):
    outcome = corpus.run_case(case, tmp_path)
    assert "Traceback" not in outcome.stderr + outcome.stdout
    assert outcome.status == case.status, outcome.stderr
    assert outcome.said == SAID[case.id]
    if case.status != 0:
        assert all(line.startswith(("error:", "usage:", "stylekit", " ")) for line in outcome.said)
        assert outcome.after == outcome.before, "a failing case must leave the folder as it was"
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(TEMP_MARK)]
    assert not leftovers
    if case.status == 0 and case.args[0] == "run":
        output = tmp_path / (case.args[case.args.index("-o") + 1] if "-o" in case.args else "out/result.png")
        with Image.open(output) as img:
            assert img.size == tuple(case.output_size or (64, 48))


def test_corpus_is_large_and_consistent():
    ids = [case.id for case in CASES]
    assert len(set(ids)) == len(ids) >= 60
    assert set(SAID) == set(ids), "run: python tests/corpus/corpus.py --update (and review the diff)"


def test_reliability_doc_is_up_to_date():
    assert corpus.DOC.read_text(encoding="utf-8") == corpus.docs_markdown(), "run: python tests/corpus/corpus.py --docs"

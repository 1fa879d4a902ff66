"""``fusion-spec zoo``: coverage derived from the registry, the command's output, and docs/zoo.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from fusion_spec.cli import main  # noqa: E402
from fusion_spec.cli import zoo as zoo_cli  # noqa: E402
from fusion_spec.interop import registry, zoo  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_zoo_command_reports_pieces_statuses_and_the_sequence_side(capsys, tmp_path):
    code = main(["zoo", "--model-type", "qwen3_vl_moe", "--model-type", "aria", "--model-type", "chameleon",
                 "--json", str(tmp_path / "zoo.json")])
    out = capsys.readouterr().out
    assert code == 0 and "qwen3_vl_moe" in out and "3 of 3 image-text-to-text model types covered" in out
    report = json.loads((tmp_path / "zoo.json").read_text())
    models = {m["model_type"]: m for m in report["models"]}
    q = models["qwen3_vl_moe"]
    assert q["status"] == "covered" and q["built"] == "model (meta device)"
    # the DeepStack converter of the whole model reads the deepstack_merger_list: those are its pieces
    assert {p["path"]: p["spec"] for p in q["pieces"]} == {"": "Qwen3VLDeepStack", "model.visual.merger": "TokenMerge"}
    assert q["positions"] == "M-RoPE = Qwen3VLModel.get_rope_index" and q["sequence_covered"]
    assert [p["spec"] for p in models["aria"]["pieces"]] == ["AriaProjector"]
    # Chameleon's default config has no vocabulary map: the zoo gives it one to build the model
    assert models["chameleon"]["status"] == "covered" and models["chameleon"]["built"] == "model (meta device)"
    assert [p["spec"] for p in models["chameleon"]["pieces"]] == ["VQTokenVocab"]
    assert report["summary"]["covered"] == 3


def test_unknown_model_type_is_a_one_line_usage_error(capsys):
    code = main(["zoo", "--model-type", "llava_17"])
    err = capsys.readouterr().err
    assert code == 2 and "no model type 'llava_17'" in err and len(err.strip().splitlines()) == 1


def test_coverage_is_derived_from_the_registry(monkeypatch):
    """Take a converter's alias away and the model it covered is no longer covered: nothing is a table."""
    assert zoo.survey(["glm4v_moe"])[0].status == "covered"
    monkeypatch.delitem(registry.CONVERTERS, "Glm4vMoeVisionPatchMerger")
    report = zoo.survey(["glm4v_moe"])[0]
    assert report.status == "not covered" and "nearest: Glm4vVisionPatchMerger" in report.missing[0]


def _docs_table() -> tuple[str, str]:
    text = (ROOT / "docs" / "zoo.md").read_text()
    block = re.search(r"<!-- zoo:begin[^>]*-->\n(.*)<!-- zoo:end -->", text, re.S)
    assert block, "docs/zoo.md has no generated block"
    version = re.match(r"transformers (\S+):", block.group(1))
    return block.group(1), version.group(1)


@pytest.mark.slow  # builds every model of the mapping on the meta device: about a minute
def test_docs_table_and_readme_headline_are_the_commands_output():
    table, version = _docs_table()
    if version != transformers.__version__:
        pytest.skip(f"docs/zoo.md was generated with transformers {version}, {transformers.__version__} installed")
    report = zoo.survey()
    assert zoo_cli.markdown(report, version).rstrip() == table.rstrip(), \
        "docs/zoo.md is stale: regenerate its block with `fusion-spec zoo --markdown`"
    summary = zoo_cli.summary(report)
    readme = (ROOT / "README.md").read_text()
    assert f"**{summary['covered']} of its {summary['model_types']} image-text-to-text model types**" in readme
    assert f"({summary['refused']} more convert at their released sizes" in readme.replace("\n   ", " ")
    # every model type not covered names what it lacks; every covered one converted each piece
    for r in report:
        assert r.status != "not covered" or r.missing, r.model_type
        assert r.status != "covered" or (r.pieces and all(p.covered and p.spec for p in r.pieces)), r.model_type

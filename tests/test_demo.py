"""`decovlm demo`: the report has every section, reruns reuse finished work, claims follow the numbers."""

import json
import re

import pytest

from decovlm.cli import main as cli_main
from decovlm.demo.config import DemoConfig
from decovlm.demo.report import curve_auc
from decovlm.errors import UserError

GROUNDING = ["--budget", "grounding_steps=3"]


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    # With a tiny grounding stage, so the per-task-group path (the gpu preset's) runs too.
    assert cli_main(["demo", "--quick", "--out", str(out), "--device", "cpu", *GROUNDING]) == 0
    return out


def test_quick_demo_writes_every_section(quick_demo):
    report_md = (quick_demo / "REPORT.md").read_text()
    for heading in (
        "Which of the paper's claims held",
        "## Results",
        "## Relevance maps",
        "## The backbones",
    ):
        assert heading in report_md
    report = json.loads((quick_demo / "report.json").read_text())
    specs = [row["spec"] for row in report["rows"]]
    assert specs == ["mlp2x_gelu", "avgpool2_16", "qformer2_16"]
    for row in report["rows"]:
        assert row["visual_tokens"] == (64 if row["spec"] == "mlp2x_gelu" else 16)
        assert row["projector_params"] > 0 and row["train_seconds"][0] > 0
    for figure in report["figures"].values():
        assert (quick_demo / figure).exists() or __import__("pathlib").Path(figure).exists()
    assert "convergence" in report["figures"] and "text_to_patch" in report["figures"]
    assert any(k.startswith("query_to_patch_qformer") for k in report["figures"])
    # A quick run checks the plumbing: it never concludes a claim of the paper.
    paper = [c for c in report["claims"] if not c["claim"].startswith("Sanity")]
    assert paper and {c["verdict"] for c in paper} == {"not concluded"}
    assert "**Quick run:**" in report_md and "checks the plumbing" in report_md
    assert report["convergence"]["curve_steps"][0] == 0
    assert all("outcomes" in p for p in report["runs"][0]["curve"])
    # Localization came from the box-only model, scored on the same questions with both images.
    for r in report["runs"]:
        g = r["grounding"]
        assert g["steps"] == 3 and g["eval"]["outcomes"] and g["eval_swapped"]["outcomes"]
        assert set(g["eval"]["outcomes"]) <= set(r["outcomes"])
        # Both branches score the same questions: the grounding model's box questions (own and
        # swapped image) are the ones the question model was asked (--quick: the first 40).
        run_dir = quick_demo / "runs" / r["spec"] / f"seed{r['seed']}"
        asked = json.loads((run_dir / "questions.json").read_text())
        for key, table in (("eval", "outcomes"), ("eval_swapped", "swapped_outcomes")):
            assert set(g[key]["outcomes"]) <= set(asked[table]) and g[key]["outcomes"], key
            assert len(asked[table]) == 40
        assert r["scores"]["localization"] == g["eval"]["scores"]["localization"]
    assert "box questions alone" in report_md
    assert set(report["relevance"]) == set(specs)
    # Each run kept its curve (accuracy against step), answers and training metrics.
    run = quick_demo / "runs" / "avgpool2_16" / "seed0"
    # The align stage, then the question and grounding branches, each cached as its own part.
    for part in ("aligned.json", "questions.json", "grounding.json", "result.json"):
        assert (run / part).exists(), part
    assert (run / "eval" / "answers.jsonl").exists() and (
        run / "finetune" / "metrics.jsonl"
    ).exists()
    assert len(report["runs"][0]["curve"]) >= 2
    # The swapped-image control ran for every projector and shows in the category table.
    assert all("overall" in r["swapped_scores"] for r in report["runs"])
    assert "mlp2x_gelu, another scene's image" in report_md
    assert any(
        c["claim"].startswith("Sanity: the non-compressive model's answers depend")
        for c in report["claims"]
    )


def test_rerun_reuses_finished_work(quick_demo, capsys):
    before = (quick_demo / "runs" / "mlp2x_gelu" / "seed0" / "result.json").stat().st_mtime
    assert (
        cli_main(["demo", "--quick", "--out", str(quick_demo), "--device", "cpu", *GROUNDING]) == 0
    )
    printed = capsys.readouterr().out
    assert "mlp2x_gelu seed 0: reusing" in printed and "world: reusing" in printed
    assert (quick_demo / "runs" / "mlp2x_gelu" / "seed0" / "result.json").stat().st_mtime == before


def test_swapped_questions_never_keep_their_own_image(tmp_path):
    from decovlm.demo.swapped import write_swapped_questions
    from decovlm.utils.io import read_jsonl

    (tmp_path / "eval").mkdir()
    rows = [{"question_id": f"q{i}", "image": f"images/s{i // 2}.png", "text": "?", "category": "vqa",
             "answer": "red"} for i in range(6)]  # fmt: skip
    (tmp_path / "eval" / "questions.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = write_swapped_questions(tmp_path, tmp_path / "swapped")
    swapped = read_jsonl(out / "eval" / "questions.jsonl")
    assert [r["question_id"] for r in swapped] == [r["question_id"] for r in rows]
    for old, new in zip(rows, swapped):
        assert new["image"] != str((tmp_path / old["image"]).resolve())
        assert new["image"].startswith(str(tmp_path.resolve() / "images"))
        assert {k: v for k, v in new.items() if k != "image"} == {
            k: v for k, v in old.items() if k != "image"
        }
    (tmp_path / "eval" / "questions.jsonl").write_text(json.dumps(rows[0]))
    with pytest.raises(ValueError, match="questions.jsonl.*at least two images"):
        write_swapped_questions(tmp_path, tmp_path / "swapped")


def test_report_warns_when_the_sanity_check_fails():
    from decovlm.demo.tables import _caveat

    failed = {"claims": [{"claim": "Sanity: ...", "held": False, "not_learned": ["localization"]}]}
    held = {"claims": [{"claim": "Sanity: ...", "held": True}]}
    assert "not evidence" in _caveat(failed)[0] and _caveat(held) == []
    assert "these tasks from the image in this run: localization." in _caveat(failed)[0]
    only_image = {"claims": [{"claim": "Sanity: ...", "held": False}]}
    assert "barely depend on the image" in _caveat(only_image)[0]


def test_curve_auc_and_projector_choice():
    curve = [{"step": 0, "scores": {"overall": {"accuracy": 0.0}}},
             {"step": 10, "scores": {"overall": {"accuracy": 50.0}}}]  # fmt: skip
    assert curve_auc(curve) == 25.0
    assert DemoConfig(extra=["cabstractor", "maxpool"]).projectors == [
        "mlp2x_gelu", "avgpool2_16", "qformer2_16", "cabstractor_16", "maxpool2_16",
    ]  # fmt: skip


def test_bad_arguments_fail_clearly(capsys):
    for argv, message in [
        (["--tokens", "15"], "--tokens"),
        (["--extra", "nonsense"], "unknown projector spec"),
        (["--extra", "no-align+avgpool2_16"], "unknown projector spec"),
        (["--budget", "steps=3"], "--budget 'steps=3'.*finetune_steps"),
        (["--budget", "finetune_steps=abc"], "'abc' is not a valid int"),
        (["--seeds", "0"], "--seeds must be >= 1"),
    ]:
        assert cli_main(["demo", *argv]) == 2
        assert re.match(f"decovlm demo: error: .*{message}", capsys.readouterr().err), argv
        with pytest.raises(UserError, match=message):
            cli_main(["demo", *argv, "--debug"])


def test_short_names_take_the_token_count_and_full_specs_keep_theirs():
    config = DemoConfig(tokens=4, extra=["resampler", "QFormer2_64", "linear", "deco"])
    assert config.projectors == [
        "mlp2x_gelu", "avgpool2_4", "qformer2_4", "resampler2_4", "qformer2_64", "linear",
    ]  # fmt: skip


def test_budget_overrides_are_typed_like_the_budget():
    from decovlm.demo.cli import parse_budget

    overrides = parse_budget(["finetune_steps=3000", "finetune_lr=1e-3", "eval_questions=none"])
    assert overrides == {"finetune_steps": 3000, "finetune_lr": 1e-3, "eval_questions": None}
    budget = DemoConfig(budget_overrides=overrides).budget
    assert (budget.finetune_steps, budget.finetune_lr, budget.train_scenes) == (3000, 1e-3, 8000)


def test_gpu_preset_resolves_and_is_chosen_only_with_cuda(monkeypatch):
    from decovlm.demo import config
    from decovlm.demo.cli import parse_budget
    from decovlm.projectors import ProjectorSpec
    from decovlm.world.backbones import BUDGETS as BACKBONES

    monkeypatch.setattr(config, "cuda_available", lambda: False)
    assert DemoConfig().preset_name == "default" and DemoConfig().n_seeds == 1
    monkeypatch.setattr(config, "cuda_available", lambda: True)
    assert DemoConfig().preset_name == "gpu"
    assert DemoConfig(device="cpu").preset_name == "default"  # CUDA present, CPU asked for
    assert DemoConfig(preset="default").preset_name == "default"  # overridable
    assert DemoConfig(quick=True).preset_name == "quick"
    monkeypatch.setattr(config, "cuda_available", lambda: False)
    gpu = DemoConfig(preset="gpu")  # resolves on a CPU machine without running anything
    assert gpu.n_seeds >= 3 and DemoConfig(preset="gpu", seeds=1).n_seeds == 1
    assert gpu.projectors == [
        "mlp2x_gelu", "avgpool2_16", "qformer2_16", "maxpool2_16", "cabstractor_16",
        "avgpool2_4", "qformer2_4", "maxpool2_4", "cabstractor_4",
    ]  # fmt: skip
    for spec in gpu.projectors:
        assert str(ProjectorSpec.parse(spec)) == spec  # canonical
    # the shipped pretrained backbones, as every preset; a world they were not made for trains "gpu"
    assert gpu.budget.backbones == "shipped" and BACKBONES["gpu"]["vision"].geometry_weight > 0
    overrides = parse_budget(["gpu", "finetune_steps=10"])
    assert overrides == {"_preset": "gpu", "finetune_steps": 10}
    with pytest.raises(ValueError, match="preset 'tpu'"):
        _ = DemoConfig(preset="tpu").budget

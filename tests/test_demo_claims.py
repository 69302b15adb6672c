"""The demo's claim logic: intervals decide, failed sanity checks and --quick never conclude."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decovlm.demo.claims import check_claims, decide
from decovlm.demo.stats import (
    Bootstrap,
    Interval,
    paired_mean_diff,
    question_outcomes,
    steps_to_reach,
)
from decovlm.demo.swapped import write_curve_questions

CATS = ["vqa", "count", "localization", "yesno", "multiple_choice"]
N = 40  # questions per category
CATEGORIES = {f"{c}{i}": c for c in CATS for i in range(N)}
CHANCE = dict.fromkeys(CATS, 20.0)


def _outcomes(rate: float, seed: int) -> dict[str, float]:
    """Each question right with probability `rate` (a fixed draw per seed)."""
    rng = np.random.default_rng(seed)
    return {q: float(rng.random() < rate) for q in CATEGORIES}


def _run(spec, own, swapped, seed=0, params=1000, tokens=16, curve=None):
    return {"spec": spec, "seed": seed, "outcomes": own, "swapped_outcomes": swapped,
            "projector_params": params, "visual_tokens": tokens, "curve": curve or []}  # fmt: skip


def _runs(full_own=0.9, full_swapped=0.3, deco=0.85, qformer=0.5):
    return [
        _run("mlp2x_gelu", _outcomes(full_own, 1), _outcomes(full_swapped, 2), tokens=64),
        _run("avgpool2_16", _outcomes(deco, 3), _outcomes(0.3, 4), params=100),
        _run("qformer2_16", _outcomes(qformer, 5), _outcomes(0.3, 6), params=5000),
    ]


def _verdicts(results, quick=False, relevance=None):
    claims, _ = check_claims(results, relevance or {}, CATEGORIES, CHANCE, 16, quick)
    return {c["claim"]: c for c in claims}


def test_decide_follows_the_interval():
    assert decide(Interval(3, 1, 5), sane=None, quick=False)[0] == "held"
    assert decide(Interval(-3, -5, -1), sane=None, quick=False)[0] == "not held"
    verdict, reason = decide(Interval(1, -2, 4), sane=None, quick=False)
    assert verdict == "inconclusive" and "includes zero" in reason
    # Non-inferiority: "not worse than 5 points" holds when the whole interval is above -5.
    assert decide(Interval(-2, -4, 0), sane=None, quick=False, margin=-5)[0] == "held"
    assert decide(Interval(-2, -7, 0), sane=None, quick=False, margin=-5)[0] == "inconclusive"
    assert decide(None, sane=None, quick=False)[0] == "inconclusive"


def test_a_clear_difference_is_held_and_the_reverse_not_held():
    results = _runs()
    results[1]["outcomes"] = dict(results[0]["outcomes"])  # DeCo answers as the full model does
    claims = _verdicts(results)
    groups = [c for k, c in claims.items() if "beats the Q-Former" in k]
    assert len(groups) == 3 and all(c["verdict"] == "held" for c in groups)
    sanity = [c for k, c in claims.items() if k.startswith("Sanity")]
    assert [c["verdict"] for c in sanity] == ["passed", "passed"]
    assert (
        claims["DeCo has fewer trainable projector parameters than the Q-Former"]["verdict"]
        == "held"
    )
    keep = next(c for k, c in claims.items() if "keeps the non-compressive" in k)
    assert keep["verdict"] == "held"
    reverse = _verdicts(_runs(deco=0.5, qformer=0.85))
    assert all(c["verdict"] == "not held" for k, c in reverse.items() if "beats the Q-Former" in k)
    keep = next(c for k, c in reverse.items() if "keeps the non-compressive" in k)
    assert keep["verdict"] == "not held"  # 40 points worse: the whole interval lies below -5


def test_an_interval_including_zero_is_inconclusive():
    results = _runs(deco=0.6, qformer=0.6)
    results[2]["outcomes"] = dict(results[1]["outcomes"])
    # Two questions flipped each way: a difference of zero, with some spread.
    for q in ("vqa0", "count0"):
        results[2]["outcomes"][q] = 1 - results[2]["outcomes"][q]
    for c in (c for k, c in _verdicts(results).items() if "beats the Q-Former" in k):
        assert c["verdict"] == "inconclusive" and "includes zero" in c["reason"]
        assert c["interval"]["low"] <= 0 <= c["interval"]["high"]


def test_a_run_failing_its_sanity_checks_cannot_hold_a_claim():
    # The non-compressive model scores the same with another scene's image: it did not read it.
    same = _outcomes(0.7, 1)
    results = _runs()
    results[0]["swapped_outcomes"] = dict(same)
    results[0]["outcomes"] = dict(same)
    claims = _verdicts(results)
    assert [c["verdict"] for k, c in claims.items() if k.startswith("Sanity")] == [
        "failed",
        "failed",
    ]
    paper = [c for k, c in claims.items() if not k.startswith("Sanity")]
    assert paper and all(c["verdict"] == "inconclusive" for c in paper)
    assert all(c["reason"].startswith("sanity check failed") for c in paper)


def test_a_task_not_learned_makes_only_its_group_inconclusive():
    results = _runs()
    for key in ("outcomes", "swapped_outcomes"):  # localization: 5% with either image
        for i in range(N):
            results[0][key][f"localization{i}"] = float(i < 2)
    claims = _verdicts(results)
    every = next(c for k, c in claims.items() if "learns every task" in k)
    assert every["verdict"] == "failed" and every["not_learned"] == ["localization"]
    loc = next(c for k, c in claims.items() if "Visual localization" in k)
    assert loc["verdict"] == "inconclusive" and "localization" in loc["reason"]
    vqa = next(c for k, c in claims.items() if "Open-ended VQA" in k)
    assert vqa["verdict"] == "held"


def test_quick_never_concludes():
    claims = _verdicts(_runs(), quick=True)
    paper = [c for k, c in claims.items() if not k.startswith("Sanity")]
    assert paper and {c["verdict"] for c in paper} == {"not concluded"}
    assert all("plumbing" in c["reason"] for c in paper)


def test_paired_bootstrap_and_seeds():
    a = _outcomes(0.6, 1)
    boot = Bootstrap({"a": [a], "b": [dict(a)]}, CATEGORIES)
    assert boot.diff("a", "b").to_dict() == {"estimate": 0.0, "low": 0.0, "high": 0.0}
    assert boot.counts == dict.fromkeys(CATS, N) and boot.n_questions == 5 * N
    # Seeds that disagree widen the interval beyond what one seed's questions give.
    one = Bootstrap({"a": [_outcomes(0.9, 1)], "b": [_outcomes(0.5, 2)]}, CATEGORIES).diff("a", "b")
    two = Bootstrap({"a": [_outcomes(0.9, 1), _outcomes(0.5, 3)], "b": [_outcomes(0.5, 2), _outcomes(0.5, 4)]},
                    CATEGORIES).diff("a", "b")  # fmt: skip
    assert two.high - two.low > one.high - one.low
    rel = paired_mean_diff({"c1": 0.5, "c2": 0.7}, {"c1": 0.2, "c2": 0.3, "c3": 0.9})
    assert rel.estimate == pytest.approx(0.35) and rel.low >= 0.3


def test_steps_to_reach_interpolates_and_marks_never():
    steps = np.array([0, 100, 200])
    acc = np.array([[10, 50, 90], [10, 20, 30], [95, 96, 97]])
    got = steps_to_reach(steps, acc, np.array([70, 70, 70]))
    assert got[0] == pytest.approx(150) and np.isinf(got[1]) and got[2] == 0


def _curve(rates, seed):
    return [{"step": 100 * i, "scores": {"overall": {"accuracy": 100 * r}},
             "outcomes": _outcomes(r, seed + i)} for i, r in enumerate(rates)]  # fmt: skip


def test_convergence_claim_uses_steps_to_the_target():
    results = _runs()
    results[0]["curve"] = _curve([0.2, 0.5, 0.8, 0.9, 0.9, 0.9, 0.9], 10)
    results[1]["curve"] = _curve([0.2, 0.8, 0.9, 0.9, 0.9, 0.9, 0.9], 20)
    results[2]["curve"] = _curve([0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 0.9], 30)
    claims, conv = check_claims(results, {}, CATEGORIES, CHANCE, 16, False)
    fast = next(c for c in claims if "converges faster" in c["claim"])
    assert fast["verdict"] == "held", fast
    assert conv["steps"]["avgpool2_16"].estimate < conv["steps"]["qformer2_16"].estimate
    assert len(conv["curve_steps"]) == 7


def test_question_outcomes_use_the_runner_scorer(tmp_path):
    rows = [
        {"question_id": "a", "text": "?", "category": "vqa", "answer": "red"},
        {
            "question_id": "b",
            "text": "?",
            "category": "localization",
            "answer": "[0.1, 0.1, 0.5, 0.5]",
        },
        {"question_id": "c", "text": "?", "category": "yesno", "answer": "no"},
    ]
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "questions.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    answers = [{"question_id": "a", "answer": "Red"}, {"question_id": "b", "answer": "[0.1, 0.1, 0.5, 0.45]"},
               {"question_id": "c", "answer": "Yes, there is."}]  # fmt: skip
    (tmp_path / "ans").mkdir()
    (tmp_path / "ans" / "answers.jsonl").write_text("\n".join(json.dumps(r) for r in answers))
    assert question_outcomes(tmp_path, tmp_path / "ans") == {"a": 1.0, "b": 1.0, "c": 0.0}


def test_curve_questions_take_every_category_in_turn(tmp_path):
    rows = [{"question_id": f"{c}{i}", "image": "images/x.png", "text": "?", "category": c, "answer": "1"}
            for c in ("yesno",) * 1 for i in range(10)]  # fmt: skip
    rows += [{"question_id": f"vqa{i}", "image": "images/x.png", "text": "?", "category": "vqa", "answer": "1"}
             for i in range(3)]  # fmt: skip
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "questions.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = write_curve_questions(tmp_path, tmp_path / "curve", 6)
    picked = [json.loads(x) for x in (out / "eval" / "questions.jsonl").read_text().splitlines()]
    assert [r["question_id"] for r in picked] == [
        "yesno0",
        "vqa0",
        "yesno1",
        "vqa1",
        "yesno2",
        "vqa2",
    ]
    assert all(r["image"].startswith(str(tmp_path.resolve())) for r in picked)


@settings(max_examples=15, deadline=None)
@given(rates=st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4), seed=st.integers(0, 10_000))
def test_no_claim_is_held_when_the_image_was_not_read(rates, seed):
    """Whatever the compressive projectors score, a model that ignores the image concludes nothing."""
    same = _outcomes(rates[0], seed)
    results = [
        _run("mlp2x_gelu", same, dict(same), tokens=64),
        _run(
            "avgpool2_16", _outcomes(rates[1], seed + 1), _outcomes(rates[2], seed + 2), params=10
        ),
        _run("qformer2_16", _outcomes(rates[3], seed + 3), _outcomes(0.5, seed + 4), params=10_000),
    ]
    claims = _verdicts(results, relevance={
        spec: {"summary": {"energy": e, "pointing": 0.5}, "cases": [{"case_id": "c", "energy": e}]}
        for spec, e in (("avgpool2_16", 0.9), ("qformer2_16", 0.1))
    })  # fmt: skip
    assert all(c["verdict"] != "held" for c in claims.values())


def test_extra_projectors_and_a_second_token_count_are_compared_with_deco():
    results = _runs()
    results += [
        _run("cabstractor_16", _outcomes(0.4, 7), _outcomes(0.3, 8)),
        _run("avgpool2_4", dict(results[1]["outcomes"]), _outcomes(0.3, 9), tokens=4),
    ]
    claims = _verdicts(results)
    assert (
        claims["DeCo beats cabstractor_16 at the same 16 tokens (overall accuracy)"]["verdict"]
        == "held"
    )
    fewer = next(
        c for k, c in claims.items() if k.startswith("DeCo keeps its accuracy with 4 instead of 16")
    )
    assert fewer["verdict"] == "held" and fewer["interval"]["estimate"] == 0.0

"""The demo report's relevance section: per projector, each method's score and unreliable share."""

from decovlm.demo.relevance_section import relevance_section, verdict


def _summary(pointing, energy, unreliable, key="unreliable_share"):
    return {"cases": 10, "pointing": pointing, "energy": energy, "mask_area": 0.1,
            key: unreliable}  # fmt: skip


def test_section_rows_and_verdicts():
    relevance = {
        "qformer2_16": {
            "query_to_patch": "gae",
            "summary": _summary(0.3, 0.2, 0.6),
            "methods": {
                "gae": _summary(0.3, 0.2, 0.6),
                "attention": _summary(0.9, 0.5, 0.0),
                "grad-x-input": _summary(0.5, 0.3, 0.1),
            },
        },
        "avgpool2_16": {
            "query_to_patch": "fixed",
            "summary": _summary(0.05, 0.1, 0.0),
            "methods": {"fixed": _summary(0.05, 0.1, 0.0), "grad-x-input": _summary(0.1, 0.1, 0.0)},
        },
        "old": {"query_to_patch": "fixed", "summary": _summary(0.5, 0.4, float("nan"))},
        # results written before issue 31 call the share "vanished_share"
        "older": {"query_to_patch": "gae", "summary": _summary(0.5, 0.4, 0.25, "vanished_share")},
    }
    text = relevance_section(relevance)
    assert "| qformer2_16 | gae (own) | 10 | 0.30 | 0.200 | 0.100 | 60% |" in text
    assert "| qformer2_16 | attention | 10 | 0.90 |" in text
    assert "| old | fixed | 10 | 0.50 | 0.400 | 0.100 | - |" in text
    assert "the miss is the explanation method's" in text
    assert "60% of its maps are flagged unreliable" in text and "| unreliable |" in text
    assert "| older | gae | 10 | 0.50 | 0.400 | 0.100 | 25% |" in text
    assert "avgpool2_16: every method misses" in verdict("avgpool2_16", relevance["avgpool2_16"])
    assert verdict("old", relevance["old"]) is None
    assert relevance_section({}) == ""

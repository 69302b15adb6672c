"""Write the synthetic world to disk in the same formats as the real LLaVA-1.5 data.

    DIR/images/{train,eval}_NNNNNN.png   the rendered scenes
    DIR/align.json            stage 1 (LLaVA-558K style): "<image>\\nDescribe the image briefly." -> caption
    DIR/finetune.json         stage 2 (LLaVA-665K style): multi-turn conversations mixing every task
                              but captions, "<image>" only at the start of the first human turn
    DIR/grounding.json        single-turn box questions, one per training scene (a box-only stage:
                              docs/world_learnability.md, sixth round)
    DIR/eval/questions.jsonl  held-out scenes: {question_id, image, text, category, answer, answers,
                              [pope_split], [options], kind, scene_id}
    DIR/eval/relevance_cases.jsonl + DIR/eval/masks/*.png   {case_id, image, prompt, answer,
                              target_word, mask, object} - the object's visible mask, 0/255 PNG
    DIR/world.json            seed, config, vocabulary, prompts, counts, version (written last)

Everything is a pure function of (seed, config, counts), so the same arguments give byte-identical
files. Eval scenes come from held-out compositions (see scene.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from decovlm.utils.io import atomic_path, atomic_write_json, atomic_write_text
from decovlm.world.render import RenderedScene, render_scene
from decovlm.world.scene import WORLD_VERSION, WorldConfig, sample_scene, vocabulary
from decovlm.world.tasks import PROMPTS, QA, all_questions, caption, localization_questions

IMAGE_TOKEN = "<image>"
# Per eval scene: one question of each category, so the categories (and the paper's task groups
# built from them) are equally sized and a comparison is as precise on one as on another (with
# every yes/no question of a scene, 360 of 660 questions were yes/no and the other tasks' intervals
# were the widest). The yes/no question cycles through (POPE split, answer) from scene to scene.
EVAL_PER_SCENE = {"vqa": 1, "count": 1, "localization": 1, "yesno": 1, "multiple_choice": 1}
YESNO_CYCLE = [
    (split, answer) for split in ("random", "popular", "adversarial") for answer in ("yes", "no")
]


@dataclass
class WorldFiles:
    """Paths of a written world."""

    root: Path
    align: Path
    finetune: Path
    questions: Path
    relevance_cases: Path
    world_json: Path
    grounding: Path | None = None

    @classmethod
    def at(cls, root: str | Path) -> WorldFiles:
        """The paths of the world written in `root` (the names `generate_world` writes)."""
        root = Path(root)
        return cls(root=root, align=root / "align.json", finetune=root / "finetune.json",
                   questions=root / "eval" / "questions.jsonl",
                   relevance_cases=root / "eval" / "relevance_cases.jsonl",
                   world_json=root / "world.json", grounding=root / "grounding.json")  # fmt: skip


def _scene_rng(seed: int, scene, purpose: int) -> np.random.Generator:
    from decovlm.world.scene import SPLIT_CODES

    return np.random.default_rng([int(seed), SPLIT_CODES[scene.split], scene.index, 1000 + purpose])


def _save_png(image: Image.Image, path: Path) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def _pick(qas: list[QA], k: int, rng: np.random.Generator) -> list[QA]:
    if len(qas) <= k:
        return list(qas)
    return [qas[int(i)] for i in sorted(rng.choice(len(qas), size=k, replace=False))]


# How often each task category is drawn for a finetune turn (relative). The token loss is a mean
# over answer tokens: a box answer is 18 tokens against 1-2 for every other category, so at equal
# turns boxes carried ~70% of the loss and the one-word tasks starved (measured on 16,000 scenes,
# lr 5e-4, 1500 steps: without boxes VQA reached 44.9% with its own image vs 26.8% with another
# scene's; with boxes at an equal share it stayed at its swapped-image level).
TURN_WEIGHTS = {
    "vqa": 1.0,
    "count": 1.0,
    "localization": 0.25,
    "yesno": 1.0,
    "multiple_choice": 1.0,
}


def finetune_record(rendered: RenderedScene, image: str, seed: int, turns: int = 5) -> dict:
    """One multi-turn conversation about a training scene, mixing the task categories."""
    rng = _scene_rng(seed, rendered.scene, 1)
    # No caption turn: captions are the align stage's data already, and a long caption would
    # dominate the token loss over the one-token yes/no and multiple-choice answers.
    groups = {k: v for k, v in all_questions(rendered, rng).items() if v and k != "caption"}
    names = sorted(groups)
    weights = np.array([TURN_WEIGHTS.get(name, 1.0) for name in names])
    chosen: list[QA] = []
    seen: set[str] = set()
    n_turns = int(rng.integers(max(1, turns - 2), turns + 1))
    for _ in range(4 * n_turns):
        if len(chosen) == n_turns:
            break
        group = groups[names[int(rng.choice(len(names), p=weights / weights.sum()))]]
        qa = group[int(rng.integers(len(group)))]
        if qa.prompt not in seen:
            seen.add(qa.prompt)
            chosen.append(qa)
    conversations = []
    for k, qa in enumerate(chosen):
        prompt = f"{IMAGE_TOKEN}\n{qa.prompt}" if k == 0 else qa.prompt
        conversations.append({"from": "human", "value": prompt})
        conversations.append({"from": "gpt", "value": qa.answer})
    return {"id": rendered.scene.scene_id, "image": image, "conversations": conversations}


def grounding_record(rendered: RenderedScene, image: str, seed: int) -> dict | None:
    """One box question about a training scene, alone (None when the scene has no nameable object)."""
    rng = _scene_rng(seed, rendered.scene, 4)
    boxes = localization_questions(rendered)
    if not boxes:
        return None
    qa = boxes[int(rng.integers(len(boxes)))]
    return {
        "id": f"{rendered.scene.scene_id}_box",
        "image": image,
        "conversations": [
            {"from": "human", "value": f"{IMAGE_TOKEN}\n{qa.prompt}"},
            {"from": "gpt", "value": qa.answer},
        ],
    }


def eval_records(rendered: RenderedScene, image: str, seed: int, pope_pairs: int) -> list[dict]:
    """The held-out questions asked about one eval scene."""
    rng = _scene_rng(seed, rendered.scene, 2)
    groups = all_questions(rendered, rng, pope_pairs=pope_pairs)
    picked: list[QA] = []
    for category in ("vqa", "count", "localization", "yesno", "multiple_choice"):
        pool = groups[category]
        if category == "yesno":
            split, answer = YESNO_CYCLE[rendered.scene.index % len(YESNO_CYCLE)]
            pool = [q for q in pool if (q.pope_split, q.answer) == (split, answer)] or pool
        picked += _pick(pool, EVAL_PER_SCENE[category], rng)
    records = []
    for n, qa in enumerate(picked):
        rec = {
            "question_id": f"{rendered.scene.scene_id}_q{n:02d}",
            "image": image,
            "text": qa.prompt,
            "category": qa.category,
            "answer": qa.answer,
            "answers": qa.answers,
            "kind": qa.kind,
            "scene_id": rendered.scene.scene_id,
        }
        if qa.pope_split is not None:
            rec["pope_split"] = qa.pope_split
        if qa.options is not None:
            rec["options"] = qa.options
        records.append(rec)
    return records


def relevance_cases(rendered: RenderedScene, image: str, seed: int, per_scene: int = 2) -> list:
    """(case, mask) pairs: a question whose one-word answer names one object's attribute."""
    rng = _scene_rng(seed, rendered.scene, 3)
    qas = [q for q in all_questions(rendered, rng)["vqa"] if q.kind in ("colour", "shape")]
    cases = []
    for n, qa in enumerate(_pick(qas, per_scene, rng)):
        obj = rendered.scene.objects[qa.object]
        case_id = f"{rendered.scene.scene_id}_r{n}"
        case = {
            "case_id": case_id,
            "image": image,
            "prompt": qa.prompt,
            "answer": qa.answer,
            "target_word": qa.target_word,
            "mask": f"eval/masks/{case_id}.png",
            "object": {
                "shape": obj.shape,
                "colour": obj.colour,
                "size": obj.size,
                "box": [round(v, 4) for v in rendered.normalized_box(qa.object)],
            },
            "kind": qa.kind,
        }
        cases.append((case, rendered.masks[qa.object]))
    return cases


def _clear_stale(root: Path) -> None:
    # Only inside a directory this module wrote before (it has world.json): a smaller rerun
    # must not leave old images or masks that no record points to.
    if not (root / "world.json").exists():
        return
    for sub in ("images", "eval/masks"):
        for png in (root / sub).glob("*.png"):
            png.unlink()


def generate_world(
    out_dir: str | Path,
    train: int = 2000,
    eval: int = 200,
    seed: int = 0,
    config: WorldConfig | None = None,
    pope_pairs: int = 1,
    turns: int = 5,
    progress: bool = True,
    images: bool = True,
) -> WorldFiles:
    """Render `train` + `eval` scenes and write every file listed in the module docstring.

    `images=False` writes the text files only (the records still name their images): what the
    backbones' pretraining reads, which renders the scenes it needs in memory."""
    config = config or WorldConfig()
    if train < 1 or eval < 1:
        raise ValueError(
            f"need at least one train and one eval scene, got train={train} eval={eval}"
        )
    root = Path(out_dir)
    _clear_stale(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    align, finetune, grounding, questions, cases = [], [], [], [], []
    for split, count in (("train", train), ("eval", eval)):
        for i in tqdm(range(count), desc=f"world {split}", disable=not progress, leave=False):
            rendered = render_scene(sample_scene(seed, split, i, config))
            image = f"images/{rendered.scene.scene_id}.png"
            if images:
                _save_png(rendered.image, root / image)
            if split == "train":
                align.append(
                    {
                        "id": rendered.scene.scene_id,
                        "image": image,
                        "conversations": [
                            {"from": "human", "value": f"{IMAGE_TOKEN}\n{PROMPTS['caption']}"},
                            {"from": "gpt", "value": caption(rendered.scene)},
                        ],
                    }
                )
                finetune.append(finetune_record(rendered, image, seed, turns))
                if (record := grounding_record(rendered, image, seed)) is not None:
                    grounding.append(record)
            else:
                questions += eval_records(rendered, image, seed, pope_pairs)
                for case, mask in relevance_cases(rendered, image, seed):
                    if images:
                        _save_png(Image.fromarray(mask.astype(np.uint8) * 255), root / case["mask"])
                    cases.append(case)
    files = WorldFiles.at(root)
    atomic_write_json(files.align, align)
    atomic_write_json(files.finetune, finetune)
    atomic_write_json(files.grounding, grounding)
    atomic_write_text(files.questions, "".join(json.dumps(q) + "\n" for q in questions))
    atomic_write_text(files.relevance_cases, "".join(json.dumps(c) + "\n" for c in cases))
    by_category: dict[str, int] = {}
    for q in questions:
        by_category[q["category"]] = by_category.get(q["category"], 0) + 1
    meta = {
        "version": WORLD_VERSION,
        "seed": seed,
        "image_size": config.image_size,
        "config": config.to_dict(),
        "counts": {
            "train_scenes": train,
            "eval_scenes": eval,
            "finetune_turns": sum(len(r["conversations"]) // 2 for r in finetune),
            "eval_questions": by_category,
            "relevance_cases": len(cases),
        },
        "generation": {"pope_pairs": pope_pairs, "turns": turns},
        "vocab": vocabulary(),
        "prompts": PROMPTS,
        "image_token": IMAGE_TOKEN,
        "files": {
            "images": "images/",
            "align": "align.json",
            "finetune": "finetune.json",
            "grounding": "grounding.json",
            "questions": "eval/questions.jsonl",
            "relevance_cases": "eval/relevance_cases.jsonl",
            "masks": "eval/masks/",
        },
    }
    atomic_write_json(files.world_json, meta)  # last: its presence marks a complete world
    return files


def load_world_meta(world_dir: str | Path) -> dict:
    """Read and check DIR/world.json; a clear error when DIR is not a written world."""
    path = Path(world_dir) / "world.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: write the world first with `decovlm world --out {world_dir}`"
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg})") from None
    for key in ("version", "seed", "config", "vocab"):
        if key not in meta:
            raise ValueError(f"{path} lacks the field {key!r}; rewrite the world")
    if str(meta["version"]) != WORLD_VERSION:
        raise ValueError(
            f"{path} has world version {meta['version']}, this code writes {WORLD_VERSION}; "
            "rewrite the world"
        )
    return meta

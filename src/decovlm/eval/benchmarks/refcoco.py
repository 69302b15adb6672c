"""RefCOCO / RefCOCO+ / RefCOCOg referring-expression comprehension (Acc@0.5) from the REFER files.

Layout under --data: <dataset>/refs(<splitBy>).p and <dataset>/instances.json (REFER's data/
folder), or those two files directly in --data; images under images/mscoco/images/train2014,
mscoco/images/train2014, images/train2014, train2014 or --data. splitBy is unc for refcoco and
refcoco+, umd for refcocog. One item per referring expression; default split val.

The model's box is read in the frame given by option `box_frame` (naive = DeCo's stretched input,
pad = LLaVA-1.5's padded square, crop) and compared with the ground truth in original pixels.
Box parsing follows the convention (option `convention`, older `box_parse`): `lmms-eval`
(default: the first "[a, b, c, d]" of plain decimals, values as written, nothing clipped; with the
naive frame the IoU is computed in normalised coordinates exactly as lmms-eval's bbox_rec tasks),
`strict` or `lenient` (see `decovlm.eval.metrics.boxes.parse_box`).
"""

from __future__ import annotations

import pickle
from pathlib import Path

from decovlm.eval.benchmarks.base import (
    REC_PROMPT,
    Benchmark,
    EvalItem,
    find_file,
    read_json,
    resolve_image,
)
from decovlm.eval.metrics import (
    FRAMES,
    iou,
    mean,
    parse_box,
    rec_accuracy,
    resolve_convention,
    to_pixels,
    xywh_to_xyxy,
)

SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}
_IMAGE_DIRS = (
    "images/mscoco/images/train2014",
    "mscoco/images/train2014",
    "images/train2014",
    "train2014",
    "",
)


# The only globals a refs file may name: plain containers and scalars. REFER's files hold
# dicts, lists, strings, ints and floats, which pickle stores as opcodes, not globals; anything
# else (a function, a class, os.system...) is refused, so a data folder cannot run code.
SAFE_GLOBALS = {
    ("builtins", name)
    for name in (
        "dict",
        "list",
        "tuple",
        "set",
        "frozenset",
        "str",
        "bytes",
        "int",
        "float",
        "bool",
    )
}


class RefsUnpickler(pickle.Unpickler):
    """A pickle reader that builds only the builtin types in SAFE_GLOBALS."""

    def find_class(self, module: str, name: str):
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refuses {module}.{name}: a refs file holds only dicts, lists, strings and numbers"
        )


def _load_refs(path: Path) -> list[dict]:
    from decovlm.errors import UserError

    # REFER's refs are pickles written by Python 2; latin1 is how Python 3 reads their byte strings.
    try:
        with path.open("rb") as f:
            try:
                refs = RefsUnpickler(f).load()
            except UnicodeDecodeError:
                f.seek(0)
                refs = RefsUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError) as err:
        raise UserError(f"{path}: not a REFER refs pickle ({type(err).__name__}: {err})") from None
    except (AttributeError, ImportError, MemoryError, RecursionError) as err:
        raise UserError(f"{path}: not a REFER refs pickle ({type(err).__name__})") from None
    if not isinstance(refs, list):
        raise UserError(f"{path}: expected a list of refs, got {type(refs).__name__}")
    return refs


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_box(value) -> bool:
    return isinstance(value, list | tuple) and len(value) == 4 and all(map(_is_number, value))


def _is_size(value) -> bool:
    return _is_number(value) and value > 0


def _key(value):
    # ids are ints or strings; anything else (a list from a malformed file) matches nothing
    return value if isinstance(value, int | str) else None


def _by_id(inst, section: str) -> dict:
    """{id: entry} of instances.json's `section`, skipping entries that are not objects with an id."""
    rows = inst.get(section) if isinstance(inst, dict) else None
    if not isinstance(rows, list):
        return {}
    return {_key(r["id"]): r for r in rows if isinstance(r, dict) and _key(r.get("id")) is not None}


def _in_split(ref_split: str, split: str) -> bool:
    # REFER's getRefIds: testA / testB / testC match on the last letter, other splits exactly.
    if split in ("testA", "testB", "testC"):
        return split[-1] in ref_split
    return ref_split == split


def make_loader(dataset: str):
    def load(data_dir: Path, split: str | None, options: dict) -> list[EvalItem]:
        split = split or "val"
        split_by = options.get("split_by") or SPLIT_BY[dataset]
        ref_name = f"refs({split_by}).p"
        refs_path = find_file(data_dir, [f"{dataset}/{ref_name}", ref_name], f"{dataset} refs")
        inst = read_json(
            find_file(
                data_dir, [f"{dataset}/instances.json", "instances.json"], f"{dataset} instances"
            )
        )
        anns = _by_id(inst, "annotations")
        images = _by_id(inst, "images")
        items = []
        for ref in _load_refs(refs_path):
            if not isinstance(ref, dict) or not _in_split(str(ref.get("split", "")), split):
                continue
            ref_id = ref.get("ref_id")
            ann = anns.get(_key(ref.get("ann_id")))
            img = images.get(_key(ref.get("image_id")))
            sentences = ref.get("sentences") or []
            problem = None
            if ann is None or img is None or "bbox" not in ann:
                problem = f"ref {ref_id}: annotation or image missing from instances.json"
            elif not sentences or not isinstance(sentences, list):
                problem = f"ref {ref_id}: no sentences"
            elif not _is_box(ann["bbox"]):
                problem = (
                    f"ref {ref_id}: bbox must be [x, y, w, h] numbers, got {ann['bbox']!r:.60}"
                )
            elif not all(img.get(k) is None or _is_size(img.get(k)) for k in ("width", "height")):
                problem = f"ref {ref_id}: image {img.get('id')!r} needs numeric width and height"
            if problem:
                items.append(EvalItem(f"{ref_id}", "", error=problem))
                continue
            file_name = img.get("file_name") or ref.get("file_name")
            if not isinstance(file_name, str):
                file_name = f"COCO_train2014_{str(img['id']).zfill(12)}.jpg"
            gold = {
                "box": list(xywh_to_xyxy(ann["bbox"])),
                "width": img.get("width"),
                "height": img.get("height"),
            }
            for k, sent in enumerate(sentences):
                text = (
                    str(sent.get("sent", sent.get("raw", ""))).strip()
                    if isinstance(sent, dict)
                    else ""
                )
                qid = f"{ref_id}/{sent.get('sent_id', k) if isinstance(sent, dict) else k}"
                if not text:
                    items.append(EvalItem(qid, "", error=f"ref {ref_id}: sentence {k} is empty"))
                    continue
                items.append(
                    EvalItem(
                        qid,
                        REC_PROMPT.format(expr=text),
                        image=resolve_image(data_dir, file_name, _IMAGE_DIRS),
                        gold=gold,
                        meta={"ref_id": ref_id},
                    )
                )
        return items

    return load


def _rec_iou(box, gold: dict, frame: str, parser: str) -> float:
    w, h = float(gold["width"]), float(gold["height"])
    if parser == "lmms-eval":
        if frame == "naive":
            # lmms-eval normalises the ground truth by the image size and compares unclipped.
            x1, y1, x2, y2 = gold["box"]
            return iou(box, (x1 / w, y1 / h, x2 / w, y2 / h))
        return iou(to_pixels(box, frame, w, h, clip=False), gold["box"])
    return iou(to_pixels(box, frame, w, h), gold["box"])


def score_rec(items: list[EvalItem], answers: dict[str, str | None], options: dict) -> dict:
    frame = options.get("box_frame", "naive")
    if frame not in FRAMES:
        raise ValueError(f"box_frame must be one of {', '.join(FRAMES)}, got {frame!r}")
    parser = resolve_convention("refcoco", options).name
    ious: list[float | None] = []
    unparsed = 0
    for it in items:
        answer = None if it.error else answers.get(it.question_id)
        box = parse_box(answer, mode=parser)
        if box is None or not it.gold or not it.gold.get("width") or not it.gold.get("height"):
            unparsed += 1
            ious.append(None)
            continue
        ious.append(_rec_iou(box, it.gold, frame, parser))
    return {
        "acc@0.5": 100 * rec_accuracy(ious, 0.5),
        "mean_iou": mean([v or 0.0 for v in ious]),
        "n": len(items),
        "n_unparsed": unparsed,
        "box_frame": frame,
        "box_parse": parser,
    }


_NOTE = "LLaVA-1.5: 'Please provide the bounding box coordinate of the region this sentence describes: <expr>.'"
BENCHMARKS = [
    Benchmark(
        name,
        f"{name} ({SPLIT_BY[name]}) referring expressions, Acc@0.5",
        make_loader(name),
        score_rec,
        "val",
        prompt_note=_NOTE,
    )
    for name in SPLIT_BY
]

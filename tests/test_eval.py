"""Evaluation: metrics behave on known answers, loaders parse their formats, the CLI writes its report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fmblur.cli import main
from fmblur.datasets import load_split, read_voc, read_wider
from fmblur.metrics import Predictions, coco_metrics, operating_metrics, recall_at_fp_budget
from tests.conftest import EXAMPLES_DIR


@pytest.fixture(scope="module")
def truth():
    return load_split(str(EXAMPLES_DIR))


def fed_back(truth, shift: float = 0.0) -> Predictions:
    """Ground truth returned as detections, optionally shifted right by `shift` of each box's width."""
    boxes = [t.boxes.astype(np.float64) + np.outer(t.boxes[:, 2] - t.boxes[:, 0], [shift, 0, shift, 0]) for t in truth]
    return Predictions(boxes=boxes, scores=[np.linspace(0.99, 0.9, len(b)) for b in boxes])


def test_ground_truth_fed_back_scores_perfectly(truth):
    coco, _, _ = coco_metrics(truth, fed_back(truth))
    assert coco["AP@.5"] == pytest.approx(1.0) and coco["AP@[.5:.95]"] == pytest.approx(1.0)
    metrics = operating_metrics(truth, fed_back(truth), 0.5)
    assert metrics["recall@0.5"] == 1.0 and metrics["fp_per_image"] == 0.0 and metrics["faces"] == 21


def test_shifted_boxes_score_lower(truth):
    coco, _, _ = coco_metrics(truth, fed_back(truth, shift=0.3))
    assert coco["AP@[.5:.95]"] < 0.6 and coco["AP@.75"] < 0.5
    # Shifted by 45% of their width, boxes overlap their face at IoU 0.38: found at 0.3, missed at 0.5.
    metrics = operating_metrics(truth, fed_back(truth, shift=0.45), 0.5)
    assert metrics["recall@0.5"] == 0.0 and metrics["recall@0.3"] == 1.0
    assert metrics["fp_per_image"] == pytest.approx(21 / 6)


def test_groups_and_fp_budget(truth):
    metrics = operating_metrics(truth, fed_back(truth), 0.5)
    groups = metrics["recall_by_group"]
    assert groups["class with_mask"]["faces"] + groups["class without_mask"]["faces"] == 21
    assert sum(v["faces"] for k, v in groups.items() if k.startswith("size")) == 21
    noisy = fed_back(truth)
    noisy.boxes = [np.vstack([b, [[0, 0, 5, 5]]]) for b in noisy.boxes]
    noisy.scores = [np.append(s, 0.95) for s in noisy.scores]  # one confident false positive per image
    budget = recall_at_fp_budget(truth, noisy, 0.5)
    assert budget["fp_per_image"] <= 0.5 and budget["threshold"] > 0.9


def test_wider_loader_and_ignored_faces(tmp_path):
    (tmp_path / "wider.txt").write_text(
        "0--Parade/a.jpg\n2\n10 20 30 40 2 0 0 0 1 0\n100 100 8 8 0 0 0 1 0 0\n"
        "1--Handshaking/b.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n"
    )
    records = read_wider(tmp_path / "wider.txt", tmp_path / "images")
    assert [r.path.name for r in records] == ["a.jpg", "b.jpg"]
    assert records[0].boxes.tolist() == [[10, 20, 40, 60], [100, 100, 108, 108]]
    assert records[0].attributes["blur"].tolist() == [2, 0] and records[0].ignore.tolist() == [False, True]
    assert len(records[1].boxes) == 0
    predictions = Predictions(
        boxes=[np.array([[10, 20, 40, 60], [100, 100, 108, 108.0]]), np.zeros((0, 4))],
        scores=[np.array([0.9, 0.8]), np.zeros(0)],
    )
    metrics = operating_metrics(records, predictions, 0.5)
    # The invalid face is neither a miss nor, when detected, a false positive.
    assert metrics["faces"] == 1 and metrics["recall@0.5"] == 1.0 and metrics["fp_per_image"] == 0.0


def test_voc_loader_clips_boxes_to_the_image():
    record = read_voc(EXAMPLES_DIR / "maksssksksss5.xml")
    assert record.path.exists() and len(record.boxes) == 4
    assert record.boxes[:, 2].max() <= 400 and set(record.labels) == {"with_mask", "without_mask"}


def test_eval_command_writes_json_markdown_and_curves(tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "--detector", "retinaface", "fast", "--data", str(EXAMPLES_DIR), "-o", str(out)]) == 0
    stem = EXAMPLES_DIR.name
    report = json.loads((out / f"{stem}.json").read_text())
    assert report["detectors"]["retinaface"]["recall@0.5"] >= 0.9
    assert report["detectors"]["retinaface"]["AP@.5"] > 0.8
    assert (out / f"{stem}.png").stat().st_size > 10_000
    assert "| retinaface (t=0.50) | 21 |" in capsys.readouterr().out
    # --merge keeps the detectors measured before, each with the date and commit of its own run.
    assert main(["eval", "--detector", "centerface", "--data", str(EXAMPLES_DIR), "-o", str(out), "--merge"]) == 0
    merged = json.loads((out / f"{stem}.json").read_text())
    assert list(merged["detectors"]) == ["retinaface", "fast", "centerface"]
    for name in ("retinaface", "fast"):
        assert merged["detectors"][name]["provenance"] == report["provenance"]
        assert merged["detectors"][name]["AP@.5"] == report["detectors"][name]["AP@.5"]
    assert merged["detectors"]["centerface"]["provenance"] == merged["provenance"]
    assert merged["detectors"]["centerface"]["recall@0.5"] >= 0.9
    # A report on other photos is never merged into.
    (out / f"{stem}.json").write_text(json.dumps({**merged, "data": "fmd-val"}))
    capsys.readouterr()
    assert main(["eval", "--detector", "centerface", "--data", str(EXAMPLES_DIR), "-o", str(out), "--merge"]) == 2
    assert "cannot merge" in capsys.readouterr().err

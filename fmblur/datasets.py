"""Annotated face images: one record for every annotation format."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class AnnotatedImage:
    """An image path with its ground-truth face boxes (x1, y1, x2, y2 pixels) and a label per box.

    attributes: per-box arrays (WIDER FACE's blur, occlusion, invalid flags...).
    ignore: boxes that count neither as a miss nor, when detected, as a false positive (WIDER's invalid).
    """

    path: Path
    boxes: np.ndarray  # (N, 4) float32
    labels: list[str] = field(default_factory=list)
    attributes: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def ignore(self) -> np.ndarray:
        return self.attributes.get("invalid", np.zeros(len(self.boxes), np.int64)).astype(bool)


def read_voc(xml_path: str | Path, image_dir: str | Path | None = None) -> AnnotatedImage:
    """A Pascal VOC annotation. Boxes are clipped to the declared image size (some files overshoot by 1 px)."""
    xml_path = Path(xml_path)
    root = ET.parse(xml_path).getroot()
    width = float(root.findtext("size/width", "0"))
    height = float(root.findtext("size/height", "0"))
    boxes, labels = [], []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        if box is None:
            continue
        x1, y1, x2, y2 = (float(box.findtext(key, "nan")) for key in ("xmin", "ymin", "xmax", "ymax"))
        if width > 0 and height > 0:
            x1, x2 = np.clip([x1, x2], 0, width)
            y1, y2 = np.clip([y1, y2], 0, height)
        boxes.append((x1, y1, x2, y2))
        labels.append(obj.findtext("name", "face"))
    filename = root.findtext("filename") or f"{xml_path.stem}.jpg"
    image_path = Path(image_dir) / filename if image_dir is not None else xml_path.with_name(filename)
    return AnnotatedImage(path=image_path, boxes=np.asarray(boxes, np.float32).reshape(-1, 4), labels=labels)


# The shared data sets (face-mask photos, WIDER FACE subset) beside the checkout, or FMBLUR_DATA.
DATA_ROOT = Path(os.environ.get("FMBLUR_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
WIDER_FLAGS = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")


def read_wider(txt_path: str | Path, image_root: str | Path) -> list[AnnotatedImage]:
    """WIDER FACE ground truth in its official txt format (path, count, then `x y w h` + 6 flags per face)."""
    lines = Path(txt_path).read_text().split()
    records, position = [], 0
    while position < len(lines):
        name = lines[position]
        count = int(lines[position + 1])
        position += 2
        rows = max(count, 1)  # an image with no face still has one row of zeros
        values = np.asarray(lines[position : position + rows * 10], np.float64).reshape(rows, 10)[:count]
        position += rows * 10
        boxes = values[:, :4].copy()
        boxes[:, 2:] += boxes[:, :2]
        flags = {flag: values[:, 4 + i].astype(np.int64) for i, flag in enumerate(WIDER_FLAGS)}
        records.append(
            AnnotatedImage(
                path=Path(image_root) / name, boxes=boxes.astype(np.float32), labels=["face"] * count, attributes=flags
            )
        )
    return records


def read_coco(json_path: str | Path, image_dir: str | Path | None = None) -> list[AnnotatedImage]:
    """COCO detection json: every annotation is a face box; its category name becomes the label and
    `iscrowd` marks boxes to ignore (as WIDER's invalid)."""
    import json

    json_path = Path(json_path)
    data = json.loads(json_path.read_text())
    image_dir = Path(image_dir) if image_dir is not None else json_path.parent
    categories = {c["id"]: c.get("name", "face") for c in data.get("categories", [])}
    by_image: dict[int, list[dict]] = {}
    for annotation in data.get("annotations", []):
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    records = []
    for image in data.get("images", []):
        annotations = by_image.get(image["id"], [])
        boxes = np.array([a["bbox"] for a in annotations], np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        records.append(
            AnnotatedImage(
                path=image_dir / image["file_name"],
                boxes=boxes,
                labels=[categories.get(a.get("category_id"), "face") for a in annotations],
                attributes={"invalid": np.array([int(a.get("iscrowd", 0)) for a in annotations], np.int64)},
            )
        )
    return records


def read_source(source: dict, data_root: Path | None = None) -> list[AnnotatedImage]:
    """One entry of a training config's data list:
    {"split": "fmd-train"} (a named split of load_split below),
    {"voc": "annotations/", "images": "images/"}, {"wider": "gt.txt", "images": "images/"} or
    {"coco": "instances.json", "images": "images/"}. Relative paths are relative to `data_root`."""

    def path(key: str) -> Path | None:
        if key not in source:
            return None
        value = Path(source[key])
        value = value if value.is_absolute() or data_root is None else data_root / value
        if not value.exists():
            raise FileNotFoundError(f"data {key} {value} not found")
        return value

    if "split" in source:
        return load_split(source["split"])
    if "voc" in source:
        return [read_voc(xml, path("images")) for xml in sorted(path("voc").glob("*.xml"))]
    if "wider" in source:
        wider = path("wider")
        return read_wider(wider, path("images") or wider.parent / "images")
    if "coco" in source:
        return read_coco(path("coco"), path("images"))
    raise ValueError(f"a data source needs one of split, voc, wider, coco: got {sorted(source)}")


# Face-mask photo numbers per named split. fmd-train-fit and fmd-train-tune divide the training split, so a
# model trained on the first can have its threshold fitted, or be chosen, on photos it never saw, without
# touching fmd-val.
FMD_RANGES = {
    "fmd-train": range(0, 240),
    "fmd-train-fit": range(0, 200),
    "fmd-train-tune": range(200, 240),
    "fmd-val": range(240, 300),
}


def load_split(name: str, data_root: Path = DATA_ROOT) -> list[AnnotatedImage]:
    """A named split, or a folder of Pascal VOC XMLs, or a WIDER FACE txt (its images beside it in images/)."""
    fmd = data_root / "face_mask_detection"
    wider = data_root / "wider_face_train_subset"
    if name in FMD_RANGES:
        return [read_voc(fmd / "annotations" / f"maksssksksss{n}.xml", fmd / "images") for n in FMD_RANGES[name]]
    if name in ("wider-val", "wider-train"):
        records = sorted(
            read_wider(wider / "wider_face_train_bbx_gt_subset.txt", wider / "images"), key=lambda r: str(r.path)
        )
        return [r for i, r in enumerate(records) if (i % 8 == 0) == (name == "wider-val")]
    path = Path(name)
    if path.is_dir():
        return [read_voc(xml) for xml in sorted(path.glob("*.xml"))]
    if path.suffix == ".txt":
        return read_wider(path, path.parent / "images")
    raise ValueError(
        f"unknown data {name!r}: use {', '.join(FMD_RANGES)}, wider-train, wider-val, a folder of VOC XMLs "
        "or a WIDER txt"
    )

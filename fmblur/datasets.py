"""Annotated face images: one record for every annotation format."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class AnnotatedImage:
    """An image path with its ground-truth face boxes (x1, y1, x2, y2 pixels) and a label per box."""

    path: Path
    boxes: np.ndarray  # (N, 4) float32
    labels: list[str] = field(default_factory=list)


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

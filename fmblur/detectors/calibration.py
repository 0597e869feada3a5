"""Score calibration for the ensemble: each member's raw score mapped to the precision it had on training data.

Raw scores of different detectors do not mean the same thing (RetinaFace's 0.7 is not CenterFace's 0.7). A
member's candidates on the training splits are matched to the true faces at IoU 0.5; the share of true
positives per score bin (equal-count bins, made non-decreasing) is that member's precision map. After it, a
calibrated 0.8 means "80 % of such detections were faces" for every member, so one threshold means the same
across members and the fused score can combine them as independent evidence.

The maps are fitted by `fmblur train calibration` (training splits only) and stored in
weights/ensemble_calibration.json, with the fused operating threshold chosen on the same training data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmblur.resources import weights_path

CALIBRATION_FILE = "ensemble_calibration.json"


@dataclass(frozen=True)
class PrecisionMap:
    """Raw score -> precision, piecewise linear between bin centres, flat beyond the first and last."""

    scores: tuple[float, ...]
    precision: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.scores) < 2 or len(self.scores) != len(self.precision):
            raise ValueError("a precision map needs at least two (score, precision) points of equal count")
        if np.any(np.diff(self.scores) < 0) or np.any(np.diff(self.precision) < 0):
            raise ValueError("a precision map must be non-decreasing in score and in precision")

    def __call__(self, raw_scores: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(raw_scores, np.float64), self.scores, self.precision)

    @classmethod
    def fit(cls, raw_scores: np.ndarray, is_face: np.ndarray, bins: int = 20) -> PrecisionMap:
        """Precision per equal-count score bin, made non-decreasing (a higher score never means less trust)."""
        raw_scores = np.asarray(raw_scores, np.float64).reshape(-1)
        is_face = np.asarray(is_face, bool).reshape(-1)
        if len(raw_scores) != len(is_face):
            raise ValueError("one true/false label per score is needed")
        if len(raw_scores) < 2 * bins:
            raise ValueError(f"too few candidates ({len(raw_scores)}) to fit {bins} bins")
        order = np.argsort(raw_scores, kind="stable")
        chunks = np.array_split(order, bins)
        centres = np.array([raw_scores[chunk].mean() for chunk in chunks])
        precision = np.maximum.accumulate(np.array([is_face[chunk].mean() for chunk in chunks]))
        centres = np.maximum.accumulate(centres)  # ties between bins keep the order
        return cls(tuple(float(s) for s in centres), tuple(float(p) for p in precision))

    def as_dict(self) -> dict:
        return {"scores": [round(s, 5) for s in self.scores], "precision": [round(p, 5) for p in self.precision]}


@dataclass(frozen=True)
class Calibration:
    """Precision maps per member (`name` or `name:mirror`) and the fused threshold fitted with them."""

    maps: dict[str, PrecisionMap]
    operating_threshold: float
    fitted_on: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "fitted_on": self.fitted_on,
                "operating_threshold": round(self.operating_threshold, 4),
                "members": {name: m.as_dict() for name, m in self.maps.items()},
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        try:
            data = json.loads(text)
            maps = {
                name: PrecisionMap(tuple(m["scores"]), tuple(m["precision"])) for name, m in data["members"].items()
            }
            threshold = float(data["operating_threshold"])
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"not an fmblur ensemble calibration: {error}") from None
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"calibration operating threshold must be in (0, 1), got {threshold}")
        return cls(maps=maps, operating_threshold=threshold, fitted_on=str(data.get("fitted_on", "")))


def calibration_path(file_name: str = CALIBRATION_FILE) -> Path:
    """weights/`file_name`: the default ensemble's calibration, or a preset's own (fitted for its members)."""
    return weights_path(file_name)


def load_calibration(path: Path | None = None) -> Calibration:
    path = path or calibration_path()
    if not path.is_file():
        raise FileNotFoundError(f"ensemble calibration not found at {path}: run `fmblur train calibration`")
    return Calibration.from_json(path.read_text())

"""Hide faces: Gaussian, feature-based, mosaic or solid fill, over a box or an ellipse around each face.

Everything here is array work in OpenCV/NumPy, one region of interest per face; no per-pixel Python.
Each face's patch is computed from the original pixels and pasted in order of decreasing size,
so overlapping faces are all covered and a small face's light feature windows stay on top of a larger neighbour.
Pixels outside every face region are never written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import cv2
import numpy as np

from fmblur.face import Face

Mode = Literal["gaussian", "feature", "mosaic", "solid"]
Shape = Literal["box", "ellipse"]

MODES: tuple[str, ...] = ("gaussian", "feature", "mosaic", "solid")
SHAPES: tuple[str, ...] = ("box", "ellipse")
KERNEL_RANGE = (5, 65)  # the dissertation's sweep of fixed kernels
# Above this size a Gaussian is applied on a downscaled copy: same look, bounded cost for huge faces.
_MAX_DIRECT_KERNEL = 65
# ... on the shrunk copy (`_Pyramid`) where it spans at most this many pixels (half of it to all; the sigma
# scaled to match). Against an exact Gaussian of size 67..481 on regions of a 4x enlarged example photo the
# difference is at most 3 grey levels (mean 0.2-0.6); 31 gave up to 5, 47 cost 20 % more time.
_DOWNSCALED_KERNEL = 39
# The similarity check's bar (SSIM with 7-px windows, as the leak bench measures; a face is visible there at 0.6):
# the bar that took the leak bench's clips to their fewest leaked frames (docs/results/video-leaks-reading.md);
# 0.55 leaves a margin for faces boxed differently from the detector's box.
DEFAULT_MAX_SIMILARITY = 0.55


@dataclass(frozen=True)
class ObfuscationConfig:
    """How faces are hidden.

    mode: gaussian (uniform blur), feature (strong blur, light blur on eyes/nose/mouth), mosaic, solid.
    kernel: fixed odd Gaussian kernel in 5..65; None means `kernel_relative` of each face's longer side.
    kernel_relative: kernel as a fraction of the face's longer side (used when kernel is None).
    feature_kernel: the light blur on eye, nose and mouth windows in feature mode (odd, >= 3).
    mosaic_blocks: blocks across the longer side of each face region.
    fill_color: RGB fill of solid mode.
    shape: box or ellipse.
    mask_scale: the region is the face box grown by this factor about its centre (deface uses 1.3).
    feather: width of a soft inner edge as a fraction of the region's shorter side (0 = hard edge);
        the soft edge lies inside the region, so pixels outside stay untouched.
    grain: standard deviation (grey levels) of random noise added over a blurred or mosaic region (0 = none).
        A Gaussian blur is a known linear filter, so deconvolution can bring back part of what it hid;
        noise drawn afresh each time (never from a fixed seed) makes that ill-posed. It also keeps a
        blurred smooth face from looking like its original to SSIM, whose windows rate two flat
        patches as alike (docs/results/video-leaks-reading.md).
    max_similarity: a blurred or mosaic face whose box (or the box's centre) in the finished picture is still
        at least this like the original by SSIM gets block noise until it is not; 1 = never.
    """

    mode: Mode = "gaussian"
    kernel: int | None = None
    # 1.5 times the face's longer side. Measured 2026-11-22 with RetinaFace (threshold 0.3, 1.5x enlarged)
    # on 121 faces of the sample clips and the CC0 examples: it still found 19 blurred faces at 0.75,
    # 13 at 1.0, 4 at 1.5 (all scoring <= 0.62), 3 at 2.0; mosaic (8 blocks) 31, solid fill 1.
    kernel_relative: float = 1.5
    feature_kernel: int = 3
    mosaic_blocks: int = 8
    fill_color: tuple[int, int, int] = (0, 0, 0)
    shape: Shape = "ellipse"
    mask_scale: float = 1.3
    feather: float = 0.0
    grain: float = 0.0
    # A soft face (enlarged, out of focus) has little structure for a blur to remove, so its blurred box can still
    # rate as "the same picture" though nothing of it can be made out; the check gives such faces noise.
    max_similarity: float = DEFAULT_MAX_SIMILARITY

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {', '.join(SHAPES)}, got {self.shape!r}")
        if self.kernel is not None:
            low, high = KERNEL_RANGE
            if not (low <= self.kernel <= high) or self.kernel % 2 == 0:
                raise ValueError(f"kernel must be an odd number from {low} to {high}, got {self.kernel}")
        if not 0.05 <= self.kernel_relative <= 2.0:
            raise ValueError(f"kernel_relative must be in [0.05, 2], got {self.kernel_relative}")
        if self.feature_kernel < 3 or self.feature_kernel % 2 == 0:
            raise ValueError(f"feature_kernel must be odd and at least 3, got {self.feature_kernel}")
        if self.mosaic_blocks < 2:
            raise ValueError(f"mosaic_blocks must be at least 2, got {self.mosaic_blocks}")
        if len(self.fill_color) != 3 or not all(0 <= c <= 255 for c in self.fill_color):
            raise ValueError(f"fill_color must be three values in 0..255, got {self.fill_color}")
        if not 1.0 <= self.mask_scale <= 3.0:
            raise ValueError(f"mask_scale must be in [1, 3], got {self.mask_scale}")
        if not 0.0 <= self.feather <= 0.5:
            raise ValueError(f"feather must be in [0, 0.5], got {self.feather}")
        if not 0.0 <= self.grain <= 64.0:
            raise ValueError(f"grain must be in [0, 64] grey levels, got {self.grain}")
        if not 0.0 < self.max_similarity <= 1.0:
            raise ValueError(f"max_similarity must be in (0, 1], got {self.max_similarity}")

    def kernel_for(self, face: Face) -> int:
        """The Gaussian kernel used on this face."""
        if self.kernel is not None:
            return self.kernel
        size = self.kernel_relative * max(face.width, face.height)
        return _odd(max(KERNEL_RANGE[0], size))


def _odd(value: float) -> int:
    rounded = int(round(value))
    return rounded if rounded % 2 == 1 else rounded + 1


def _sigma(kernel: int) -> float:
    # OpenCV's own sigma for a given kernel size (what sigma=0 means in cv2.GaussianBlur).
    return 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8


class _Pyramid:
    """Copies of one image at 1/2, 1/4, ... of its size (2x2 block means), made when first needed.

    Large kernels run on a shrunk copy; with dozens of faces in a frame, shrinking each face's surroundings on
    its own was most of the cost of hiding them (a 720p crowd clip: 40 % of obfuscation), so every face of a
    frame reads the same copies. Odd sides are padded by one replicated pixel, so pixel i of level L covers
    pixels [i * 2^L, (i + 1) * 2^L) of the image exactly."""

    def __init__(self, image: np.ndarray) -> None:
        self._levels = [image]

    def level(self, number: int) -> np.ndarray:
        while len(self._levels) <= number:
            previous = self._levels[-1]
            height, width = previous.shape[:2]
            if height % 2 or width % 2:
                previous = cv2.copyMakeBorder(previous, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE)
            half = (previous.shape[1] // 2, previous.shape[0] // 2)
            self._levels.append(cv2.resize(previous, half, interpolation=cv2.INTER_AREA))
        return self._levels[number]


def _large_blur(pyramid: _Pyramid, rect: tuple[int, int, int, int], kernel: int, margin: int) -> np.ndarray:
    """A Gaussian of `kernel` (> _MAX_DIRECT_KERNEL) over `rect`, run on the first pyramid level where it spans
    at most _DOWNSCALED_KERNEL pixels, with the same sigma in full-size pixels, and read back at full size by
    bilinear interpolation of that level."""
    level = max(1, int(np.ceil(np.log2(kernel / _DOWNSCALED_KERNEL))))
    scale = 1 << level
    small = pyramid.level(level)
    left, top, right, bottom = rect
    small_left, small_top = max(0, (left - margin) // scale), max(0, (top - margin) // scale)
    small_right = min(small.shape[1], -(-(right + margin) // scale))
    small_bottom = min(small.shape[0], -(-(bottom + margin) // scale))
    blurred = cv2.GaussianBlur(
        small[small_top:small_bottom, small_left:small_right],
        (_odd(kernel / scale),) * 2,
        _sigma(kernel) / scale,
        borderType=cv2.BORDER_REFLECT,
    )
    # Output pixel u of the region sits at (left + u + 0.5) / scale - 0.5 in level pixels (pixel centres).
    to_level = np.array(
        [
            [1 / scale, 0, (left + 0.5) / scale - 0.5 - small_left],
            [0, 1 / scale, (top + 0.5) / scale - 0.5 - small_top],
        ]
    )
    return cv2.warpAffine(
        blurred,
        to_level,
        (right - left, bottom - top),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


# The ellipse region also hides the face box grown by this factor. Chosen on face-mask training photos (every
# 4th of 0..239) with RetinaFace at its threshold: of 217 detected faces, 87 kept more than 5 % of their
# annotated box visible with the ellipse alone, 80 with the box itself added, 46 with the box grown 1.2x.
INNER_BOX_SCALE = 1.2


def region_box(face: Face, mask_scale: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer pixel rectangle (x1, y1, x2, y2, exclusive end) of a face's region, clipped to the image."""
    x1, y1, x2, y2 = face.box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half_w, half_h = (x2 - x1) * mask_scale / 2, (y2 - y1) * mask_scale / 2
    left = int(np.clip(np.floor(cx - half_w), 0, width))
    top = int(np.clip(np.floor(cy - half_h), 0, height))
    right = int(np.clip(np.ceil(cx + half_w), 0, width))
    bottom = int(np.clip(np.ceil(cy + half_h), 0, height))
    return left, top, right, bottom


# A whole face's box is this many times as tall as it is wide: the median of 1,135 RetinaFace boxes clear of the
# edges on training photos (fmd-train and WIDER's training part; quartiles 1.21 and 1.34).
WHOLE_FACE_ASPECT = 1.27
# A box this close to the picture's edge (pixels) counts as cut by it.
_EDGE = 2.0


def whole_face(face: Face, width: int, height: int) -> Face:
    """`face` with its box grown, away from the picture's edge, to a whole face's shape where the edge cuts it
    (the same face where it does not).

    A detector's box of a face cut by the edge often stops short of what is still in view: on the leak bench's
    clip1 a face cut by the top edge was boxed from y=-4 to 40 (56 px wide) and showed to y=61, so a strip of it
    stayed visible. On training photos, 11 of the 12 boxes cut by the top or bottom edge alone were shorter than a
    whole face (median 1.03 times as tall as wide, against 1.27)."""
    x1, y1, x2, y2 = face.box
    box_width, box_height = x2 - x1, y2 - y1
    if box_width <= 0 or box_height <= 0:
        return face
    at_top, at_bottom = y1 <= _EDGE, y2 >= height - _EDGE
    at_left, at_right = x1 <= _EDGE, x2 >= width - _EDGE
    # A box at a corner or across the picture (a large false positive, a face filling the frame) has no one side
    # a face could be missing from.
    if at_top + at_bottom + at_left + at_right != 1:
        return face
    if (at_top or at_bottom) and box_height < WHOLE_FACE_ASPECT * box_width:
        missing = WHOLE_FACE_ASPECT * box_width - box_height
        y1, y2 = (y1, y2 + missing) if at_top else (y1 - missing, y2)
    elif (at_left or at_right) and box_width < box_height / WHOLE_FACE_ASPECT:
        missing = box_height / WHOLE_FACE_ASPECT - box_width
        x1, x2 = (x1, x2 + missing) if at_left else (x1 - missing, x2)
    else:
        return face
    return replace(face, box=(x1, y1, x2, y2))


def _with_whole_faces(faces: Sequence[Face], width: int, height: int) -> list[Face]:
    """`faces` and, beside each face cut by the picture's edge, its `whole_face`: hidden as well as the face, not
    instead, since an ellipse in the grown box would leave parts of the first one's ellipse."""
    grown = [whole_face(face, width, height) for face in faces]
    return [*faces, *(whole for face, whole in zip(faces, grown, strict=True) if whole is not face)]


def _shape_mask(face: Face, config: ObfuscationConfig, rect: tuple[int, int, int, int]) -> np.ndarray:
    """Float mask in [0, 1] over the region rectangle: 1 where the face is hidden."""
    left, top, right, bottom = rect
    mask = np.zeros((bottom - top, right - left), np.uint8)
    if config.shape == "box":
        mask[:] = 1
    else:
        # The ellipse is inscribed in the unclipped grown box, so a face cut by the image edge stays covered.
        x1, y1, x2, y2 = face.box
        cx, cy = (x1 + x2) / 2 - left, (y1 + y2) / 2 - top
        axes = ((x2 - x1) * config.mask_scale / 2, (y2 - y1) * config.mask_scale / 2)
        _fill_ellipse(mask, (cx, cy), axes, 0.0)
        # An ellipse leaves the corners of the box (forehead, chin, cheeks) as they were, so the face box itself,
        # grown by up to INNER_BOX_SCALE, is always hidden too.
        grow = min(INNER_BOX_SCALE, config.mask_scale)
        half_w, half_h = (x2 - x1) * grow / 2, (y2 - y1) * grow / 2
        inner_top, inner_left = max(0, int(np.floor(cy - half_h))), max(0, int(np.floor(cx - half_w)))
        mask[
            inner_top : max(inner_top, int(np.ceil(cy + half_h))),
            inner_left : max(inner_left, int(np.ceil(cx + half_w))),
        ] = 1
    if config.feather > 0 and mask.any():
        # Soft edge inside the region: weight rises from the border to 1 over `feather_px`.
        feather_px = max(1.0, config.feather * min(mask.shape))
        distance = cv2.distanceTransform(np.pad(mask, 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
        return np.clip(distance / feather_px, 0.0, 1.0).astype(np.float32)
    return mask.astype(np.float32)


def _fill_ellipse(mask: np.ndarray, centre: tuple[float, float], axes: tuple[float, float], angle: float) -> None:
    # cv2.ellipse takes integers; a fixed-point shift keeps sub-pixel centres and axes.
    shift = 4
    scale = 1 << shift
    cv2.ellipse(
        mask,
        (int(round(centre[0] * scale)), int(round(centre[1] * scale))),
        (max(1, int(round(axes[0] * scale))), max(1, int(round(axes[1] * scale)))),
        angle,
        0,
        360,
        1,
        thickness=-1,
        lineType=cv2.LINE_8,
        shift=shift,
    )


def feature_windows(face: Face, offset: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Boolean mask (size = (h, w)) of the eye, nose and mouth windows of a face, sized from its landmarks.

    Windows scale with the inter-ocular distance (or a share of the face width when the eyes are missing
    or nearly overlap, as on a profile face). Empty when the face has no landmarks.
    """
    mask = np.zeros(size, np.uint8)
    points = face.landmarks or {}
    if not points:
        return mask.astype(bool)
    ox, oy = offset
    local = {name: (x - ox, y - oy) for name, (x, y) in points.items()}
    face_width = face.width
    if "left_eye" in local and "right_eye" in local:
        (lx, ly), (rx, ry) = local["left_eye"], local["right_eye"]
        eye_distance = float(np.hypot(rx - lx, ry - ly))
        tilt = float(np.degrees(np.arctan2(ry - ly, rx - lx)))
    else:
        eye_distance, tilt = 0.0, 0.0
    unit = max(eye_distance, 0.25 * face_width)
    for eye in ("left_eye", "right_eye"):
        if eye in local:
            _fill_ellipse(mask, local[eye], (0.38 * unit, 0.26 * unit), tilt)
    if "nose" in local:
        _fill_ellipse(mask, local["nose"], (0.26 * unit, 0.3 * unit), tilt)
    corners = [local[name] for name in ("mouth_left", "mouth_right") if name in local]
    if len(corners) == 2:
        (ax, ay), (bx, by) = corners
        half_width = 0.5 * float(np.hypot(bx - ax, by - ay)) + 0.2 * unit
        _fill_ellipse(mask, ((ax + bx) / 2, (ay + by) / 2), (half_width, 0.28 * unit), tilt)
    else:
        for corner in corners:
            _fill_ellipse(mask, corner, (0.3 * unit, 0.28 * unit), tilt)
    return mask.astype(bool)


def _blur_with_context(
    image: np.ndarray, rect: tuple[int, int, int, int], kernel: int, pyramid: _Pyramid
) -> np.ndarray:
    """Blur the region using the pixels around it too, so its border does not reflect the region's inside."""
    height, width = image.shape[:2]
    left, top, right, bottom = rect
    margin = kernel // 2 + 1
    if kernel > _MAX_DIRECT_KERNEL:
        return _large_blur(pyramid, rect, kernel, margin)
    ctx_left, ctx_top = max(0, left - margin), max(0, top - margin)
    ctx_right, ctx_bottom = min(width, right + margin), min(height, bottom + margin)
    blurred = cv2.GaussianBlur(
        image[ctx_top:ctx_bottom, ctx_left:ctx_right], (kernel, kernel), 0, borderType=cv2.BORDER_REFLECT
    )
    return blurred[top - ctx_top : bottom - ctx_top, left - ctx_left : right - ctx_left]


def _mosaic(patch: np.ndarray, blocks: int) -> np.ndarray:
    height, width = patch.shape[:2]
    longer = max(height, width)
    small_size = (max(1, round(blocks * width / longer)), max(1, round(blocks * height / longer)))
    small = cv2.resize(patch, small_size, interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)


def _face_patch(
    image: np.ndarray, face: Face, rect: tuple[int, int, int, int], config: ObfuscationConfig, pyramid: _Pyramid
) -> np.ndarray:
    left, top, right, bottom = rect
    if config.mode == "solid":
        return np.broadcast_to(np.array(config.fill_color, image.dtype), (bottom - top, right - left, 3))
    if config.mode == "mosaic":
        return _mosaic(image[top:bottom, left:right], config.mosaic_blocks)
    strong = _blur_with_context(image, rect, config.kernel_for(face), pyramid)
    if config.mode == "gaussian":
        return strong
    # feature: a light blur inside the eye/nose/mouth windows so landmarks stay findable; a face with
    # no landmarks has no windows and gets the strong blur everywhere (never no blur).
    windows = feature_windows(face, (left, top), strong.shape[:2])
    if not windows.any():
        return strong
    light = _blur_with_context(image, rect, config.feature_kernel, pyramid)
    return np.where(windows[..., None], light, strong)


_NOISE = np.random.default_rng()  # seeded from the OS: the noise must not be reproducible


def _uniform_noise(shape: tuple[int, ...], sigma: float) -> np.ndarray:
    # Uniform integers on [-a, a] have the standard deviation sigma for a = sigma * sqrt(3); drawn as int16 and
    # added with saturation by OpenCV, six times faster than Gaussian floats with a crowd's 70 regions a frame.
    # What matters against deconvolution and SSIM is fresh noise of that variance, not its distribution.
    bound = max(1, round(sigma * np.sqrt(3.0)))
    return _NOISE.integers(-bound, bound + 1, shape, dtype=np.int16)


def _with_grain(patch: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.add(patch, _uniform_noise(patch.shape, sigma), dtype=cv2.CV_8U)


# A face whose hidden box the blur left too similar gets noise in blocks of this many pixels, one grey offset per
# block, doubled (_FALLBACK_GRAINS) while the box stays too similar. A soft face keeps SSIM >= 0.6 under any blur
# (7-px windows rate two flat patches as alike), and only added contrast brings it down; blocks just larger than
# SSIM's windows do that without texture at the scale of skin. Fine per-pixel noise did it too, but a strong
# RetinaFace (0.3 on a 1.5x copy) found such faces again: the test selfie clip in 2 of 3 runs (up to 0.45), an
# enlarged example face in 7 of 10 runs; with 8-px blocks none in 8 and 12 runs (docs/results/privacy.md).
_GRAIN_BLOCK = 8
_FALLBACK_GRAINS = (6.0, 12.0, 24.0, 48.0)
# Grain goes on until every checked box is this far under `max_similarity`: video encoding smooths part of the
# noise away afterwards.
_GRAIN_MARGIN = 0.05
# A detector's box often reaches further than the face an annotator would draw (hair, forehead, chin), and the
# blurred hair or background there pulls the box's SSIM down, so the box and two central parts of it are
# checked. On the leak bench's clip0 one face's detected box gave 0.51, its central 0.8 0.57 and 0.6 0.64, its
# annotated box 0.62. Of the 1,067 faces RetinaFace finds in fmd-train, 73 (7 %) get noise at 0.55.
_CHECKED_SHARES = (1.0, 0.8, 0.6)
_SSIM_WINDOW = 7
# Modes whose faces the check looks at: feature blur keeps eyes, nose and mouth on purpose, solid fill hides all.
SIMILARITY_CHECKED_MODES = ("gaussian", "mosaic")
_SSIM_C1, _SSIM_C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def _ssim_map(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """SSIM of two grey uint8 images per 7x7 window (uniform, sample covariance, as scikit-image's
    `structural_similarity`), for the windows that fit inside: shape (h - 6, w - 6)."""
    x, y = before.astype(np.float32), after.astype(np.float32)
    window = (_SSIM_WINDOW, _SSIM_WINDOW)
    count = _SSIM_WINDOW * _SSIM_WINDOW
    unbias = count / (count - 1)
    mean_x, mean_y = cv2.blur(x, window), cv2.blur(y, window)
    var_x = unbias * (cv2.blur(x * x, window) - mean_x * mean_x)
    var_y = unbias * (cv2.blur(y * y, window) - mean_y * mean_y)
    cov = unbias * (cv2.blur(x * y, window) - mean_x * mean_y)
    ssim = ((2 * mean_x * mean_y + _SSIM_C1) * (2 * cov + _SSIM_C2)) / (
        (mean_x**2 + mean_y**2 + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    )
    inner = _SSIM_WINDOW // 2
    return ssim[inner:-inner, inner:-inner]


def similarity(before: np.ndarray, after: np.ndarray) -> float:
    """Mean SSIM of two grey uint8 images of the same shape (at least 7 px a side), as scikit-image's
    `structural_similarity` computes it (to within float32 rounding)."""
    return float(_ssim_map(before, after).mean())


def _grey(pixels: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)


def _box_similarities(grey_before: np.ndarray, grey_after: np.ndarray, box: tuple[slice, slice]) -> list[float]:
    """Mean SSIM over the windows centred in the box and in each central part of it (_CHECKED_SHARES), from one
    SSIM map of the box: one map per face instead of one per part."""
    ssim = _ssim_map(grey_before[box], grey_after[box])
    height, width = ssim.shape
    means = []
    for share in _CHECKED_SHARES:
        cut_y, cut_x = int(round(height * (1 - share) / 2)), int(round(width * (1 - share) / 2))
        part = ssim[cut_y : height - cut_y, cut_x : width - cut_x]
        if part.size:
            means.append(float(part.mean()))
    return means


def _with_block_grain(patch: np.ndarray, sigma: float) -> np.ndarray:
    """`patch` with uniform grey noise of standard deviation `sigma`, constant over each _GRAIN_BLOCK square."""
    height, width = patch.shape[:2]
    blocks = _uniform_noise((-(-height // _GRAIN_BLOCK), -(-width // _GRAIN_BLOCK)), sigma)
    noise = np.repeat(np.repeat(blocks, _GRAIN_BLOCK, 0), _GRAIN_BLOCK, 1)[:height, :width]
    return cv2.add(patch, cv2.merge([noise] * patch.shape[2]), dtype=cv2.CV_8U)


def _grain_where_still_similar(
    image: np.ndarray, output: np.ndarray, faces: Sequence[Face], config: ObfuscationConfig
) -> None:
    """Add block noise (in place) over each face region whose box or centre in `output` is still at least
    `max_similarity` like `image`, until it is `_GRAIN_MARGIN` under. Checked on the finished picture, as the leak
    bench sees it: a face is often covered by its own region and a neighbour's."""
    height, width = image.shape[:2]
    grey_before, grey_after = _grey(image), _grey(output)

    def still_similar(box: tuple[slice, slice], bar: float) -> bool:
        return max(_box_similarities(grey_before, grey_after, box)) >= bar

    for face in faces:
        left, top, right, bottom = rect = region_box(face, config.mask_scale, width, height)
        x1, y1, x2, y2 = face.box
        box_left, box_top = max(left, int(x1)), max(top, int(y1))
        box_right, box_bottom = min(right, int(np.ceil(x2))), min(bottom, int(np.ceil(y2)))
        if min(box_right - box_left, box_bottom - box_top) < _SSIM_WINDOW:
            continue
        box = (slice(box_top, box_bottom), slice(box_left, box_right))
        if not still_similar(box, config.max_similarity):
            continue
        inside = _shape_mask(face, config, rect) > 0
        region = output[top:bottom, left:right]
        hidden = region.copy()
        for sigma in _FALLBACK_GRAINS:
            _paste(region, _with_block_grain(hidden, sigma), inside)
            grey_after[top:bottom, left:right] = _grey(region)
            if not still_similar(box, config.max_similarity - _GRAIN_MARGIN):
                break


def _paste(region: np.ndarray, patch: np.ndarray, inside: np.ndarray) -> None:
    """`region[inside] = patch[inside]` in place (`region` a view into the picture, `inside` a boolean mask of
    its height and width). OpenCV's masked copy: numpy's copy with a mask broadcast over the channels took 25
    times as long, and with a hundred faces a frame it was a sixth of hiding a 720p frame."""
    copied = cv2.copyTo(np.ascontiguousarray(patch), inside.view(np.uint8), region)
    if copied is not region:  # OpenCV wrote a copy instead of into the view
        region[...] = copied


def obfuscate(image: np.ndarray, faces: Sequence[Face], config: ObfuscationConfig) -> np.ndarray:
    """A copy of `image` (RGB uint8) with every face hidden as `config` says; the input is not modified."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image, got shape {image.shape} dtype {image.dtype}")
    height, width = image.shape[:2]
    output = image.copy()
    pyramid = _Pyramid(image)
    faces = _with_whole_faces(faces, width, height)
    for face in sorted(faces, key=lambda f: f.width * f.height, reverse=True):
        rect = region_box(face, config.mask_scale, width, height)
        left, top, right, bottom = rect
        if right <= left or bottom <= top:
            continue
        weight = _shape_mask(face, config, rect)
        patch = _face_patch(image, face, rect, config, pyramid)
        if config.grain > 0 and config.mode != "solid":
            patch = _with_grain(patch, config.grain)
        region = output[top:bottom, left:right]
        if config.feather == 0:
            _paste(region, patch, weight > 0)
            continue
        inside = weight > 0
        alpha = weight[inside][:, None]
        blended = region[inside] * (1.0 - alpha) + patch[inside] * alpha
        region[inside] = np.round(blended).astype(np.uint8)
    if config.max_similarity < 1.0 and config.mode in SIMILARITY_CHECKED_MODES:
        _grain_where_still_similar(image, output, faces, config)
    return output


def coverage_mask(shape: tuple[int, int], faces: Sequence[Face], config: ObfuscationConfig) -> np.ndarray:
    """Boolean (H, W) mask of every pixel that `obfuscate` may change for these faces."""
    height, width = shape
    mask = np.zeros((height, width), bool)
    for face in _with_whole_faces(faces, width, height):
        rect = region_box(face, config.mask_scale, width, height)
        left, top, right, bottom = rect
        if right <= left or bottom <= top:
            continue
        mask[top:bottom, left:right] |= _shape_mask(face, config, rect) > 0
    return mask

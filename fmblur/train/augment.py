"""The dissertation's photometric augmentation listing (albumentations), shared by every training run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Photometric:
    """Strengths of the listing, each transform with its probability."""

    max_box_blur: int = 5  # kernel (px) of the box blur; one of motion / box / Gaussian blur is drawn
    max_gaussian_blur: int = 7
    blur_p: float = 0.3
    brightness_contrast_p: float = 0.4
    colour_p: float = 0.2  # colour jitter and gamma, each
    fog_p: float = 0.03
    downscale: tuple[float, float] = (0.4, 0.8)  # shrunk to this share and enlarged back: lost detail
    downscale_p: float = 0.15

    def transforms(self) -> list:
        import albumentations as A

        return [
            A.OneOf(
                [
                    A.MotionBlur(blur_limit=(3, 9)),
                    A.Blur(blur_limit=(3, self.max_box_blur)),
                    A.GaussianBlur(blur_limit=(3, self.max_gaussian_blur)),
                ],
                p=self.blur_p,
            ),
            A.RandomBrightnessContrast(p=self.brightness_contrast_p),
            A.ColorJitter(p=self.colour_p),
            A.RandomGamma(p=self.colour_p),
            A.RandomFog(p=self.fog_p),
            A.Downscale(scale_range=self.downscale, p=self.downscale_p),
        ]

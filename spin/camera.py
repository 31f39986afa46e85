"""SPIN's crop camera, defined once: every 2D keypoint SMPLify sees and every stored fit's `cam_t`
live in this camera (focal length 5000 px in the 224-px person crop, principal point at its centre).
"""

from __future__ import annotations

from dataclasses import dataclass

FOCAL_LENGTH = 5000.0
CROP_RES = 224


@dataclass(frozen=True)
class CropCamera:
    """The crop camera: `focal_length` in pixels of a `crop_res`-pixel square crop."""

    focal_length: float = FOCAL_LENGTH
    crop_res: int = CROP_RES

    @property
    def principal_point(self) -> tuple[float, float]:
        """Pixel coordinates of the crop centre (SPIN: (112, 112))."""
        return (self.crop_res / 2.0, self.crop_res / 2.0)

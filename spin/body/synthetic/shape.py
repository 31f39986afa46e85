"""Shape directions of the synthetic body: which body proportions each beta changes, and by how much."""

from __future__ import annotations

import numpy as np

NUM_BETAS = 10

# Shape parameters of the parametric body; 0 is the base body, each is a relative change.
SHAPE_PARAMS = (
    "height",
    "girth",
    "leg",
    "torso",
    "shoulders",
    "hips",
    "arm",
    "head",
    "limbs",
    "belly",
    "neck",
)
# How each β moves the shape parameters per unit (rows: β0..β9). β0 is height: 5% per unit.
_BETA_TO_PARAMS = {
    0: {"height": 0.05},
    1: {"girth": 0.06, "belly": 0.04, "hips": 0.02},
    2: {"leg": 0.04, "torso": -0.03},
    3: {"shoulders": 0.05, "hips": -0.03},
    4: {"arm": 0.05},
    5: {"belly": 0.07},
    6: {"head": 0.05, "neck": -0.04},
    7: {"limbs": 0.07},
    8: {"hips": 0.05, "girth": 0.02},
    9: {"neck": 0.10, "torso": 0.02},
}



def shape_params(rng: np.random.Generator) -> tuple[dict[str, float], np.ndarray]:
    """Seeded base proportions (±2%) and the (10, P) β -> shape-parameter map (±15% per entry)."""
    base = {k: float(0.02 * rng.standard_normal()) for k in SHAPE_PARAMS}
    base["height"] = 0.0  # keep the stand-in about 1.7 m tall for every seed
    beta_map = np.zeros((NUM_BETAS, len(SHAPE_PARAMS)))
    for b, effects in _BETA_TO_PARAMS.items():
        for name, amount in effects.items():
            jitter = 0.0 if b == 0 else 0.15 * rng.uniform(-1, 1)  # β0 stays exactly ±15% height at ±3
            beta_map[b, SHAPE_PARAMS.index(name)] = amount * (1.0 + jitter)
    return base, beta_map


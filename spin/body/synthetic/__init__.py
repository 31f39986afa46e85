"""A synthetic stand-in for SMPL in SMPL's exact file layout, generated deterministically from a seed.

This is NOT SMPL. The real SMPL files are licensed and not shipped; this model only has SMPL's
structure so that every part of the project (SMPLify, the regressor, the fits store, the evaluation
protocols) runs end to end without them. What it has:

- 6890 vertices forming closed, triangulated tubes per body part (torso, neck, head, thighs/shins,
  feet, arms, palms, five fingers per hand), y up, facing +z, about 1.7 m tall, pelvis at the
  origin; the left side (+x) is built first and the right side is its exact mirror image
  (``mesh``, ``body``);
- SMPL's 24-joint kinematic tree, with a ``J_regressor`` that averages the ring(s) of vertices
  around each joint, linear-blend skinning weights blended over a few centimetres at each joint,
  and small pose correctives (``rig``);
- 10 shape directions (β0 mostly height, ±15% at ±3; then girth, leg/torso proportion, shoulders vs
  hips, arm length, belly, head size, limb girth, hip width, neck length) (``shape``);
- the vertex ids smplx and SPIN read as keypoints (nose, eyes, ears, toes, heels, fingertips) placed
  at the matching spots, SPIN's 9 extra regressed joints as sparse rows, and a 17-row regressor in
  ``J_regressor_h36m``'s layout built from the same rows;
- male and female variants (the neutral body moved along its shape directions), a GMM pose prior
  fitted to ``spin.body.pose_sampler`` and SPIN-style mean parameters (``files``).

The model files load with plain ``smplx.SMPL(model_path=...)``.
"""

from spin.body.synthetic.body import NUM_VERTICES
from spin.body.synthetic.files import (
    SYNTHETIC_VERSION,
    build_model_arrays,
    fit_pose_prior,
    gendered_arrays,
    h36m_regressor,
    mean_pose,
    synthesize_body,
)
from spin.body.synthetic.rig import POSE_CORRECTIVE_GAIN
from spin.body.synthetic.shape import NUM_BETAS

__all__ = [
    "NUM_BETAS",
    "NUM_VERTICES",
    "POSE_CORRECTIVE_GAIN",
    "SYNTHETIC_VERSION",
    "build_model_arrays",
    "fit_pose_prior",
    "gendered_arrays",
    "h36m_regressor",
    "mean_pose",
    "synthesize_body",
]

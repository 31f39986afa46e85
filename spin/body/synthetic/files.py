"""The synthetic model set: all arrays in SMPL's file layout, gendered variants, prior, mean parameters."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from spin.atomic_io import atomic_output, check_output_dir
from spin.body.body_files import (
    EXTRA_REGRESSOR_FILE,
    FEMALE_MODEL_FILE,
    H36M_REGRESSOR_FILE,
    MALE_MODEL_FILE,
    MEAN_PARAMS_FILE,
    MODEL_FILE,
    PRIOR_FILE,
    BodyFiles,
)
from spin.body.gmm import PoseGMM, fit_gmm, save_gmm
from spin.body.pose_sampler import sample_body_pose
from spin.body.synthetic.body import NUM_VERTICES, build_body, mirror_map
from spin.body.synthetic.rig import (
    extra_regressor,
    joint_regressor,
    pose_correctives,
    skinning_weights,
    special_vertices,
    vertex_order,
)
from spin.body.synthetic.shape import NUM_BETAS, SHAPE_PARAMS, shape_params
from spin.joints import SMPL_PARENTS

SYNTHETIC_VERSION = 2
# Gendered variants: the neutral body moved along its own shape directions (as SMPL's gendered
# models differ from the neutral one mostly in stature, shoulders and hips), plus a seeded jitter.
_GENDER_BETAS = {
    "male": np.array([0.8, 0.3, 0.0, 1.0, 0.2, 0.0, 0.0, 0.3, -0.5, 0.0]),
    "female": np.array([-0.8, -0.3, 0.2, -1.0, -0.2, 0.0, 0.0, -0.3, 1.0, 0.0]),
}
# Rows of the H36M-style regressor (SPIN's J_regressor_h36m order, as its H36M→J14 map reads it):
# ("smpl", joint) rows of J_regressor, ("extra", row) rows of J_regressor_extra.
_H36M_ROWS = (
    ("extra", 4),  # 0 pelvis
    ("extra", 1), ("smpl", 4), ("smpl", 7),  # 1-3 left hip, knee, ankle
    ("extra", 0), ("smpl", 5), ("smpl", 8),  # 4-6 right hip, knee, ankle
    ("extra", 6),  # 7 spine
    ("extra", 2),  # 8 neck / thorax
    ("extra", 7),  # 9 jaw (nose)
    ("extra", 3),  # 10 top of head
    ("smpl", 16), ("smpl", 18), ("smpl", 20),  # 11-13 left shoulder, elbow, wrist
    ("smpl", 17), ("smpl", 19), ("smpl", 21),  # 14-16 right shoulder, elbow, wrist
)


def build_model_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """All arrays of the synthetic SMPL-layout model (final vertex order)."""
    rng = np.random.default_rng(seed)
    base, beta_map = shape_params(rng)
    geo = build_body(base)
    mirror = mirror_map(geo)
    flip = np.array([-1.0, 1.0, 1.0])

    def symmetric(v: np.ndarray) -> np.ndarray:
        return 0.5 * (v + v[mirror] * flip)

    template = symmetric(geo.verts)
    shapedirs = np.zeros((NUM_VERTICES, 3, NUM_BETAS))
    for b in range(NUM_BETAS):
        delta = dict(zip(SHAPE_PARAMS, beta_map[b], strict=True))
        plus = build_body({k: base[k] + delta[k] for k in SHAPE_PARAMS}).verts
        minus = build_body({k: base[k] - delta[k] for k in SHAPE_PARAMS}).verts
        shapedirs[:, :, b] = symmetric(0.5 * (plus - minus))
    weights = skinning_weights(geo, mirror)
    j_reg = joint_regressor(geo, mirror)
    extra = extra_regressor(geo, mirror)
    joints = j_reg @ template
    posedirs = pose_correctives(template, weights, joints)

    order = vertex_order(mirror, special_vertices(geo))
    final_of_build = np.empty(NUM_VERTICES, dtype=np.int64)
    final_of_build[order] = np.arange(NUM_VERTICES)
    kintree = np.stack([np.array(SMPL_PARENTS, dtype=np.int64), np.arange(24, dtype=np.int64)])
    return {
        "v_template": template[order],
        "shapedirs": shapedirs[order],
        "posedirs": posedirs[order].astype(np.float32),
        "J_regressor": j_reg[:, order],
        "J_regressor_extra": extra[:, order],
        "weights": weights[order],
        "kintree_table": kintree,
        "f": final_of_build[geo.faces],
        "J": joints,
        "vert_sym_idxs": final_of_build[mirror[order]],
        "bs_type": "lrotmin",
        "bs_style": "lbs",
        "spin_synthetic": f"synthetic SMPL stand-in v{SYNTHETIC_VERSION}, seed {seed}; not SMPL",
    }


def h36m_regressor(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """(17, 6890) regressor in J_regressor_h36m's layout, from the model's own rows (see _H36M_ROWS)."""
    source = {"smpl": arrays["J_regressor"], "extra": arrays["J_regressor_extra"]}
    return np.stack([source[kind][row] for kind, row in _H36M_ROWS])


def gendered_arrays(arrays: dict[str, np.ndarray], gender: str, seed: int = 0) -> dict[str, np.ndarray]:
    """The male or female variant: same rig and topology, template moved along the shape directions."""
    rng = np.random.default_rng([seed, 3, 0 if gender == "male" else 1])
    betas = _GENDER_BETAS[gender] + 0.1 * rng.standard_normal(NUM_BETAS)
    out = dict(arrays)
    out["v_template"] = arrays["v_template"] + arrays["shapedirs"] @ betas
    out["J"] = arrays["J_regressor"] @ out["v_template"]
    out["spin_synthetic"] = f"{arrays['spin_synthetic']}; {gender} variant"
    return out


# ------------------------------------------------------------------------------- prior, mean pose
def mean_pose() -> np.ndarray:
    """(72,) axis-angle of the mean pose: upright and facing the camera in SPIN's camera frame
    (global orientation π about x, since image y points down), arms a bit down, elbows and knees
    slightly bent."""
    pose = np.zeros((24, 3))
    pose[0] = [np.pi, 0.0, 0.0]
    pose[16, 2], pose[17, 2] = -0.6, 0.6  # shoulders: arms lowered ~35°
    pose[18, 1], pose[19, 1] = -0.2, 0.2  # elbows
    pose[4, 0] = pose[5, 0] = 0.05  # knees
    return pose.reshape(-1)


def _axis_angle_to_rot6d(pose: np.ndarray) -> np.ndarray:
    import torch

    from spin.geometry import axis_angle_to_matrix, matrix_to_rot6d

    aa = torch.as_tensor(pose.reshape(-1, 3), dtype=torch.float64)
    return matrix_to_rot6d(axis_angle_to_matrix(aa)).reshape(-1).numpy()


def fit_pose_prior(seed: int = 0, n_samples: int = 4000, n_components: int = 8) -> PoseGMM:
    """GMM over poses from ``sample_body_pose`` (deterministic for the seed)."""
    rng = np.random.default_rng([seed, 1])
    poses = sample_body_pose(n_samples, rng).astype(np.float64)
    return fit_gmm(poses, n_components, rng, iterations=25)


def _pickle(arrays: dict[str, np.ndarray], path: Path) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        pickle.dump(arrays, fh, protocol=4)


def _save_npy(array: np.ndarray, path: Path) -> None:
    with atomic_output(path) as tmp:
        np.save(tmp, array)


def synthesize_body(out_dir: str | Path, seed: int = 0) -> BodyFiles:
    """Write the synthetic model set into ``out_dir`` and return its paths.

    Files: SMPL_NEUTRAL.pkl, SMPL_MALE.pkl, SMPL_FEMALE.pkl (plain numpy pickles, SMPL keys plus
    J_regressor_extra), J_regressor_extra.npy (9, 6890), J_regressor_h36m.npy (17, 6890),
    gmm_08.pkl (SMPLify layout), smpl_mean_params.npz.
    """
    out = check_output_dir(out_dir, "Body model output folder")
    out.mkdir(parents=True, exist_ok=True)
    arrays = build_model_arrays(seed)
    _pickle(arrays, out / MODEL_FILE)
    _pickle(gendered_arrays(arrays, "male", seed), out / MALE_MODEL_FILE)
    _pickle(gendered_arrays(arrays, "female", seed), out / FEMALE_MODEL_FILE)
    _save_npy(arrays["J_regressor_extra"], out / EXTRA_REGRESSOR_FILE)
    _save_npy(h36m_regressor(arrays), out / H36M_REGRESSOR_FILE)
    with atomic_output(out / PRIOR_FILE) as tmp:
        save_gmm(fit_pose_prior(seed), tmp)
    with atomic_output(out / MEAN_PARAMS_FILE) as tmp:
        np.savez(tmp, pose=_axis_angle_to_rot6d(mean_pose()), shape=np.zeros(NUM_BETAS),
                 cam=np.array([0.9, 0.0, 0.0]))
    return BodyFiles.in_folder(out)

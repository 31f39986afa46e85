"""A synthetic stand-in for SMPL in SMPL's exact file layout, generated deterministically from a seed.

This is NOT SMPL. The real SMPL files are licensed and not shipped; this model only has SMPL's
structure so that every part of the project (SMPLify, the regressor, the fits store) runs end to end
without them. What it has:

- 6890 vertices forming closed, triangulated tubes per body part (torso, neck, head, thighs/shins,
  feet, arms, palms, five fingers per hand), y up, facing +z, about 1.7 m tall, pelvis at the
  origin; the left side (+x) is built first and the right side is its exact mirror image;
- SMPL's 24-joint kinematic tree, with a ``J_regressor`` that averages the ring(s) of vertices
  around each joint, linear-blend skinning weights blended over a few centimetres at each joint,
  and small pose correctives;
- 10 shape directions (β0 mostly height, ±15% at ±3; then girth, leg/torso proportion, shoulders vs
  hips, arm length, belly, head size, limb girth, hip width, neck length);
- the vertex ids smplx and SPIN read as keypoints (nose, eyes, ears, toes, heels, fingertips) placed
  at the matching spots, and SPIN's 9 extra regressed joints as sparse rows;
- a GMM pose prior fitted to ``spin.body.pose_sampler`` and SPIN-style mean parameters.

The file loads with plain ``smplx.SMPL(model_path=...)``.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.interpolate import PchipInterpolator
from smplx.vertex_ids import vertex_ids as SMPLX_VERTEX_IDS

from spin.body.files import (
    EXTRA_REGRESSOR_FILE,
    MEAN_PARAMS_FILE,
    MODEL_FILE,
    PRIOR_FILE,
    BodyFiles,
)
from spin.body.gmm import PoseGMM, fit_gmm, save_gmm
from spin.body.pose_sampler import sample_body_pose
from spin.joints import FLIP_PERM_SMPL, SMPL_PARENTS

SYNTHETIC_VERSION = 2
NUM_VERTICES = 6890
NUM_BETAS = 10
POSE_CORRECTIVE_GAIN = 0.2

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


def _smoothstep(x: np.ndarray, a: float, b: float) -> np.ndarray:
    """0 at a, 1 at b, smooth in between (a > b allowed)."""
    t = np.clip((x - a) / (b - a), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------------- tubes
@dataclass
class Tube:
    """One closed body part: rings of vertices around an axis, capped by an apex at each end.

    Local vertex order: start apex, rings (R, N) ring-major, end apex.
    """

    name: str
    verts: np.ndarray  # (n, 3)
    faces: np.ndarray  # (m, 3) local ids, outward winding
    vertex_s: np.ndarray  # (n,) arc length along the axis
    ring_s: np.ndarray  # (R,)
    ring_centers: np.ndarray  # (R, 3)
    n_around: int
    ctrl_s: dict[str, float] = field(default_factory=dict)  # arc length of named control points

    @property
    def n_rings(self) -> int:
        return len(self.ring_s)

    def ring_ids(self, k: int) -> np.ndarray:
        return 1 + k * self.n_around + np.arange(self.n_around)

    @property
    def end_apex(self) -> int:
        return len(self.verts) - 1


def _unit_circle(n: int, exponent: float) -> tuple[np.ndarray, np.ndarray]:
    """(cos, sin) of n angles from 0, exactly mirror-symmetric (index j <-> n - j), as a superellipse."""
    phi = 2.0 * np.pi * np.arange(n) / n
    c, s = np.cos(phi), np.sin(phi)
    j = np.arange(1, n)
    upper = j > n // 2
    c[j[upper]] = c[n - j[upper]]
    s[j[upper]] = -s[n - j[upper]]
    s[n // 2] = 0.0 if n % 2 == 0 else s[n // 2]
    p = 2.0 / exponent
    return np.sign(c) * np.abs(c) ** p, np.sign(s) * np.abs(s) ** p


def _tube(
    name: str,
    ctrl: list[tuple[str, np.ndarray, tuple[float, float]]],
    *,
    grid: tuple[int, int],
    e1: np.ndarray,
    caps: tuple[float, float],
    exponent: float = 2.0,
) -> Tube:
    """Sweep a (super)ellipse along a smooth axis through named control points.

    ctrl: (name, point (3,), (r1, r2)) along the axis; r1 is the half-extent along the direction
    closest to ``e1``, r2 along tangent × e1. ``grid`` is (vertices per ring, rings). ``caps`` are
    the lengths over which the two ends round off to their apex. Rings are spaced evenly along the
    silhouette, so the caps get rings too.
    """
    n_around, n_rings = grid
    points = np.array([c[1] for c in ctrl], dtype=np.float64)
    radii = np.array([c[2] for c in ctrl], dtype=np.float64)
    cs = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    length = cs[-1]
    center_of = PchipInterpolator(cs, points, axis=0)
    tangent_of = center_of.derivative()
    radii_of = PchipInterpolator(cs, radii, axis=0)
    c0, c1 = caps

    def cap_factor(s: np.ndarray) -> np.ndarray:
        a = 1.0 - np.clip(s / c0, 0.0, 1.0)
        b = 1.0 - np.clip((length - s) / c1, 0.0, 1.0)
        return np.sqrt(np.clip(1.0 - a * a, 0.0, None) * np.clip(1.0 - b * b, 0.0, None))

    dense = np.linspace(0.0, length, 4001)
    profile = radii_of(dense).max(axis=1) * cap_factor(dense)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(dense), np.diff(profile)))])
    targets = arc[-1] * (np.arange(1, n_rings + 1) / (n_rings + 1))
    ring_s = np.interp(targets, arc, dense)

    centers = center_of(ring_s)
    tangents = _normalize(tangent_of(ring_s))
    hint = np.broadcast_to(np.asarray(e1, dtype=np.float64), tangents.shape)
    axis1 = _normalize(hint - (hint * tangents).sum(-1, keepdims=True) * tangents)
    axis2 = np.cross(tangents, axis1)
    r = radii_of(ring_s) * cap_factor(ring_s)[:, None]
    cos, sin = _unit_circle(n_around, exponent)
    rings = (
        centers[:, None, :]
        + (r[:, 0, None] * cos[None, :])[..., None] * axis1[:, None, :]
        + (r[:, 1, None] * sin[None, :])[..., None] * axis2[:, None, :]
    )
    verts = np.concatenate([center_of(0.0)[None], rings.reshape(-1, 3), center_of(length)[None]])
    vertex_s = np.concatenate([[0.0], np.repeat(ring_s, n_around), [length]])

    n = n_around
    j = np.arange(n)
    j1 = (j + 1) % n
    end = 1 + n_rings * n
    last = 1 + (n_rings - 1) * n
    caps = [
        np.stack([np.zeros(n, dtype=np.int64), 1 + j1, 1 + j], 1),
        np.stack([np.full(n, end), last + j, last + j1], 1),
    ]
    k = np.arange(n_rings - 1)[:, None]
    a, b = 1 + k * n + j, 1 + k * n + j1
    c, d = b + n, a + n
    quads = np.stack([np.stack([a, b, c], -1), np.stack([a, c, d], -1)], 2).reshape(-1, 3)
    faces = np.concatenate(caps + [quads]).astype(np.int64)
    return Tube(
        name=name,
        verts=verts,
        faces=faces,
        vertex_s=vertex_s,
        ring_s=ring_s,
        ring_centers=centers,
        n_around=n_around,
        ctrl_s={c[0]: float(s) for c, s in zip(ctrl, cs, strict=True) if c[0]},
    )


def _mirror_tube(t: Tube, name: str) -> Tube:
    """x -> -x copy with reversed winding (so normals still point outwards)."""
    flip = np.array([-1.0, 1.0, 1.0])
    return Tube(
        name=name,
        verts=t.verts * flip,
        faces=t.faces[:, [0, 2, 1]].copy(),
        vertex_s=t.vertex_s.copy(),
        ring_s=t.ring_s.copy(),
        ring_centers=t.ring_centers * flip,
        n_around=t.n_around,
        ctrl_s=dict(t.ctrl_s),
    )


# ----------------------------------------------------------------------------------- the body
Z = np.array([0.0, 0.0, 1.0])
Y = np.array([0.0, 1.0, 0.0])
MIDDLE_PARTS = ("torso", "neck", "head")
LEFT_PARTS = ("leg", "foot", "arm", "palm", "thumb", "index", "middle", "ring", "pinky")
FINGERS = ("index", "middle", "ring", "pinky")


def _target_joints(q: dict[str, float]) -> dict[str, np.ndarray]:
    """Desired T-pose joint positions (left side and middle) before the overall height scale."""
    t, sw, hw, leg, arm, neck = q["torso"], q["shoulders"], q["hips"], q["leg"], q["arm"], q["neck"]
    v = lambda x, y, z: np.array([x, y, z], dtype=np.float64)  # noqa: E731
    j: dict[str, np.ndarray] = {"pelvis": v(0.0, 0.0, 0.0)}
    j["hip"] = v(0.085 * (1 + hw), -0.085, 0.0)
    j["spine1"] = v(0.0, 0.11 * (1 + t), -0.015)
    j["spine2"] = v(0.0, 0.24 * (1 + t), -0.005)
    j["spine3"] = v(0.0, 0.30 * (1 + t), 0.005)
    j["neck"] = v(0.0, 0.50 * (1 + t), -0.02)
    j["collar"] = v(0.075 * (1 + sw), 0.415 * (1 + t), -0.01)
    j["shoulder"] = v(0.18 * (1 + sw), 0.435 * (1 + t), -0.02)
    j["head"] = j["neck"] + v(0.0, 0.085 * (1 + neck), 0.035)
    j["knee"] = j["hip"] + v(0.015, -0.385 * (1 + leg), 0.005)
    j["ankle"] = j["knee"] + v(0.005, -0.39 * (1 + leg), -0.04)
    j["foot"] = j["ankle"] + v(0.01, -0.055, 0.12 * (1 + 0.3 * leg))
    j["elbow"] = j["shoulder"] + v(0.255 * (1 + arm), -0.01, -0.01)
    j["wrist"] = j["elbow"] + v(0.245 * (1 + arm), 0.005, 0.005)
    j["hand"] = j["wrist"] + v(0.085 * (1 + 0.5 * arm), -0.005, -0.005)
    return j


@dataclass
class BodyGeometry:
    """The assembled mesh in build order (middle parts, left parts, right parts)."""

    parts: dict[str, Tube]
    offsets: dict[str, int]
    joints: dict[str, np.ndarray]  # target joints (left + middle), height-scaled
    head_center: np.ndarray
    head_radii: np.ndarray

    @property
    def verts(self) -> np.ndarray:
        return np.concatenate([p.verts for p in self.parts.values()])

    @property
    def faces(self) -> np.ndarray:
        return np.concatenate([p.faces + self.offsets[n] for n, p in self.parts.items()])

    def ids(self, part: str, local: np.ndarray | int) -> np.ndarray:
        return self.offsets[part] + np.asarray(local)


def _build_body(q: dict[str, float]) -> BodyGeometry:
    """The parametric body for shape parameters q (see SHAPE_PARAMS); same topology for every q."""
    j = _target_joints(q)
    girth = 1.0 + q["girth"]
    limb = girth * (1.0 + q["limbs"])
    parts: dict[str, Tube] = {}

    # Torso: superellipse rings (boxier than an ellipse), e1 = forward (depth), e2 = +x (width).
    tl = 1.0 + q["torso"]
    stations = [  # y, z centre, half depth, half width
        (-0.145, 0.0, 0.080, 0.120),
        (-0.10, 0.0, 0.095, 0.155),
        (-0.03, -0.005, 0.105, 0.168),
        (0.05, 0.0, 0.100, 0.155),
        (0.14, 0.01, 0.095, 0.138),
        (0.24, 0.01, 0.100, 0.150),
        (0.33, 0.01, 0.108, 0.165),
        (0.40, -0.005, 0.100, 0.175),
        (0.45, -0.015, 0.085, 0.155),
        (0.49, -0.02, 0.060, 0.090),
    ]
    ctrl = []
    for y, zc, depth, width in stations:
        y = y * tl if y > 0 else y
        lower = 1.0 - _smoothstep(np.array(y), 0.0, 0.2)
        upper = _smoothstep(np.array(y), 0.2, 0.35)
        belly = np.exp(-(((y - 0.12 * tl) / 0.1) ** 2))
        w = width * girth * (1 + q["hips"] * lower + q["shoulders"] * upper)
        d = depth * (1 + 1.2 * q["girth"]) * (1 + q["belly"] * belly)
        ctrl.append(("", np.array([0.0, y, zc + 0.5 * q["belly"] * belly * depth]), (float(d), float(w))))
    parts["torso"] = _tube("torso", ctrl, grid=(48, 34), e1=Z, caps=(0.05, 0.04), exponent=2.6)

    # Neck: from inside the torso up into the head, through the neck and head joints.
    nr = 1.0 + 0.5 * q["girth"]
    top = j["head"] + np.array([0.0, 0.045, 0.005])
    parts["neck"] = _tube(
        "neck",
        [
            ("", j["neck"] - np.array([0.0, 0.07, 0.0]), (0.058 * nr, 0.052 * nr)),
            ("neck", j["neck"], (0.056 * nr, 0.050 * nr)),
            ("head", j["head"], (0.055 * nr, 0.048 * nr)),
            ("", top, (0.055 * nr, 0.048 * nr)),
        ],
        grid=(24, 8),
        e1=Z,
        caps=(0.03, 0.03),
    )

    # Head: an ellipsoid (caps over the whole length), with a nose.
    hs = 1.0 + q["head"]
    head_radii = np.array([0.078, 0.112, 0.098]) * hs  # x, y, z half-extents
    head_center = j["head"] + np.array([0.0, 0.09 * hs, 0.005])
    bottom, top = head_center - [0, head_radii[1], 0], head_center + [0, head_radii[1], 0]
    r = (head_radii[2], head_radii[0])
    head = _tube(
        "head",
        [("", bottom, r), ("", head_center, r), ("", top, r)],
        grid=(32, 20),
        e1=Z,
        caps=(head_radii[1], head_radii[1]),
    )
    rel = head.verts - head_center
    nose_y = -0.22 * head_radii[1]
    bump = np.exp(
        -((rel[:, 0] / (0.15 * head_radii[0])) ** 2) - ((rel[:, 1] - nose_y) / (0.17 * head_radii[1])) ** 2
    )
    head.verts[:, 2] += 0.022 * hs * bump * (rel[:, 2] > 0)
    parts["head"] = head

    # Left leg: one tube from inside the pelvis through hip, knee, ankle.
    hip, knee, ankle = j["hip"], j["knee"], j["ankle"]
    parts["leg"] = _tube(
        "leg",
        [
            ("", hip + np.array([0.0, 0.105, 0.0]), (0.092 * limb, 0.090 * limb)),
            ("hip", hip, (0.090 * limb, 0.088 * limb)),
            ("", hip + 0.45 * (knee - hip), (0.078 * limb, 0.074 * limb)),
            ("", knee + np.array([0.0, 0.07, 0.0]), (0.058 * limb, 0.055 * limb)),
            ("knee", knee, (0.050 * limb, 0.048 * limb)),
            ("", knee + 0.3 * (ankle - knee) + np.array([0.0, 0.0, -0.012]), (0.055 * limb, 0.047 * limb)),
            ("", ankle + np.array([0.0, 0.08, 0.0]), (0.035 * limb, 0.033 * limb)),
            ("ankle", ankle, (0.035 * limb, 0.032 * limb)),
            ("", ankle + np.array([0.0, -0.035, 0.0]), (0.030 * limb, 0.030 * limb)),
        ],
        grid=(24, 36),
        e1=Z,
        caps=(0.04, 0.025),
    )

    # Left foot: heel to toe along +z; e1 = up (height), e2 = sideways (width).
    sole = ankle[1] - 0.08
    foot = j["foot"]
    heel = np.array([ankle[0], sole + 0.035, ankle[2] - 0.065])
    toe = np.array([foot[0] + 0.005, sole + 0.018, foot[2] + 0.075])
    parts["foot"] = _tube(
        "foot",
        [
            ("", heel, (0.035, 0.032 * girth)),
            ("", np.array([ankle[0] + 0.005, sole + 0.045, ankle[2] + 0.04]), (0.042, 0.042 * girth)),
            ("foot", np.array([foot[0], sole + 0.025, foot[2]]), (0.024, 0.048 * girth)),
            ("", toe, (0.016, 0.042 * girth)),
        ],
        grid=(16, 18),
        e1=Y,
        caps=(0.035, 0.03),
    )

    # Left arm: from inside the chest through collar, shoulder, elbow, wrist; e1 = forward.
    collar, shoulder, elbow, wrist = j["collar"], j["shoulder"], j["elbow"], j["wrist"]
    parts["arm"] = _tube(
        "arm",
        [
            ("", np.array([0.05, collar[1], collar[2]]), (0.045 * limb, 0.045 * limb)),
            ("collar", collar, (0.050 * limb, 0.050 * limb)),
            ("shoulder", shoulder, (0.055 * limb, 0.056 * limb)),
            ("", shoulder + 0.5 * (elbow - shoulder), (0.045 * limb, 0.047 * limb)),
            ("elbow", elbow, (0.037 * limb, 0.036 * limb)),
            ("", elbow + 0.45 * (wrist - elbow), (0.040 * limb, 0.036 * limb)),
            ("wrist", wrist, (0.030 * limb, 0.022 * limb)),
            ("", wrist + np.array([0.03, 0.0, 0.0]), (0.028 * limb, 0.020 * limb)),
        ],
        grid=(20, 32),
        e1=Z,
        caps=(0.03, 0.02),
    )

    # Left palm (facing down, so flat in y) and fingers along +x; thumb forward-out from the palm.
    hand = j["hand"]
    palm_r = (0.040 * girth, 0.014 * girth)
    parts["palm"] = _tube(
        "palm",
        [
            ("", wrist - np.array([0.01, 0.0, 0.0]), palm_r),
            ("hand", hand, palm_r),
            ("", hand + np.array([0.025, 0.0, 0.0]), palm_r),
        ],
        grid=(16, 10),
        e1=Z,
        caps=(0.015, 0.015),
        exponent=2.5,
    )
    thumb_base = wrist + np.array([0.025, -0.005, 0.03])
    thumb_dir = _normalize(np.array([0.55, -0.25, 0.8]))
    fr = 0.01 * girth
    parts["thumb"] = _tube(
        "thumb",
        [("", thumb_base, (fr, fr)), ("", thumb_base + 0.075 * thumb_dir, (fr, fr))],
        grid=(8, 6),
        e1=Y,
        caps=(0.006, 0.009),
    )
    finger_len = {"index": 0.08, "middle": 0.09, "ring": 0.085, "pinky": 0.07}
    finger_z = {"index": 0.027, "middle": 0.009, "ring": -0.009, "pinky": -0.027}
    for f in FINGERS:
        base = hand + np.array([0.0, -0.002, finger_z[f]])
        rr = (0.0085 if f != "pinky" else 0.0075) * girth
        parts[f] = _tube(
            f,
            [
                ("", base, (rr, rr)),
                ("", base + np.array([finger_len[f] * (1 + 0.5 * q["arm"]), 0.0, 0.0]), (rr, rr)),
            ],
            grid=(8, 6),
            e1=Z,
            caps=(0.005, 0.008),
        )

    for name in LEFT_PARTS:
        parts["r_" + name] = _mirror_tube(parts[name], "r_" + name)

    # Overall height: scale every coordinate about the pelvis (origin).
    scale = 1.0 + q["height"]
    for p in parts.values():
        p.verts *= scale
        p.ring_centers *= scale
        p.ring_s *= scale
        p.vertex_s *= scale
        p.ctrl_s = {k: s * scale for k, s in p.ctrl_s.items()}
    offsets, total = {}, 0
    for name, p in parts.items():
        offsets[name] = total
        total += len(p.verts)
    if total != NUM_VERTICES:
        raise AssertionError(f"synthetic body has {total} vertices, not {NUM_VERTICES}")
    return BodyGeometry(
        parts=parts,
        offsets=offsets,
        joints={k: v * scale for k, v in j.items()},
        head_center=head_center * scale,
        head_radii=head_radii * scale,
    )


def _mirror_map(geo: BodyGeometry) -> np.ndarray:
    """(6890,) vertex index of each vertex's mirror image (an involution), in build order."""
    mirror = np.arange(NUM_VERTICES)
    for name in MIDDLE_PARTS:
        p, off = geo.parts[name], geo.offsets[name]
        n = p.n_around
        for k in range(p.n_rings):
            ids = p.ring_ids(k)
            mirror[off + ids] = off + ids[(-np.arange(n)) % n]
    for name in LEFT_PARTS:
        size = len(geo.parts[name].verts)
        left, right = geo.offsets[name], geo.offsets["r_" + name]
        mirror[left : left + size] = np.arange(right, right + size)
        mirror[right : right + size] = np.arange(left, left + size)
    return mirror


# ------------------------------------------------------------------------------ skinning weights


def _chain_weights(s: np.ndarray, owners: list[int], transitions: list[tuple[float, float]]) -> np.ndarray:
    """Weights (n, 24) along an axis.

    Owner i hands over to owner i+1 around transitions[i] = (arc length, half width).
    """
    w = np.zeros((len(s), 24))
    carry = np.ones(len(s))
    for i, owner in enumerate(owners):
        if i < len(transitions):
            centre, half = transitions[i]
            t = _smoothstep(s, centre - half, centre + half)
            w[:, owner] += carry * (1.0 - t)
            carry = carry * t
        else:
            w[:, owner] += carry
    return w


def _skinning_weights(geo: BodyGeometry, mirror: np.ndarray) -> np.ndarray:
    """(6890, 24) weights in build order; the right side is the mirror of the left."""
    jt = geo.joints
    weights = np.zeros((NUM_VERTICES, 24))

    def put(name: str, w: np.ndarray) -> None:
        off = geo.offsets[name]
        weights[off : off + len(w)] = w

    torso = geo.parts["torso"]
    y, ax = torso.verts[:, 1], np.abs(torso.verts[:, 0])
    w = _chain_weights(
        y,
        [0, 3, 6, 9, 12],
        [(jt["spine1"][1], 0.05), (jt["spine2"][1], 0.04), (jt["spine3"][1], 0.03), (jt["neck"][1], 0.03)],
    )
    left = torso.verts[:, 0] >= 0
    side = lambda j: np.where(left, j, FLIP_PERM_SMPL[j])  # noqa: E731
    collar = _smoothstep(ax, 0.05, 0.13) * _smoothstep(y, jt["collar"][1] - 0.08, jt["collar"][1] - 0.01)
    shoulder = _smoothstep(ax, 0.13, 0.19) * _smoothstep(y, jt["shoulder"][1] - 0.07, jt["shoulder"][1])
    hipw = 0.7 * _smoothstep(y, 0.0, jt["hip"][1] - 0.02) * _smoothstep(ax, 0.02, 0.10)
    w = w * (1 - collar)[:, None] * (1 - hipw)[:, None]
    rows = np.arange(len(w))
    for joint, amount in ((13, collar * (1 - shoulder)), (16, collar * shoulder), (1, hipw * (1 - collar))):
        np.add.at(w, (rows, side(joint)), amount)
    put("torso", w / w.sum(1, keepdims=True))

    neck = geo.parts["neck"]
    put(
        "neck",
        _chain_weights(
            neck.vertex_s, [9, 12, 15], [(neck.ctrl_s["neck"], 0.03), (neck.ctrl_s["head"], 0.025)]
        ),
    )
    head = geo.parts["head"]
    put("head", _chain_weights(head.verts[:, 1], [12, 15], [(jt["head"][1], 0.025)]))

    left_weights = {
        "leg": ([0, 1, 4, 7], [("hip", 0.06), ("knee", 0.05), ("ankle", 0.03)]),
        "foot": ([7, 10], [("foot", 0.025)]),
        "arm": ([13, 16, 18, 20], [("shoulder", 0.045), ("elbow", 0.04), ("wrist", 0.025)]),
        "palm": ([20, 22], [("hand", 0.02)]),
        "thumb": ([20], []),
    } | {f: ([22], []) for f in FINGERS}
    for name, (owners, trans) in left_weights.items():
        p = geo.parts[name]
        w = _chain_weights(p.vertex_s, owners, [(p.ctrl_s[c], h) for c, h in trans])
        put(name, w)
        put("r_" + name, w[:, FLIP_PERM_SMPL])
    # Exact symmetry (the torso is computed from |x|; this removes rounding differences).
    return 0.5 * (weights + weights[mirror][:, FLIP_PERM_SMPL])


# ------------------------------------------------------------------------------------ regressors
def _ring_row(geo: BodyGeometry, part: str, target: np.ndarray) -> np.ndarray:
    """(6890,) regressor row averaging the two rings whose centres bracket ``target`` (interpolated)."""
    p = geo.parts[part]
    c = p.ring_centers
    seg = c[1:] - c[:-1]
    alpha = np.clip(((target - c[:-1]) * seg).sum(1) / (seg * seg).sum(1), 0.0, 1.0)
    dist = np.linalg.norm(c[:-1] + alpha[:, None] * seg - target, axis=1)
    k = int(np.argmin(dist))
    a = float(alpha[k])
    row = np.zeros(NUM_VERTICES)
    row[geo.ids(part, p.ring_ids(k))] = (1.0 - a) / p.n_around
    row[geo.ids(part, p.ring_ids(k + 1))] += a / p.n_around
    return row


def _joint_regressor(geo: BodyGeometry, mirror: np.ndarray) -> np.ndarray:
    """(24, 6890): each joint is the (interpolated) centre of the rings around it."""
    jt = geo.joints
    where = {
        0: ("torso", "pelvis"),
        1: ("leg", "hip"),
        3: ("torso", "spine1"),
        4: ("leg", "knee"),
        6: ("torso", "spine2"),
        7: ("leg", "ankle"),
        9: ("torso", "spine3"),
        10: ("foot", "foot"),
        12: ("neck", "neck"),
        13: ("arm", "collar"),
        15: ("neck", "head"),
        16: ("arm", "shoulder"),
        18: ("arm", "elbow"),
        20: ("arm", "wrist"),
        22: ("palm", "hand"),
    }
    reg = np.zeros((24, NUM_VERTICES))
    for joint, (part, name) in where.items():
        reg[joint] = _ring_row(geo, part, jt[name])
        if FLIP_PERM_SMPL[joint] != joint:
            reg[FLIP_PERM_SMPL[joint]] = reg[joint][mirror]
    return reg


def _extra_regressor(geo: BodyGeometry, mirror: np.ndarray) -> np.ndarray:
    """(9, 6890) SPIN's extra joints: R hip, L hip, neck (LSP), head top (LSP), pelvis (MPII),
    thorax (MPII), spine (H36M), jaw (H36M), head (H36M)."""
    jt = geo.joints
    extra = np.zeros((9, NUM_VERTICES))
    # LSP-style hips sit lower and more lateral than SMPL's: a ring below the hip, biased outwards.
    row = _ring_row(geo, "leg", jt["hip"] + np.array([0.0, -0.04, 0.0]))
    ids = np.nonzero(row)[0]
    lateral = geo.verts[ids, 0] - geo.verts[ids, 0].mean()
    row[ids] *= 1.0 + 0.6 * lateral / np.abs(lateral).max()
    extra[1] = row / row.sum()
    extra[0] = extra[1][mirror]
    extra[2] = _ring_row(geo, "neck", jt["neck"] + np.array([0.0, -0.03, 0.0]))
    head = geo.parts["head"]
    top_ring = geo.ids("head", head.ring_ids(head.n_rings - 1))
    extra[3, geo.ids("head", head.end_apex)] = 0.6
    extra[3, top_ring] = 0.4 / len(top_ring)
    extra[4] = _ring_row(geo, "torso", np.array([0.0, -0.04, 0.0]))
    extra[5] = _ring_row(geo, "torso", np.array([0.0, jt["collar"][1] + 0.02, 0.0]))
    extra[6] = _ring_row(geo, "torso", np.array([0.0, 0.5 * (jt["spine1"][1] + jt["spine3"][1]), 0.0]))
    # Jaw: the front half of the head ring at chin height (symmetric, so it stays on the midline).
    chin_y = geo.head_center[1] - 0.7 * geo.head_radii[1]
    k = int(np.argmin(np.abs(head.ring_centers[:, 1] - chin_y)))
    ring = head.ring_ids(k)
    n = head.n_around
    front = ring[(np.arange(n) <= n // 8) | (np.arange(n) >= n - n // 8)]
    extra[7, geo.ids("head", front)] = 1.0 / len(front)
    extra[8] = _ring_row(geo, "head", geo.head_center)
    return extra


# ---------------------------------------------------------------------------- special vertices
def _special_vertices(geo: BodyGeometry) -> dict[str, int]:
    """Build-order vertex for each smplx vertex-joint name (left side; right ones are mirrors)."""
    verts = geo.verts

    def nearest(part: str, target: np.ndarray, candidates: np.ndarray | None = None) -> int:
        off, n = geo.offsets[part], len(geo.parts[part].verts)
        ids = np.arange(off, off + n) if candidates is None else candidates
        return int(ids[np.argmin(np.linalg.norm(verts[ids] - target, axis=1))])

    hc, hr = geo.head_center, geo.head_radii
    head = geo.parts["head"]
    midline = geo.ids("head", np.concatenate([head.ring_ids(k)[:1] for k in range(head.n_rings)]))
    out = {
        "nose": int(
            midline[np.argmax(verts[midline, 2] - 0.3 * np.abs(verts[midline, 1] - hc[1] + 0.22 * hr[1]))]
        ),
        "leye": nearest("head", hc + np.array([0.42 * hr[0], 0.08 * hr[1], hr[2]])),
        "lear": nearest("head", hc + np.array([hr[0], -0.05 * hr[1], -0.05 * hr[2]])),
    }
    foot = geo.verts[geo.offsets["foot"] : geo.offsets["foot"] + len(geo.parts["foot"].verts)]
    lo, hi = foot.min(0), foot.max(0)
    span = hi - lo
    out["LBigToe"] = nearest("foot", np.array([lo[0] + 0.3 * span[0], lo[1] + 0.25 * span[1], hi[2]]))
    out["LSmallToe"] = nearest("foot", np.array([hi[0], lo[1] + 0.2 * span[1], hi[2] - 0.22 * span[2]]))
    out["LHeel"] = nearest("foot", np.array([0.5 * (lo[0] + hi[0]), lo[1], lo[2]]))
    for f in ("thumb",) + FINGERS:
        out["l" + f] = int(geo.ids(f, geo.parts[f].end_apex))
    return out


def _vertex_order(mirror: np.ndarray, special: dict[str, int]) -> np.ndarray:
    """(6890,) build-order vertex for each final vertex id, so smplx's vertex ids land on ``special``."""
    ids = SMPLX_VERTEX_IDS["smplh"]
    pinned: dict[int, int] = {ids["nose"]: special["nose"]}
    for name, build in special.items():
        if name == "nose":
            continue
        right = "r" + name[1:] if name[0] == "l" else "R" + name[1:]
        pinned[ids[name]] = build
        pinned[ids[right]] = int(mirror[build])
    order = np.full(NUM_VERTICES, -1)
    for final, build in pinned.items():
        order[final] = build
    rest = np.setdiff1d(np.arange(NUM_VERTICES), np.array(list(pinned.values())))
    order[order < 0] = rest
    return order


# --------------------------------------------------------------------------------- the model file
def _shape_params(rng: np.random.Generator) -> tuple[dict[str, float], np.ndarray]:
    """Seeded base proportions (±2%) and the (10, P) β -> shape-parameter map (±15% per entry)."""
    base = {k: float(0.02 * rng.standard_normal()) for k in SHAPE_PARAMS}
    base["height"] = 0.0  # keep the stand-in about 1.7 m tall for every seed
    beta_map = np.zeros((NUM_BETAS, len(SHAPE_PARAMS)))
    for b, effects in _BETA_TO_PARAMS.items():
        for name, amount in effects.items():
            jitter = 0.0 if b == 0 else 0.15 * rng.uniform(-1, 1)  # β0 stays exactly ±15% height at ±3
            beta_map[b, SHAPE_PARAMS.index(name)] = amount * (1.0 + jitter)
    return base, beta_map


def _pose_correctives(template: np.ndarray, weights: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """(6890, 3, 207) small pose-dependent offsets near joints.

    In a joint's blend zone, the vertex moves by a fraction of the displacement its own joint's
    rotation would give it, pushing back against linear-blend-skinning collapse. The construction
    is mirror-equivariant, so the mirrored model stays mirrored.
    """
    posedirs = np.zeros((NUM_VERTICES, 3, 23, 3, 3))
    blend = 4.0 * weights[:, 1:] * (1.0 - weights[:, 1:])  # (V, 23): 1 at w = 0.5, 0 at w in {0, 1}
    rel = template[:, None, :] - joints[None, 1:, :]  # (V, 23, 3)
    coef = POSE_CORRECTIVE_GAIN * blend[..., None] * rel  # (V, 23, 3)
    for a in range(3):
        posedirs[:, a, :, a, :] = coef
    return posedirs.reshape(NUM_VERTICES, 3, 207)


def build_model_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """All arrays of the synthetic SMPL-layout model (final vertex order)."""
    rng = np.random.default_rng(seed)
    base, beta_map = _shape_params(rng)
    geo = _build_body(base)
    mirror = _mirror_map(geo)
    flip = np.array([-1.0, 1.0, 1.0])

    def symmetric(v: np.ndarray) -> np.ndarray:
        return 0.5 * (v + v[mirror] * flip)

    template = symmetric(geo.verts)
    shapedirs = np.zeros((NUM_VERTICES, 3, NUM_BETAS))
    for b in range(NUM_BETAS):
        delta = dict(zip(SHAPE_PARAMS, beta_map[b], strict=True))
        plus = _build_body({k: base[k] + delta[k] for k in SHAPE_PARAMS}).verts
        minus = _build_body({k: base[k] - delta[k] for k in SHAPE_PARAMS}).verts
        shapedirs[:, :, b] = symmetric(0.5 * (plus - minus))
    weights = _skinning_weights(geo, mirror)
    j_reg = _joint_regressor(geo, mirror)
    extra = _extra_regressor(geo, mirror)
    joints = j_reg @ template
    posedirs = _pose_correctives(template, weights, joints)

    order = _vertex_order(mirror, _special_vertices(geo))
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


def synthesize_body(out_dir: str | Path, seed: int = 0) -> BodyFiles:
    """Write the synthetic model set into ``out_dir`` and return its paths.

    Files: SMPL_NEUTRAL.pkl (plain numpy pickle, SMPL keys plus J_regressor_extra),
    J_regressor_extra.npy (9, 6890), gmm_08.pkl (SMPLify layout), smpl_mean_params.npz.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays = build_model_arrays(seed)
    with open(out / MODEL_FILE, "wb") as fh:
        pickle.dump(arrays, fh, protocol=4)
    np.save(out / EXTRA_REGRESSOR_FILE, arrays["J_regressor_extra"])
    save_gmm(fit_pose_prior(seed), out / PRIOR_FILE)
    np.savez(
        out / MEAN_PARAMS_FILE,
        pose=_axis_angle_to_rot6d(mean_pose()),
        shape=np.zeros(NUM_BETAS),
        cam=np.array([0.9, 0.0, 0.0]),
    )
    return BodyFiles(
        model=out / MODEL_FILE,
        joint_regressor_extra=out / EXTRA_REGRESSOR_FILE,
        prior=out / PRIOR_FILE,
        mean_params=out / MEAN_PARAMS_FILE,
    )

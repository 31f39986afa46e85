"""The parametric synthetic body: T-pose joints and tubes per part, assembled in build order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spin.body.synthetic.mesh import Tube, mirror_tube, normalize, smoothstep, tube

NUM_VERTICES = 6890
Z = np.array([0.0, 0.0, 1.0])
Y = np.array([0.0, 1.0, 0.0])
MIDDLE_PARTS = ("torso", "neck", "head")
LEFT_PARTS = ("leg", "foot", "arm", "palm", "thumb", "index", "middle", "ring", "pinky")
FINGERS = ("index", "middle", "ring", "pinky")


def target_joints(q: dict[str, float]) -> dict[str, np.ndarray]:
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


def _torso(q: dict[str, float], girth: float) -> Tube:
    """Torso: superellipse rings (boxier than an ellipse), e1 = forward (depth), e2 = +x (width)."""
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
        lower = 1.0 - smoothstep(np.array(y), 0.0, 0.2)
        upper = smoothstep(np.array(y), 0.2, 0.35)
        belly = np.exp(-(((y - 0.12 * tl) / 0.1) ** 2))
        w = width * girth * (1 + q["hips"] * lower + q["shoulders"] * upper)
        d = depth * (1 + 1.2 * q["girth"]) * (1 + q["belly"] * belly)
        ctrl.append(("", np.array([0.0, y, zc + 0.5 * q["belly"] * belly * depth]), (float(d), float(w))))
    return tube("torso", ctrl, grid=(48, 34), e1=Z, caps=(0.05, 0.04), exponent=2.6)

def _neck(q: dict[str, float], j: dict[str, np.ndarray]) -> Tube:
    """Neck: from inside the torso up into the head, through the neck and head joints."""
    nr = 1.0 + 0.5 * q["girth"]
    top = j["head"] + np.array([0.0, 0.045, 0.005])
    return tube(
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

def _head(q: dict[str, float], j: dict[str, np.ndarray]) -> tuple[Tube, np.ndarray, np.ndarray]:
    """Head: an ellipsoid (caps over the whole length), with a nose. Returns (tube, centre, radii)."""
    hs = 1.0 + q["head"]
    head_radii = np.array([0.078, 0.112, 0.098]) * hs  # x, y, z half-extents
    head_center = j["head"] + np.array([0.0, 0.09 * hs, 0.005])
    bottom, top = head_center - [0, head_radii[1], 0], head_center + [0, head_radii[1], 0]
    r = (head_radii[2], head_radii[0])
    head = tube(
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
    return head, head_center, head_radii

def _leg(j: dict[str, np.ndarray], limb: float) -> Tube:
    """Left leg: one tube from inside the pelvis through hip, knee, ankle."""
    hip, knee, ankle = j["hip"], j["knee"], j["ankle"]
    return tube(
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

def _foot(j: dict[str, np.ndarray], girth: float) -> Tube:
    """Left foot: heel to toe along +z; e1 = up (height), e2 = sideways (width)."""
    ankle = j["ankle"]
    sole = ankle[1] - 0.08
    foot = j["foot"]
    heel = np.array([ankle[0], sole + 0.035, ankle[2] - 0.065])
    toe = np.array([foot[0] + 0.005, sole + 0.018, foot[2] + 0.075])
    return tube(
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

def _arm(j: dict[str, np.ndarray], limb: float) -> Tube:
    """Left arm: from inside the chest through collar, shoulder, elbow, wrist; e1 = forward."""
    collar, shoulder, elbow, wrist = j["collar"], j["shoulder"], j["elbow"], j["wrist"]
    return tube(
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

def _hand(q: dict[str, float], j: dict[str, np.ndarray], girth: float) -> dict[str, Tube]:
    """Left palm (facing down, so flat in y) and fingers along +x; thumb forward-out from the palm."""
    wrist = j["wrist"]
    parts: dict[str, Tube] = {}
    hand = j["hand"]
    palm_r = (0.040 * girth, 0.014 * girth)
    parts["palm"] = tube(
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
    thumb_dir = normalize(np.array([0.55, -0.25, 0.8]))
    fr = 0.01 * girth
    parts["thumb"] = tube(
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
        parts[f] = tube(
            f,
            [
                ("", base, (rr, rr)),
                ("", base + np.array([finger_len[f] * (1 + 0.5 * q["arm"]), 0.0, 0.0]), (rr, rr)),
            ],
            grid=(8, 6),
            e1=Z,
            caps=(0.005, 0.008),
        )

    return parts

def _scaled_geometry(parts: dict[str, Tube], j: dict[str, np.ndarray], head_center: np.ndarray,
                     head_radii: np.ndarray, scale: float) -> BodyGeometry:
    """Overall height: scale every coordinate about the pelvis (origin); fix the build order offsets."""
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


def build_body(q: dict[str, float]) -> BodyGeometry:
    """The parametric body for shape parameters q (see SHAPE_PARAMS); same topology for every q."""
    j = target_joints(q)
    girth = 1.0 + q["girth"]
    limb = girth * (1.0 + q["limbs"])
    head, head_center, head_radii = _head(q, j)
    parts: dict[str, Tube] = {
        "torso": _torso(q, girth),
        "neck": _neck(q, j),
        "head": head,
        "leg": _leg(j, limb),
        "foot": _foot(j, girth),
        "arm": _arm(j, limb),
    }
    parts.update(_hand(q, j, girth))
    for name in LEFT_PARTS:
        parts["r_" + name] = mirror_tube(parts[name], "r_" + name)
    return _scaled_geometry(parts, j, head_center, head_radii, 1.0 + q["height"])


def mirror_map(geo: BodyGeometry) -> np.ndarray:
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


"""The synthetic body's rig: skinning weights, joint regressors, keypoint vertices, pose correctives."""

from __future__ import annotations

import numpy as np
from smplx.vertex_ids import vertex_ids as SMPLX_VERTEX_IDS

from spin.body.synthetic.body import FINGERS, NUM_VERTICES, BodyGeometry
from spin.body.synthetic.mesh import smoothstep
from spin.joints import FLIP_PERM_SMPL

POSE_CORRECTIVE_GAIN = 0.2


def _chain_weights(s: np.ndarray, owners: list[int], transitions: list[tuple[float, float]]) -> np.ndarray:
    """Weights (n, 24) along an axis.

    Owner i hands over to owner i+1 around transitions[i] = (arc length, half width).
    """
    w = np.zeros((len(s), 24))
    carry = np.ones(len(s))
    for i, owner in enumerate(owners):
        if i < len(transitions):
            centre, half = transitions[i]
            t = smoothstep(s, centre - half, centre + half)
            w[:, owner] += carry * (1.0 - t)
            carry = carry * t
        else:
            w[:, owner] += carry
    return w


def skinning_weights(geo: BodyGeometry, mirror: np.ndarray) -> np.ndarray:
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
    collar = smoothstep(ax, 0.05, 0.13) * smoothstep(y, jt["collar"][1] - 0.08, jt["collar"][1] - 0.01)
    shoulder = smoothstep(ax, 0.13, 0.19) * smoothstep(y, jt["shoulder"][1] - 0.07, jt["shoulder"][1])
    hipw = 0.7 * smoothstep(y, 0.0, jt["hip"][1] - 0.02) * smoothstep(ax, 0.02, 0.10)
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
def ring_row(geo: BodyGeometry, part: str, target: np.ndarray) -> np.ndarray:
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


def joint_regressor(geo: BodyGeometry, mirror: np.ndarray) -> np.ndarray:
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
        reg[joint] = ring_row(geo, part, jt[name])
        if FLIP_PERM_SMPL[joint] != joint:
            reg[FLIP_PERM_SMPL[joint]] = reg[joint][mirror]
    return reg


def extra_regressor(geo: BodyGeometry, mirror: np.ndarray) -> np.ndarray:
    """(9, 6890) SPIN's extra joints: R hip, L hip, neck (LSP), head top (LSP), pelvis (MPII),
    thorax (MPII), spine (H36M), jaw (H36M), head (H36M)."""
    jt = geo.joints
    extra = np.zeros((9, NUM_VERTICES))
    # LSP-style hips sit lower and more lateral than SMPL's: a ring below the hip, biased outwards.
    row = ring_row(geo, "leg", jt["hip"] + np.array([0.0, -0.04, 0.0]))
    ids = np.nonzero(row)[0]
    lateral = geo.verts[ids, 0] - geo.verts[ids, 0].mean()
    row[ids] *= 1.0 + 0.6 * lateral / np.abs(lateral).max()
    extra[1] = row / row.sum()
    extra[0] = extra[1][mirror]
    extra[2] = ring_row(geo, "neck", jt["neck"] + np.array([0.0, -0.03, 0.0]))
    head = geo.parts["head"]
    top_ring = geo.ids("head", head.ring_ids(head.n_rings - 1))
    extra[3, geo.ids("head", head.end_apex)] = 0.6
    extra[3, top_ring] = 0.4 / len(top_ring)
    extra[4] = ring_row(geo, "torso", np.array([0.0, -0.04, 0.0]))
    extra[5] = ring_row(geo, "torso", np.array([0.0, jt["collar"][1] + 0.02, 0.0]))
    extra[6] = ring_row(geo, "torso", np.array([0.0, 0.5 * (jt["spine1"][1] + jt["spine3"][1]), 0.0]))
    # Jaw: the front half of the head ring at chin height (symmetric, so it stays on the midline).
    chin_y = geo.head_center[1] - 0.7 * geo.head_radii[1]
    k = int(np.argmin(np.abs(head.ring_centers[:, 1] - chin_y)))
    ring = head.ring_ids(k)
    n = head.n_around
    front = ring[(np.arange(n) <= n // 8) | (np.arange(n) >= n - n // 8)]
    extra[7, geo.ids("head", front)] = 1.0 / len(front)
    extra[8] = ring_row(geo, "head", geo.head_center)
    return extra


# ---------------------------------------------------------------------------- special vertices
def special_vertices(geo: BodyGeometry) -> dict[str, int]:
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


def vertex_order(mirror: np.ndarray, special: dict[str, int]) -> np.ndarray:
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


def pose_correctives(template: np.ndarray, weights: np.ndarray, joints: np.ndarray) -> np.ndarray:
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


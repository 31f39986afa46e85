"""Mesh building blocks of the synthetic body: closed tubes swept along smooth axes, and their mirrors."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import PchipInterpolator


def smoothstep(x: np.ndarray, a: float, b: float) -> np.ndarray:
    """0 at a, 1 at b, smooth in between (a > b allowed)."""
    t = np.clip((x - a) / (b - a), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def normalize(v: np.ndarray) -> np.ndarray:
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


def tube(
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
    tangents = normalize(tangent_of(ring_s))
    hint = np.broadcast_to(np.asarray(e1, dtype=np.float64), tangents.shape)
    axis1 = normalize(hint - (hint * tangents).sum(-1, keepdims=True) * tangents)
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


def mirror_tube(t: Tube, name: str) -> Tube:
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


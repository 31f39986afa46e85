"""Colour-coded body-part renders: a vectorised numpy z-buffer rasteriser for small images.

Every vertex belongs to the body part whose skinning weight is largest; every part has its own
colour, with left and right limbs in different colours (warm left, cool right): the colours tell
the body's left from its right, and so its front from its back, which the silhouette alone cannot.
That cue holds only without flip augmentation: a mirrored image shows the left limbs' warm colours on
limbs its (mirrored) label calls right, so flipping teaches the network that colour means nothing
(the synthetic configs set `data.augment.flip_prob: 0`). Faces are flat-shaded
by their normal against a fixed light so the limbs read as 3D. Pixels are sampled at their centres
(pixel i covers the continuous range [i, i+1)), the convention of the keypoints and of the crops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# One colour per SMPL part (the segment each joint's skinning weight moves), RGB. Left side warm,
# right side cool, the spine and head neutral/light; neighbouring parts differ in hue or lightness.
PART_PALETTE = np.array(
    [
        [235, 235, 235],  # 0 pelvis
        [230, 40, 40],  # 1 left thigh
        [40, 90, 230],  # 2 right thigh
        [250, 250, 120],  # 3 spine (lower back)
        [250, 140, 30],  # 4 left shin
        [30, 200, 230],  # 5 right shin
        [205, 170, 110],  # 6 spine (middle)
        [140, 20, 20],  # 7 left foot
        [20, 40, 140],  # 8 right foot
        [160, 225, 110],  # 9 chest
        [255, 90, 160],  # 10 left toes
        [90, 230, 180],  # 11 right toes
        [150, 100, 60],  # 12 neck
        [180, 60, 200],  # 13 left collar
        [40, 160, 60],  # 14 right collar
        [245, 215, 175],  # 15 head
        [255, 110, 60],  # 16 left upper arm
        [60, 140, 255],  # 17 right upper arm
        [255, 210, 0],  # 18 left forearm
        [0, 215, 120],  # 19 right forearm
        [200, 0, 100],  # 20 left hand
        [100, 0, 200],  # 21 right hand
        [255, 120, 200],  # 22 left fingers
        [120, 200, 255],  # 23 right fingers
    ],
    dtype=np.uint8,
)

# Light direction in camera coordinates (x right, y down, z forward): from the upper left, in front.
_LIGHT = np.array([-0.35, -0.55, -0.76])
_LIGHT = _LIGHT / np.linalg.norm(_LIGHT)


@dataclass
class RenderStyle:
    """Shading and background knobs of `render_parts` / `noisy_background`.

    ambient + diffuse·max(0, n·light) scales each face's part colour; `person_noise` is the std (grey
    levels) of pixel noise on the person; the background is a random muted colour between
    `background_range` grey levels, tinted by up to ±`background_tint`, with a linear gradient and
    Gaussian noise of std `background_noise`.
    """

    ambient: float = 0.6
    diffuse: float = 0.4
    person_noise: float = 3.0
    background_range: tuple[float, float] = (25.0, 115.0)
    background_tint: float = 20.0
    background_gradient: float = 20.0
    background_noise: float = 9.0


def vertex_parts(lbs_weights: np.ndarray) -> np.ndarray:
    """Part id of each vertex: the joint with the largest skinning weight. (V, 24) -> (V,) int64."""
    return np.asarray(lbs_weights).argmax(axis=1).astype(np.int64)


def face_parts(faces: np.ndarray, parts_of_vertices: np.ndarray) -> np.ndarray:
    """Part id of each face (F,): its first vertex's part unless the other two agree on another."""
    p = parts_of_vertices[np.asarray(faces)]
    return np.where(p[:, 1] == p[:, 2], p[:, 1], p[:, 0])


def rasterize(points: np.ndarray, faces: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Nearest face per pixel of a size×size image.

    points (V, 3): pixel x, pixel y (continuous, pixel i spans [i, i+1)) and depth (> 0 in front of
    the camera); faces (F, 3) vertex indices. Returns face_index (size, size) int64 (−1 where no
    face covers the pixel centre) and depth (size, size) float64 (inf on background). Fully
    vectorised: every face's bounding box of pixel centres is enumerated at once, inside pixels are
    kept by their barycentric coordinates, and a sort per pixel keeps the nearest one.
    """
    points = np.asarray(points, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    face_index = np.full(size * size, -1, dtype=np.int64)
    depth_map = np.full(size * size, np.inf)
    tri = points[faces]  # (F, 3, 3)
    x, y, z = tri[..., 0], tri[..., 1], tri[..., 2]
    # Bounding box in pixel indices whose centres i + 0.5 can fall inside the triangle. (Element-wise
    # min/max over the three columns: numpy's axis reductions are slow on such narrow arrays.)
    x0 = np.maximum(np.ceil(_min3(x) - 0.5), 0).astype(np.int64)
    x1 = np.minimum(np.floor(_max3(x) - 0.5), size - 1).astype(np.int64)
    y0 = np.maximum(np.ceil(_min3(y) - 0.5), 0).astype(np.int64)
    y1 = np.minimum(np.floor(_max3(y) - 0.5), size - 1).astype(np.int64)
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
    keep = (x1 >= x0) & (y1 >= y0) & (np.abs(area) > 1e-12) & (_min3(z) > 0)
    ids = np.flatnonzero(keep)
    if ids.size == 0:
        return face_index.reshape(size, size), depth_map.reshape(size, size)
    x, y, z, area = x[ids], y[ids], z[ids], area[ids]
    x0, y0 = x0[ids], y0[ids]
    width = x1[ids] - x0 + 1
    count = width * (y1[ids] - y0 + 1)
    # Edge functions per face, normalised by the signed area (either winding order works):
    # w_k(p) = (a_k·px + b_k·py + c_k) / area for the edge opposite vertex k.
    xa, xb = x[:, [1, 2, 0]], x[:, [2, 0, 1]]
    ya, yb = y[:, [1, 2, 0]], y[:, [2, 0, 1]]
    inv_area = 1.0 / area[:, None]
    a = (ya - yb) * inv_area
    b = (xb - xa) * inv_area
    c = (xa * yb - xb * ya) * inv_area
    owner = np.repeat(np.arange(ids.size), count)
    local = np.arange(owner.size) - np.repeat(np.cumsum(count) - count, count)
    px = x0[owner] + local % width[owner]
    py = y0[owner] + local // width[owner]
    cx, cy = px + 0.5, py + 0.5
    bary = a[owner] * cx[:, None] + b[owner] * cy[:, None] + c[owner]  # (K, 3)
    # A small negative tolerance closes cracks between neighbouring faces from rounding.
    inside = (bary[:, 0] >= -1e-9) & (bary[:, 1] >= -1e-9) & (bary[:, 2] >= -1e-9)
    owner, px, py, bary = owner[inside], px[inside], py[inside], bary[inside]
    zo = z[owner]
    depth = bary[:, 0] * zo[:, 0] + bary[:, 1] * zo[:, 1] + bary[:, 2] * zo[:, 2]
    pixel = py * size + px
    # One sort by pixel, then depth: the depth, squeezed into [0, 0.5), is the fractional part.
    span = max(float(depth.max() - depth.min()), 1e-12)
    order = np.argsort(pixel + 0.5 * (depth - depth.min()) / span * (1.0 - 1e-9))
    pixel, owner, depth = pixel[order], owner[order], depth[order]
    first = np.ones(pixel.size, dtype=bool)
    first[1:] = pixel[1:] != pixel[:-1]
    face_index[pixel[first]] = ids[owner[first]]
    depth_map[pixel[first]] = depth[first]
    return face_index.reshape(size, size), depth_map.reshape(size, size)


def _min3(v: np.ndarray) -> np.ndarray:
    return np.minimum(np.minimum(v[:, 0], v[:, 1]), v[:, 2])


def _max3(v: np.ndarray) -> np.ndarray:
    return np.maximum(np.maximum(v[:, 0], v[:, 1]), v[:, 2])


def face_shading(vertices: np.ndarray, faces: np.ndarray, style: RenderStyle | None = None) -> np.ndarray:
    """Brightness (F,) of each face lit by a fixed light, normals turned towards the camera.

    vertices (V, 3) in camera coordinates (metres, camera at the origin looking down +z).
    """
    style = style or RenderStyle()
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    v0, v1, v2 = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    e1, e2 = v1 - v0, v2 - v0
    # cross product written out (np.cross is slow on many small vectors)
    nx = e1[:, 1] * e2[:, 2] - e1[:, 2] * e2[:, 1]
    ny = e1[:, 2] * e2[:, 0] - e1[:, 0] * e2[:, 2]
    nz = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    norm = np.sqrt(nx * nx + ny * ny + nz * nz) + 1e-12
    # Visible faces face the camera: orient every normal against the viewing ray (from the camera
    # to the face) so the result does not depend on the mesh's winding convention.
    sign = -np.sign(nx * v0[:, 0] + ny * v0[:, 1] + nz * v0[:, 2]) / norm
    lit = sign * (nx * _LIGHT[0] + ny * _LIGHT[1] + nz * _LIGHT[2])
    return style.ambient + style.diffuse * np.clip(lit, 0.0, None)


def noisy_background(size: int, rng: np.random.Generator, style: RenderStyle | None = None) -> np.ndarray:
    """A plain random muted colour with a linear gradient and pixel noise, (size, size, 3) float32."""
    style = style or RenderStyle()
    tint = rng.uniform(-style.background_tint, style.background_tint, 3)
    base = rng.uniform(*style.background_range) + tint
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction) + 1e-12
    ramp = np.linspace(-0.5, 0.5, size)
    gradient = style.background_gradient * (direction[0] * ramp[None, :] + direction[1] * ramp[:, None])
    image = rng.standard_normal((size, size, 3), dtype=np.float32) * np.float32(style.background_noise)
    image += (base[None, None, :] + gradient[..., None]).astype(np.float32)
    return image


def render_parts(
    vertices: np.ndarray,
    faces: np.ndarray,
    parts: np.ndarray,
    focal_length: float,
    center: np.ndarray,
    size: int,
    rng: np.random.Generator,
    style: RenderStyle | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one body as a colour-coded part image on a noisy background.

    vertices (V, 3) camera coordinates (metres, +z forward, x right, y down); faces (F, 3); parts
    (F,) part id per face (`face_parts`); pinhole camera with `focal_length` pixels and principal
    point `center` (2,) pixels. Returns image (size, size, 3) uint8 and part_map (size, size) int8
    (part id, −1 on background).
    """
    style = style or RenderStyle()
    vertices = np.asarray(vertices, dtype=np.float64)
    depth = vertices[:, 2]
    pixels = focal_length * vertices[:, :2] / depth[:, None] + np.asarray(center, dtype=np.float64)
    face_index, _ = rasterize(np.concatenate([pixels, depth[:, None]], axis=1), faces, size)
    covered = face_index >= 0
    image = noisy_background(size, rng, style)
    hit = face_index[covered]
    # shade only the faces that are seen
    visible, hit_visible = np.unique(hit, return_inverse=True)
    shading = face_shading(vertices, np.asarray(faces)[visible], style)[hit_visible]
    colour = PART_PALETTE[parts[hit]].astype(np.float32) * shading[:, None].astype(np.float32)
    image[covered] = colour + rng.normal(0.0, style.person_noise, colour.shape)
    part_map = np.full((size, size), -1, dtype=np.int8)
    part_map[covered] = parts[hit]
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), part_map

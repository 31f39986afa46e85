"""NBF's input representations (Omran et al. 2018) of one synthetic render, as network input channels.

Every representation derives from the same two things the renderer already gives for a person:
the 24-part label map of `spin.data.render.render_parts` (SMPL part per pixel, −1 background;
each vertex's part is its largest skinning weight) and the sample's keypoints. So whichever is
chosen, the person, camera and keypoints are identical — only what the network sees changes:

    rgb           the shaded render itself (3 channels): each SMPL part in its own colour
    textured      NBF's RGB-like image (3 channels): the render's shading under a plausible texture
                  (skin, shirt, trousers, shoes, a striped fabric) on a cluttered background
    silhouette    1 channel: the union of all parts
    parts3/6/12/24  one-hot part channels of NBF's groupings of SMPL's 24 parts
    heatmaps14/24   one Gaussian per joint: the 14 LSP joints, or SPIN's 24 ground-truth joints

NBF shows inputs with 1, 3, 6, 12 and 24 parts but does not tabulate its merges; the groupings
below are nested (each one's parts are unions of the next finer one's, down to SMPL's 24), which
keeps an ablation across them a pure change of granularity.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from spin.data.crop import crop_matrix
from spin.data.render import PART_PALETTE
from spin.errors import UserError
from spin.joints import FLIP_PERM_SMPL, NUM_OPENPOSE, SMPL_JOINT_NAMES

# (name, SMPL parts) per group. SMPL part j is the segment moved by joint j (SMPL_JOINT_NAMES).
_HEAD = (12, 15)
_TORSO = (0, 3, 6, 9, 13, 14)
_LEFT_ARM, _RIGHT_ARM = (16, 18, 20, 22), (17, 19, 21, 23)
_LEFT_LEG, _RIGHT_LEG = (1, 4, 7, 10), (2, 5, 8, 11)
PART_GROUPS: dict[int, tuple[tuple[str, tuple[int, ...]], ...]] = {
    1: (("body", tuple(range(24))),),
    3: (("head", _HEAD), ("upper_body", _TORSO + _LEFT_ARM + _RIGHT_ARM), ("legs", _LEFT_LEG + _RIGHT_LEG)),
    6: (("head", _HEAD), ("torso", _TORSO), ("left_arm", _LEFT_ARM), ("right_arm", _RIGHT_ARM),
        ("left_leg", _LEFT_LEG), ("right_leg", _RIGHT_LEG)),
    12: (("head", _HEAD), ("torso", _TORSO),
         ("left_upper_arm", (16,)), ("right_upper_arm", (17,)),
         ("left_forearm", (18,)), ("right_forearm", (19,)),
         ("left_hand", (20, 22)), ("right_hand", (21, 23)), ("left_thigh", (1,)), ("right_thigh", (2,)),
         ("left_lower_leg", (4, 7, 10)), ("right_lower_leg", (5, 8, 11))),
    24: tuple((name, (j,)) for j, name in enumerate(SMPL_JOINT_NAMES)),
}

# Heatmap joints as indices into SPIN's 49 keypoints: the 24 ground-truth joints, whose first 14
# are LSP's 14 in LSP order (ankles … wrists, neck, top of head).
HEATMAP_JOINTS: dict[int, np.ndarray] = {14: NUM_OPENPOSE + np.arange(14), 24: NUM_OPENPOSE + np.arange(24)}

REPRESENTATIONS: tuple[str, ...] = ("rgb", "textured", "silhouette", "parts3", "parts6", "parts12", "parts24",
                                    "heatmaps14", "heatmaps24")
HEATMAP_SIGMA_FRACTION = 1.0 / 64.0  # Gaussian std as a share of the image side (3.5 px at 224)
IMAGE_REPRESENTATIONS = ("rgb", "textured")  # 3-channel photos-like inputs: ImageNet-normalised, noisy
PART_MAP_SUFFIX = "_parts.png"  # beside each synthetic image: mode L, label + 1, 0 = background


def part_map_name(imgname: str) -> str:
    """The part-map file of an image (relative path as in the npz's `imgname`): `<stem>_parts.png`."""
    stem, _, _ = str(imgname).rpartition(".")
    return f"{stem or imgname}{PART_MAP_SUFFIX}"


def encode_part_map(part_map: np.ndarray) -> Image.Image:
    """A 24-part label map (H,W) (−1 background) as the mode-L image stored beside the render."""
    return Image.fromarray((np.asarray(part_map).astype(np.int16) + 1).astype(np.uint8), mode="L")


def decode_part_map(image: Image.Image) -> np.ndarray:
    """The stored mode-L part image back to labels (H,W) int8 (−1 background)."""
    return (np.asarray(image.convert("L")).astype(np.int16) - 1).astype(np.int8)


def group_table(n_parts: int) -> np.ndarray:
    """(24,) int64: the group id of each SMPL part in the `n_parts` grouping (1, 3, 6, 12 or 24)."""
    if n_parts not in PART_GROUPS:
        raise ValueError(f"no {n_parts}-part grouping; choose one of {sorted(PART_GROUPS)}")
    table = np.full(24, -1, dtype=np.int64)
    for group, (_, parts) in enumerate(PART_GROUPS[n_parts]):
        table[list(parts)] = group
    return table


def group_parts(part_map: np.ndarray, n_parts: int) -> np.ndarray:
    """A 24-part label map (H,W) (−1 background) relabelled into `n_parts` groups, int64 (−1 background)."""
    part_map = np.asarray(part_map).astype(np.int64)
    lookup = np.append(group_table(n_parts), -1)  # index −1 reads the appended background
    return lookup[part_map]


def flip_part_map(part_map: np.ndarray) -> np.ndarray:
    """Mirror a 24-part label map (H,W) left-right: columns reversed and left/right parts swapped."""
    part_map = np.asarray(part_map)
    lookup = np.append(FLIP_PERM_SMPL, -1).astype(part_map.dtype)
    return np.ascontiguousarray(lookup[part_map.astype(np.int64)][:, ::-1])


def crop_part_map(part_map: np.ndarray, center: np.ndarray, scale: float, res: int, rot_deg: float = 0.0,
                  flip: bool = False) -> np.ndarray:
    """The person crop of a 24-part label map, as `spin.data.augment.crop_image` crops the image.

    Same affine (`crop_matrix`) and pixel-centre convention, but nearest-neighbour (labels do not
    blend), background (−1) outside the image, and a flip that also swaps left and right parts.
    Returns (res, res) int8.
    """
    labels = encode_part_map(part_map)
    matrix = crop_matrix(center, scale, res, rot_deg)
    linear_inv = np.linalg.inv(matrix[:, :2])
    offset_inv = -linear_inv @ matrix[:, 2]
    coefficients = (*linear_inv[0], offset_inv[0], *linear_inv[1], offset_inv[1])
    out = np.asarray(labels.transform((res, res), Image.Transform.AFFINE, coefficients,
                                      resample=Image.Resampling.NEAREST, fillcolor=0)).astype(np.int8) - 1
    return flip_part_map(out) if flip else out


def silhouette(part_map: np.ndarray) -> np.ndarray:
    """(H,W) bool: pixels covered by any part."""
    return np.asarray(part_map) >= 0


def one_hot(labels: np.ndarray, n: int) -> np.ndarray:
    """Label map (H,W) with values in [−1, n) → (n,H,W) float32 channels (background: all zero)."""
    labels = np.asarray(labels)
    return (labels[None] == np.arange(n)[:, None, None]).astype(np.float32)


def joint_heatmaps(keypoints: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """One Gaussian per keypoint (J,3) (pixel x, y, confidence) on a size×size grid → (J,size,size) float32.

    Pixel i spans [i, i+1), so the Gaussian is sampled at pixel centres and peaks (value 1) at the
    pixel holding the keypoint; a keypoint with confidence 0 gets an all-zero channel.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    centres = np.arange(size) + 0.5
    gx = np.exp(-((centres[None, :] - keypoints[:, :1]) ** 2) / (2.0 * sigma ** 2))  # (J, W)
    gy = np.exp(-((centres[None, :] - keypoints[:, 1:2]) ** 2) / (2.0 * sigma ** 2))  # (J, H)
    maps = gy[:, :, None] * gx[:, None, :]
    return (maps * (keypoints[:, 2] > 0)[:, None, None]).astype(np.float32)


def representation_channels(kind: str) -> int:
    """Input channels of a representation (3 for rgb, 1 for silhouette, the part or joint count otherwise)."""
    check_representation(kind)
    if kind in IMAGE_REPRESENTATIONS:
        return 3
    if kind == "silhouette":
        return 1
    return int(kind.removeprefix("parts").removeprefix("heatmaps"))


def check_representation(kind: str) -> str:
    """`kind` if it is one of REPRESENTATIONS, else a UserError naming the config key."""
    if kind not in REPRESENTATIONS:
        raise UserError(f"Config key data.synthetic.representation is {kind!r}; set it to one of "
                        f"{', '.join(REPRESENTATIONS)}.")
    return kind


def representation_input(kind: str, image: np.ndarray, part_map: np.ndarray, keypoints: np.ndarray,
                         sigma: float | None = None, seed: int = 0) -> np.ndarray:
    """The network input (C,H,W) float32 in [0, 1] of one sample in representation `kind`.

    image (H,W,3) uint8 the RGB render; part_map (H,W) its 24-part labels (−1 background), both of
    the same crop; keypoints (49,3) SPIN's keypoints in that crop's pixels (only the 24 ground-truth
    ones are read, for heatmaps). sigma: heatmap std in pixels (default HEATMAP_SIGMA_FRACTION·H);
    seed: the textured person's clothes and background (e.g. the dataset row).
    """
    check_representation(kind)
    if kind == "textured":
        image = textured_image(image, part_map, seed)
    if kind in IMAGE_REPRESENTATIONS:
        return np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1), dtype=np.float32) / 255.0
    if kind == "silhouette":
        return silhouette(part_map)[None].astype(np.float32)
    n = representation_channels(kind)
    if kind.startswith("parts"):
        return one_hot(group_parts(part_map, n), n)
    size = np.asarray(part_map).shape[0]
    sigma = sigma if sigma is not None else HEATMAP_SIGMA_FRACTION * size
    return joint_heatmaps(np.asarray(keypoints)[HEATMAP_JOINTS[n]], size, sigma)


# textured: clothing regions as SMPL parts (forearms bare or sleeved per person), and skin tones.
TEXTURE_STREAM = 0x7E47  # mixed into each row's seed: its clothes and clutter, apart from other streams
_SKIN = (12, 15, 20, 21, 22, 23)
_SHIRT = (3, 6, 9, 13, 14, 16, 17)
_FOREARMS = (18, 19)
_TROUSERS = (0, 1, 2, 4, 5)
_SHOES = (7, 8, 10, 11)
SKIN_TONES = np.array([[255, 219, 172], [241, 194, 125], [224, 172, 105], [198, 134, 66], [141, 85, 36],
                       [92, 59, 36]], dtype=np.float32)
CLUTTER_SHAPES = 14


def render_shading(image: np.ndarray, part_map: np.ndarray) -> np.ndarray:
    """(H,W) float32: the render's brightness per body pixel, its colour over its part's palette colour
    (0 on the background). image (H,W,3) the colour-coded render, part_map (H,W) its labels."""
    parts = np.asarray(part_map).astype(np.int64)
    palette = PART_PALETTE.astype(np.float32)[np.maximum(parts, 0)].sum(-1)
    shade = np.asarray(image, dtype=np.float32).sum(-1) / np.maximum(palette, 1.0)
    return np.where(parts >= 0, shade, 0.0).astype(np.float32)


def clutter(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size,size,3) float32: a random base colour under overlapping random rectangles and ellipses."""
    out = np.broadcast_to(rng.uniform(30, 220, 3), (size, size, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    for _ in range(CLUTTER_SHAPES):
        cx, cy = rng.uniform(0, size, 2)
        rx, ry = rng.uniform(0.05, 0.35, 2) * size
        if rng.random() < 0.5:
            mask = (np.abs(xx - cx) < rx) & (np.abs(yy - cy) < ry)
        else:
            mask = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1.0
        out[mask] = rng.uniform(0, 255, 3)
    return out + rng.normal(0.0, 6.0, out.shape).astype(np.float32)


def textured_image(image: np.ndarray, part_map: np.ndarray, seed: int) -> np.ndarray:
    """NBF's RGB-like input (H,W,3) uint8 of a colour-coded render (H,W,3) and its part map (H,W):
    the same shading and silhouette, the person in clothes (skin tone, shirt, trousers, shoes and a
    striped fabric, drawn per `seed`, e.g. the dataset row) on a cluttered background."""
    rng = np.random.default_rng([int(seed), TEXTURE_STREAM])
    parts = np.asarray(part_map).astype(np.int64)
    size = parts.shape[0]
    colours = np.zeros((24, 3), np.float32)
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))]
    shirt = rng.uniform(20, 235, 3)
    colours[list(_SKIN)] = skin
    colours[list(_SHIRT)] = shirt
    colours[list(_FOREARMS)] = shirt if rng.random() < 0.5 else skin
    colours[list(_TROUSERS)] = rng.uniform(15, 200, 3)
    colours[list(_SHOES)] = rng.uniform(10, 90, 3)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    angle, period = rng.uniform(0, np.pi), rng.uniform(3, 10) * size / 64
    stripes = 1.0 + 0.15 * np.sign(np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period))
    fabric = np.where(np.isin(parts, _SHIRT + _TROUSERS), stripes, 1.0)
    person = colours[np.maximum(parts, 0)] * (render_shading(image, parts) * fabric)[..., None]
    out = np.where((parts >= 0)[..., None], person, clutter(size, rng))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)

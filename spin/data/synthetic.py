"""A synthetic SPIN-format dataset: random people from a body model, rendered as colour-coded body parts.

Each image is its own SPIN crop: the person box is the whole image (center (S/2, S/2), scale
S/200), so the 224-px crop of the box is the image resized, and the rendering camera (focal
5000·S/224, principal point at the image centre) is exactly SMPLify's camera in the 224 crop
(focal 5000, principal point (112, 112)). The ground-truth (pose, betas) with the ground-truth
translation therefore reprojects onto the keypoints with zero error. The box is not a perfect fit
of the person: the body fills a random 70–90 % of it and its centre is offset by a few percent,
as detector boxes are.

Files: `<out>/synthetic_train.npz`, `<out>/synthetic_test.npz` (SPIN's keys: imgname, center,
scale, part, openpose, pose, shape, has_smpl, S), images `<out>/images/<split>/<i>.png` (imgname
is relative to `<out>`), `<out>/synthetic_<split>_truth.npz` with every row's true `pose` and
`shape` (also of the rows whose ground truth the split hides: `hidden_truth` reads it, to score
fits against it; training never does), and `<out>/synthetic_meta.json` with the generation
parameters. Everything is a deterministic function of the seed and the parameters.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from spin.body.pose_sampler import sample_body_pose
from spin.camera import CROP_RES, FOCAL_LENGTH
from spin.data.render import RenderStyle, face_parts, render_parts, vertex_parts
from spin.data.representations import encode_part_map, part_map_name
from spin.data.spin_format import save_spin_npz
from spin.errors import UserError
from spin.geometry import matrix_to_axis_angle
from spin.joints import NUM_OPENPOSE

META_NAME = "synthetic_meta.json"
META_VERSION = 2  # 2: every image has its 24-part label map beside it (NBF representations)
SPLITS = ("train", "test")


@dataclass
class SynthConfig:
    """Fine knobs of the synthetic dataset (the sizes, seed and GT fraction are arguments).

    keypoint_noise_px: std of the OpenPose keypoints' Gaussian noise in 224-crop pixels;
    occlusion_prob: chance an OpenPose keypoint is missing (confidence 0, x = y = 0); other
    confidences ~ U(min_confidence, 1). fill_range: fraction of the box side the body's larger
    extent fills; center_jitter: max offset of the body centre from the box centre, as a fraction of
    the box side. Orientation: yaw ~ U(±yaw_range_deg) about the vertical, pitch ~ N(0,
    pitch_std_deg) and roll ~ N(0, roll_std_deg) both clipped to ±tilt_max_deg. betas ~ N(0,
    betas_std) clipped to ±betas_clip. joints3d_for_all: `S` for every row (SPIN's layout for a 3D
    dataset); False keeps it only where `has_smpl` (other rows all zero), so those rows get no 3D
    supervision at all and must learn from fits. image_format: "png" (lossless) or "jpg".
    """

    keypoint_noise_px: float = 2.5
    occlusion_prob: float = 0.1
    min_confidence: float = 0.5
    fill_range: tuple[float, float] = (0.7, 0.9)
    center_jitter: float = 0.05
    yaw_range_deg: float = 180.0
    pitch_std_deg: float = 8.0
    roll_std_deg: float = 5.0
    tilt_max_deg: float = 20.0
    betas_std: float = 1.0
    betas_clip: float = 2.5
    joints3d_for_all: bool = True
    image_format: str = "png"
    batch_size: int = 64
    style: RenderStyle = field(default_factory=RenderStyle)


@dataclass
class SplitSamples:
    """One split's drawn ground truth (float32): pose (N, 72), betas (N, 10), fill (N,), offset (N, 2)."""

    pose: np.ndarray
    betas: np.ndarray
    fill: np.ndarray
    offset: np.ndarray


def _axis_rotation(axis: int, radians: np.ndarray) -> np.ndarray:
    """(N,) angles -> (N, 3, 3) rotations about coordinate axis `axis`."""
    c, s = np.cos(radians), np.sin(radians)
    m = np.zeros((len(radians), 3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    m[:, axis, axis] = 1.0
    m[:, i, i] = c
    m[:, j, j] = c
    m[:, i, j] = -s
    m[:, j, i] = s
    return m


def sample_global_orient(n: int, rng: np.random.Generator, config: SynthConfig) -> np.ndarray:
    """(n, 3) axis-angle global orientations: upright in the camera (y down), any yaw, small pitch/roll.

    The body model's frame has y up and the body facing +z; a 180° turn about x puts it upright in
    the camera frame facing the camera, after a yaw about the body's vertical and a small tilt.
    """
    yaw = np.deg2rad(rng.uniform(-config.yaw_range_deg, config.yaw_range_deg, n))
    tilt = np.deg2rad(config.tilt_max_deg)
    pitch = np.clip(np.deg2rad(rng.normal(0.0, config.pitch_std_deg, n)), -tilt, tilt)
    roll = np.clip(np.deg2rad(rng.normal(0.0, config.roll_std_deg, n)), -tilt, tilt)
    upright = np.diag([1.0, -1.0, -1.0])
    matrix = upright @ _axis_rotation(0, pitch) @ _axis_rotation(2, roll) @ _axis_rotation(1, yaw)
    return matrix_to_axis_angle(torch.from_numpy(matrix)).numpy().astype(np.float32)


def sample_split(n: int, rng: np.random.Generator, config: SynthConfig) -> SplitSamples:
    """Draw the people and their placement for n images."""
    orient = sample_global_orient(n, rng, config)
    # sample_body_pose cannot draw 0 poses (its reshape fails); an empty split needs none.
    body_pose = sample_body_pose(n, rng) if n else np.zeros((0, 69), np.float32)
    betas = np.clip(rng.normal(0.0, config.betas_std, (n, 10)), -config.betas_clip, config.betas_clip)
    fill = rng.uniform(*config.fill_range, n)
    offset = rng.uniform(-config.center_jitter, config.center_jitter, (n, 2))
    return SplitSamples(pose=np.concatenate([orient, body_pose], axis=1).astype(np.float32),
                        betas=betas.astype(np.float32), fill=fill.astype(np.float32),
                        offset=offset.astype(np.float32))


def place_camera(vertices: np.ndarray, fill: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Camera translations (B, 3) putting each body in its box: larger extent = fill·box, centre + offset·box.

    vertices (B, V, 3) in the camera orientation (before translation). At focal 5000 in the 224
    crop the camera is ~50 m away, so the projected extent is the metric extent · 5000 / depth.
    """
    lo, hi = vertices.min(1), vertices.max(1)
    mid = (lo + hi) / 2.0
    side = (hi - lo)[:, :2].max(1)
    depth = FOCAL_LENGTH * side / (fill * CROP_RES)
    t = np.empty((len(vertices), 3))
    t[:, :2] = -mid[:, :2] + offset * CROP_RES * depth[:, None] / FOCAL_LENGTH
    t[:, 2] = depth - mid[:, 2]
    return t


def project_crop(points: np.ndarray) -> np.ndarray:
    """Camera-frame points (..., 3) -> 224-crop pixels (..., 2): focal 5000, principal point (112, 112)."""
    return FOCAL_LENGTH * points[..., :2] / points[..., 2:3] + CROP_RES / 2.0


def make_keypoints(joints_cam: np.ndarray, image_size: int, rng: np.random.Generator,
                   config: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
    """SPIN's `openpose` (B, 25, 3) and `part` (B, 24, 3) in image pixels from camera-frame joints (B, 49, 3).

    part: exact projections, visibility 1 inside the image. openpose: projections plus Gaussian
    noise, missing (all zero) with probability occlusion_prob or outside the image, otherwise a
    confidence in [min_confidence, 1].
    """
    to_image = image_size / CROP_RES
    xy = project_crop(joints_cam) * to_image  # (B, 49, 2)
    inside = ((xy >= 0) & (xy < image_size)).all(-1)
    part = np.concatenate([xy[:, NUM_OPENPOSE:], inside[:, NUM_OPENPOSE:, None]], axis=-1)
    batch = len(xy)
    noise = rng.normal(0.0, config.keypoint_noise_px * to_image, (batch, NUM_OPENPOSE, 2))
    noisy = xy[:, :NUM_OPENPOSE] + noise
    conf = rng.uniform(config.min_confidence, 1.0, (batch, NUM_OPENPOSE))
    seen = ((noisy >= 0) & (noisy < image_size)).all(-1) & (rng.uniform(size=(batch, NUM_OPENPOSE))
                                                             >= config.occlusion_prob)
    openpose = np.concatenate([noisy, conf[..., None]], axis=-1) * seen[..., None]
    return openpose.astype(np.float32), part.astype(np.float32)


def _meta(body: Any, n_train: int, n_test: int, image_size: int, seed: int, gt_fraction: float,
          config: SynthConfig) -> dict:
    # a cheap fingerprint of the mesh, so a regenerated body model is not mistaken for the old one
    fingerprint = [float(np.asarray(body.faces).sum()), round(float(body.v_template.double().sum()), 6),
                   round(float(body.lbs_weights.double().sum()), 6)]
    return {"version": META_VERSION, "body_model": str(getattr(body, "source", "")),
            "body_fingerprint": fingerprint, "n_train": n_train,
            "n_test": n_test, "image_size": image_size, "seed": seed, "gt_fraction": gt_fraction,
            "config": json.loads(json.dumps(asdict(config)))}


def _existing(out_dir: Path, meta: dict, sizes: dict[str, int]) -> dict[str, Path] | None:
    """The split files of a previous identical generation in out_dir, or None."""
    meta_path = out_dir / META_NAME
    try:
        if json.loads(meta_path.read_text()) != meta:
            return None
    except (OSError, ValueError):
        return None
    paths = {split: out_dir / f"synthetic_{split}.npz" for split in SPLITS}
    if not all(p.is_file() for p in paths.values()):
        return None
    ext = meta["config"]["image_format"]
    for split, n in sizes.items():
        last = f"images/{split}/{n - 1:06d}.{ext}"
        if n and not ((out_dir / last).is_file() and (out_dir / part_map_name(last)).is_file()):
            return None
    return paths


def synthesize_dataset(out_dir: str | Path, body: Any, n_train: int = 1000, n_test: int = 200,
                       image_size: int = 128, seed: int = 0, gt_fraction: float = 0.2,
                       config: SynthConfig | None = None, progress: bool = True,
                       reuse: bool = False) -> dict[str, Path]:
    """Render a synthetic SPIN-format dataset; returns {"train": npz path, "test": npz path}.

    body: a `spin.body.BodyModel` (its faces, skinning weights and forward). gt_fraction: share of
    train rows that keep their SMPL ground truth (`has_smpl` = 1; the rest store zero pose/shape);
    every test row keeps it. `S` (N, 24, 4) holds the 24 ground-truth joints in the camera frame
    (metres, confidence 1) for every row (only the has_smpl rows when config.joints3d_for_all is
    False). With reuse=True an identical earlier generation in out_dir (same parameters and body
    model) is returned without rendering again.
    """
    config = config or SynthConfig()
    out_dir = Path(out_dir)
    if image_size < 16:
        raise UserError(f"--image-size {image_size} is too small to show a person; use 64 or more.")
    if not 0.0 <= gt_fraction <= 1.0:
        raise UserError(f"--gt-fraction {gt_fraction} must be between 0 and 1.")
    if n_train < 0 or n_test < 0 or n_train + n_test == 0:
        raise UserError(f"--train {n_train} / --test {n_test}: give non-negative sizes, not both 0.")
    if config.image_format not in ("png", "jpg"):
        raise UserError(f"image format '{config.image_format}' is not supported; use png or jpg.")
    sizes = {"train": int(n_train), "test": int(n_test)}
    meta = _meta(body, sizes["train"], sizes["test"], image_size, seed, gt_fraction, config)
    if reuse and (found := _existing(out_dir, meta, sizes)) is not None:
        return found

    faces = np.asarray(body.faces, dtype=np.int64)
    parts = face_parts(faces, vertex_parts(body.lbs_weights.detach().cpu().numpy()))
    split_seeds = np.random.SeedSequence(seed).spawn(len(SPLITS))
    (out_dir / META_NAME).unlink(missing_ok=True)  # a half-rewritten folder must not look reusable
    paths = {}
    with _ImageProgress(progress, sum(sizes.values())) as advance:
        for split, split_seed in zip(SPLITS, split_seeds, strict=True):
            paths[split] = _synthesize_split(out_dir, split, sizes[split], body, faces, parts, image_size,
                                             gt_fraction if split == "train" else 1.0, split_seed, config,
                                             advance)
    (out_dir / META_NAME).write_text(json.dumps(meta, indent=2))
    return paths


def _synthesize_split(out_dir: Path, split: str, n: int, body: Any, faces: np.ndarray, parts: np.ndarray,
                      image_size: int, gt_fraction: float, seed: np.random.SeedSequence, config: SynthConfig,
                      advance: Any) -> Path:
    draw_seed, keypoint_seed, image_seed = seed.spawn(3)
    rng = np.random.default_rng(draw_seed)
    samples = sample_split(n, rng, config)
    # Exactly round(gt_fraction·n) rows keep SMPL ground truth, chosen at random.
    has_smpl = np.zeros(n, dtype=bool)
    has_smpl[rng.permutation(n)[: int(round(gt_fraction * n))]] = True
    keypoint_rng = np.random.default_rng(keypoint_seed)
    image_seeds = image_seed.spawn(n)

    image_dir = out_dir / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    ext = config.image_format
    openpose = np.zeros((n, NUM_OPENPOSE, 3), np.float32)
    part = np.zeros((n, 24, 3), np.float32)
    joints3d = np.zeros((n, 24, 4), np.float32)
    imgname = np.array([f"images/{split}/{i:06d}.{ext}" for i in range(n)])
    focal_image = FOCAL_LENGTH * image_size / CROP_RES
    center = np.full(2, image_size / 2.0)
    device = next((b.device for b in body.buffers()), torch.device("cpu"))
    for start in range(0, n, config.batch_size):
        stop = min(start + config.batch_size, n)
        with torch.no_grad():
            out = body(torch.from_numpy(samples.pose[start:stop]).to(device),
                       torch.from_numpy(samples.betas[start:stop]).to(device))
        vertices = out.vertices.double().cpu().numpy()
        joints = out.joints.double().cpu().numpy()
        cam_t = place_camera(vertices, samples.fill[start:stop], samples.offset[start:stop])
        vertices += cam_t[:, None]
        joints += cam_t[:, None]
        openpose[start:stop], part[start:stop] = make_keypoints(joints, image_size, keypoint_rng, config)
        joints3d[start:stop, :, :3] = joints[:, NUM_OPENPOSE:]
        joints3d[start:stop, :, 3] = 1.0
        for b, i in enumerate(range(start, stop)):
            image, part_map = render_parts(vertices[b], faces, parts, focal_image, center, image_size,
                                           np.random.default_rng(image_seeds[i]), config.style)
            _save_image(image, out_dir / imgname[i], ext)
            # Lossless whatever the image format: labels must not blend.
            encode_part_map(part_map).save(out_dir / part_map_name(imgname[i]), compress_level=1)
            advance()

    np.savez(truth_path(out_dir / f"synthetic_{split}.npz"), pose=samples.pose, shape=samples.betas)
    path = out_dir / f"synthetic_{split}.npz"
    save_spin_npz(
        path, imgname=imgname, center=np.tile(center, (n, 1)), scale=np.full(n, image_size / 200.0),
        part=part, openpose=openpose, pose=samples.pose * has_smpl[:, None],
        shape=samples.betas * has_smpl[:, None], has_smpl=has_smpl.astype(np.float32),
        S=joints3d if config.joints3d_for_all else joints3d * has_smpl[:, None, None],
    )
    return path


def truth_path(npz_path: str | Path) -> Path:
    """The hidden-truth file beside a synthetic split's annotations: `<stem>_truth.npz`."""
    npz_path = Path(npz_path)
    return npz_path.with_name(f"{npz_path.stem}_truth.npz")


def hidden_truth(npz_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Every row's true (pose (N,72), betas (N,10)) of a synthetic split, hidden rows included.

    Reads `truth_path(npz_path)`; a dataset generated before that file existed is re-drawn from its
    `synthetic_meta.json` (the draw is a deterministic function of the seed and the parameters).
    """
    npz_path = Path(npz_path)
    path = truth_path(npz_path)
    if path.is_file():
        with np.load(path) as data:
            return data["pose"].astype(np.float32), data["shape"].astype(np.float32)
    split = npz_path.stem.removeprefix("synthetic_")
    meta_path = npz_path.parent / META_NAME
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        raise UserError(f"{npz_path} has no {path.name} and no readable {META_NAME} beside it; its "
                        "hidden ground truth is unknown (regenerate it with `spin data synth`).") from None
    if split not in SPLITS or meta.get("version") != META_VERSION:
        raise UserError(f"{npz_path}: cannot re-draw the hidden ground truth of split '{split}' (meta "
                        f"version {meta.get('version')}, expected {META_VERSION}); regenerate the data.")
    fields = {k: v for k, v in meta["config"].items() if k != "style"}
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    config = SynthConfig(**fields, style=RenderStyle(**{k: tuple(v) if isinstance(v, list) else v
                                                         for k, v in meta["config"]["style"].items()}))
    seed = np.random.SeedSequence(meta["seed"]).spawn(len(SPLITS))[SPLITS.index(split)]
    samples = sample_split(int(meta[f"n_{split}"]), np.random.default_rng(seed.spawn(3)[0]), config)
    return samples.pose, samples.betas


def _save_image(image: np.ndarray, path: Path, ext: str) -> None:
    if ext == "png":
        Image.fromarray(image).save(path, compress_level=1)
    else:
        Image.fromarray(image).save(path, quality=95)


class _ImageProgress:
    """A rich progress bar over the images (or a no-op); the context value advances it by one."""

    def __init__(self, enabled: bool, total: int):
        self.enabled = enabled
        self.total = total
        self._bar: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("rendering"), BarColumn(), MofNCompleteColumn(),
                             TimeRemainingColumn())
        self._bar.__enter__()
        task = self._bar.add_task("images", total=self.total)
        return lambda: self._bar.advance(task)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

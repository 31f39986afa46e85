"""spin.training.overlays.mesh_overlay: meshes z-buffered over the crop, keypoints and reprojections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from spin.training.overlays import MESH_COLOURS, mesh_overlay, save_png


@pytest.fixture(scope="module")
def mesh(body):
    pose = torch.zeros(1, 72)
    pose[0, 0] = np.pi  # upright in SPIN's camera frame (image y down)
    out = body(pose, torch.zeros(1, 10))
    return out.vertices[0].numpy(), body.faces, out.joints[0].numpy()


def _project(points, cam_t, focal=5000.0, res=224):
    p = points + cam_t
    return focal * p[:, :2] / p[:, 2:3] + res / 2


def test_mesh_covers_its_projection_and_leaves_the_background(mesh):
    verts, faces, joints = mesh
    image = np.full((224, 224, 3), 50, np.uint8)
    cam = np.array([0.0, 0.0, 60.0])
    out = mesh_overlay(image, [verts], faces, [cam])
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    pelvis_px = _project(np.zeros((1, 3)), cam)[0].astype(int)
    assert not np.array_equal(out[pelvis_px[1], pelvis_px[0]], image[0, 0])  # the body is drawn there
    assert np.array_equal(out[2, 2], image[2, 2])  # the corner is still the image
    changed = np.any(out != image, axis=2)
    neck, hips = _project(joints[[1, 8]], cam)  # OP Neck, OP MidHip: the torso is solid between them
    top, bottom = sorted((int(neck[1]), int(hips[1])))
    assert changed[top:bottom + 1, int(hips[0])].all()


def test_the_nearer_mesh_wins_where_they_overlap(mesh):
    verts, faces, _ = mesh
    image = np.zeros((112, 112, 3), np.uint8)  # a 112-px crop: the camera scales with it
    near, far = np.array([0.0, 0.0, 40.0]), np.array([0.0, 0.0, 60.0])
    out = mesh_overlay(image, [verts, verts], faces, [far, near], alpha=1.0)
    centre = (_project(np.zeros((1, 3)), near)[0] / 2).astype(int)
    pixel = out[centre[1], centre[0]].astype(float)
    # The second mesh (predicted colour) is nearer: its hue, not the first mesh's, is at the pelvis.
    hue = lambda c: np.asarray(c, float) / np.linalg.norm(c)  # noqa: E731
    assert np.dot(hue(pixel), hue(MESH_COLOURS[1])) > np.dot(hue(pixel), hue(MESH_COLOURS[0]))
    swapped = mesh_overlay(image, [verts, verts], faces, [near, far], alpha=1.0)
    pixel = swapped[centre[1], centre[0]].astype(float)
    assert np.dot(hue(pixel), hue(MESH_COLOURS[0])) > np.dot(hue(pixel), hue(MESH_COLOURS[1]))


def test_keypoints_and_reprojections_are_drawn(mesh, tmp_path):
    verts, faces, joints = mesh
    image = np.full((224, 224, 3), 128, np.uint8)
    cam = np.array([0.0, 0.0, 60.0])
    keypoints = np.zeros((49, 3))
    keypoints[:, :2] = _project(joints, cam) + 8.0
    keypoints[:, 2] = 1.0
    keypoints[5, 2] = 0.0
    projected = _project(joints, cam)
    out = mesh_overlay(image, [], faces, [], keypoints, projected)
    x, y = projected[30].astype(int)
    assert out[y, x, 0] > 200 and out[y, x, 1] < 80  # a red reprojection dot
    assert np.any(out[..., 1] > 200)  # green keypoint rings
    save_png(out, tmp_path / "overlay.png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "overlay.png")), out)
    assert [p.name for p in tmp_path.iterdir()] == ["overlay.png"]

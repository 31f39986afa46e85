"""The numpy z-buffer rasteriser and the colour-coded part renders."""

from __future__ import annotations

import numpy as np

from spin.data.render import PART_PALETTE, face_parts, rasterize, render_parts, vertex_parts
from spin.joints import FLIP_PERM_SMPL


def square(x0, y0, x1, y1, z, base=0):
    """Two triangles covering the axis-aligned square [x0, x1] × [y0, y1] at depth z."""
    points = np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=np.float64)
    faces = np.array([[0, 1, 2], [0, 2, 3]]) + base
    return points, faces


def test_rasterize_covers_exactly_the_pixel_centres_inside():
    points, faces = square(2.0, 3.0, 6.0, 5.0, 1.0)
    face_index, depth = rasterize(points, faces, 8)
    covered = face_index >= 0
    expected = np.zeros((8, 8), bool)
    expected[3:5, 2:6] = True  # rows y in [3, 5), columns x in [2, 6)
    np.testing.assert_array_equal(covered, expected)
    assert np.all(depth[covered] == 1.0) and np.all(np.isinf(depth[~covered]))


def test_rasterize_keeps_the_nearest_face_whatever_the_winding_and_order():
    far, far_faces = square(0.0, 0.0, 8.0, 8.0, 5.0)
    near, near_faces = square(2.0, 2.0, 6.0, 6.0, 2.0, base=4)
    points = np.concatenate([far, near])
    for faces in (np.concatenate([far_faces, near_faces]), np.concatenate([near_faces[:, ::-1], far_faces])):
        face_index, depth = rasterize(points, faces, 8)
        near_ids = {i for i, f in enumerate(faces) if f.min() >= 4}
        inner = face_index[2:6, 2:6]
        assert all(int(i) in near_ids for i in inner.ravel())
        assert np.all(depth[2:6, 2:6] == 2.0) and depth[0, 0] == 5.0


def test_rasterize_skips_faces_behind_the_camera_and_outside_the_image():
    points, faces = square(-20.0, -20.0, -10.0, -10.0, 1.0)
    behind, behind_faces = square(0.0, 0.0, 8.0, 8.0, -1.0, base=4)
    face_index, _ = rasterize(np.concatenate([points, behind]), np.concatenate([faces, behind_faces]), 8)
    assert (face_index == -1).all()


def test_palette_colours_are_distinct_and_left_right_differ():
    colours = PART_PALETTE.astype(int)
    distance = np.abs(colours[:, None] - colours[None]).sum(-1)
    assert (distance + 1000 * np.eye(24, dtype=int)).min() >= 60
    for j, mirror in enumerate(FLIP_PERM_SMPL):
        if mirror != j:
            assert np.abs(colours[j] - colours[mirror]).sum() >= 150


def test_parts_follow_the_largest_skinning_weight():
    weights = np.array([[0.7, 0.3] + [0] * 22, [0.1, 0.9] + [0] * 22, [0.2, 0.8] + [0] * 22], dtype=float)
    parts = vertex_parts(weights)
    np.testing.assert_array_equal(parts, [0, 1, 1])
    np.testing.assert_array_equal(face_parts(np.array([[0, 1, 2], [1, 0, 0]]), parts), [1, 0])


def test_render_parts_paints_the_part_colours_where_the_mesh_projects():
    points, faces = square(-0.5, -0.5, 0.5, 0.5, 10.0)
    image, part_map = render_parts(points, faces, np.array([16, 16]), focal_length=80.0, center=(16.0, 16.0),
                                   size=32, rng=np.random.default_rng(0))
    inside = part_map == 16
    assert inside[12:20, 12:20].all() and inside.sum() == 64 and (part_map[~inside] == -1).all()
    # shaded palette colour (same hue: channels keep their order) on the square, background elsewhere
    mean = image[inside].mean(0)
    ratio = mean / PART_PALETTE[16]
    assert 0.4 < ratio.min() and ratio.max() < 1.05 and np.ptp(ratio) < 0.1
    assert np.abs(image[~inside].mean(0) - mean).sum() > 40

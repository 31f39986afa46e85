"""NBF's input representations: one render, one person, every representation consistent with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spin.data.augment import crop_image
from spin.data.render import face_parts, render_parts, vertex_parts
from spin.data.representations import (
    PART_GROUPS,
    REPRESENTATIONS,
    crop_part_map,
    flip_part_map,
    group_parts,
    group_table,
    joint_heatmaps,
    one_hot,
    render_shading,
    representation_channels,
    representation_input,
    silhouette,
    textured_image,
)
from spin.data.synthetic import FOCAL_LENGTH, SynthConfig, make_keypoints, place_camera, sample_split
from spin.errors import UserError
from spin.joints import FLIP_PERM_SMPL, NUM_OPENPOSE

SIZE = 64
NOISE_FREE = SynthConfig(keypoint_noise_px=0.0, occlusion_prob=0.0)


@pytest.fixture(scope="module")
def rendered(body):
    """Two people rendered at 64 px: [(image, part_map, keypoints (49,3))]."""
    rng = np.random.default_rng(11)
    samples = sample_split(2, rng, NOISE_FREE)
    with torch.no_grad():
        out = body(torch.from_numpy(samples.pose), torch.from_numpy(samples.betas))
    vertices, joints = out.vertices.double().numpy(), out.joints.double().numpy()
    cam_t = place_camera(vertices, samples.fill, samples.offset)
    vertices, joints = vertices + cam_t[:, None], joints + cam_t[:, None]
    openpose, part = make_keypoints(joints, SIZE, rng, NOISE_FREE)
    faces = np.asarray(body.faces)
    parts = face_parts(faces, vertex_parts(body.lbs_weights.numpy()))
    focal = FOCAL_LENGTH * SIZE / 224
    people = []
    for b in range(2):
        image, part_map = render_parts(vertices[b], faces, parts, focal, np.full(2, SIZE / 2), SIZE,
                                       np.random.default_rng(b))
        people.append((image, part_map, np.concatenate([openpose[b], part[b]])))
    return people


def test_groupings_partition_smpl_parts_and_nest():
    for n, groups in PART_GROUPS.items():
        assert len(groups) == n and len({name for name, _ in groups}) == n
        members = sorted(j for _, parts in groups for j in parts)
        assert members == list(range(24))
    levels = sorted(PART_GROUPS)  # 1, 3, 6, 12, 24: each finer group lies inside one coarser group
    for coarse, fine in zip(levels[:-1], levels[1:], strict=True):
        coarse_of, fine_of = group_table(coarse), group_table(fine)
        for g in range(fine):
            assert len(set(coarse_of[fine_of == g])) == 1, (coarse, fine, g)


def test_every_grouping_is_a_union_of_the_24_part_labels(rendered):
    for _, part_map, _ in rendered:
        assert (part_map >= 0).any() and (part_map < 0).any()
        for n, groups in PART_GROUPS.items():
            labels = group_parts(part_map, n)
            assert np.array_equal(labels < 0, part_map < 0)
            for g, (_, parts) in enumerate(groups):
                assert np.array_equal(labels == g, np.isin(part_map, parts))


def test_silhouette_is_the_union_of_the_parts_and_parts_are_exclusive(rendered):
    for image, part_map, keypoints in rendered:
        sil = representation_input("silhouette", image, part_map, keypoints)
        assert sil.shape == (1, SIZE, SIZE) and set(np.unique(sil)) <= {0.0, 1.0}
        for kind in ("parts3", "parts6", "parts12", "parts24"):
            channels = representation_input(kind, image, part_map, keypoints)
            assert channels.shape == (representation_channels(kind), SIZE, SIZE)
            assert channels.sum(0).max() == 1.0  # one part per pixel
            assert np.array_equal(channels.sum(0), sil[0])


def test_the_person_and_keypoints_are_the_same_in_every_representation(rendered):
    for image, part_map, keypoints in rendered:
        body_pixels = silhouette(part_map)
        # the rgb input is the render itself; the person's pixels are where the parts are
        rgb = representation_input("rgb", image, part_map, keypoints)
        assert rgb.shape == (3, SIZE, SIZE) and np.allclose(rgb * 255, image.transpose(2, 0, 1))
        gt = keypoints[NUM_OPENPOSE:]
        visible = gt[:, 2] > 0
        px = np.clip(gt[visible, :2].astype(int), 0, SIZE - 1)
        # every joint lies on the body, or within a pixel of it (elbows, ears and head top sit on
        # the outline; limbs are 2-3 px wide at 64 px)
        near_body = body_pixels.copy()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                near_body |= np.roll(np.roll(body_pixels, dy, 0), dx, 1)
        assert near_body[px[:, 1], px[:, 0]].all()
        assert body_pixels[px[:, 1], px[:, 0]].mean() >= 0.7
        for n in (14, 24):
            maps = representation_input(f"heatmaps{n}", image, part_map, keypoints)
            assert maps.shape == (n, SIZE, SIZE)
            for j in range(n):
                if gt[j, 2] > 0:
                    peak = np.unravel_index(maps[j].argmax(), maps[j].shape)
                    assert peak == (int(gt[j, 1]), int(gt[j, 0]))


def test_heatmap_peaks_at_the_keypoint_and_hidden_joints_are_blank():
    keypoints = np.array([[10.3, 20.7, 1.0], [0.2, 63.9, 0.7], [30.0, 30.0, 0.0]])
    maps = joint_heatmaps(keypoints, 64, sigma=2.0)
    assert maps.shape == (3, 64, 64) and maps.max() <= 1.0
    assert np.unravel_index(maps[0].argmax(), (64, 64)) == (20, 10)
    assert np.unravel_index(maps[1].argmax(), (64, 64)) == (63, 0)
    assert not maps[2].any()
    # a keypoint on a pixel centre peaks at exactly 1 and falls off as a Gaussian of std sigma
    centred = joint_heatmaps(np.array([[5.5, 5.5, 1.0]]), 16, sigma=2.0)[0]
    assert centred[5, 5] == pytest.approx(1.0) and centred[5, 7] == pytest.approx(np.exp(-0.5), rel=1e-6)


def test_one_hot_and_channel_counts():
    labels = np.array([[-1, 0], [2, 1]])
    assert np.array_equal(one_hot(labels, 3).argmax(0)[labels >= 0], labels[labels >= 0])
    assert one_hot(labels, 3)[:, 0, 0].sum() == 0
    assert [representation_channels(k) for k in REPRESENTATIONS] == [3, 3, 1, 3, 6, 12, 24, 14, 24]
    with pytest.raises(UserError, match="data.synthetic.representation"):
        representation_channels("depth")


def test_flipping_a_part_map_mirrors_it_and_swaps_sides(rendered):
    _, part_map, _ = rendered[0]
    flipped = flip_part_map(part_map)
    assert np.array_equal(flip_part_map(flipped), part_map)
    left, right = group_table(6) == 2, group_table(6) == 3  # left_arm, right_arm
    mirrored_left = np.isin(part_map, np.flatnonzero(left))[:, ::-1]
    assert np.array_equal(np.isin(flipped, np.flatnonzero(right)), mirrored_left)


@pytest.mark.parametrize("rot_deg,flip", [(0.0, False), (25.0, False), (-40.0, True)])
def test_cropped_part_map_lines_up_with_the_cropped_image(rendered, rot_deg, flip):
    image, part_map, _ = rendered[1]
    center, scale, res = np.array([30.0, 34.0]), 0.28, 48
    labels = crop_part_map(part_map, center, scale, res, rot_deg, flip)
    # paint the person white on black, crop it the image's way: where the labels are, it is bright
    mask_image = np.repeat(np.where(part_map >= 0, 255, 0).astype(np.uint8)[..., None], 3, axis=2)
    cropped = crop_image(mask_image, center, scale, res, rot_deg, flip)[..., 0]
    inside = labels >= 0
    assert inside.any() and (~inside).any()
    assert (cropped[inside] > 0).mean() > 0.97 and (cropped[~inside] < 255).mean() > 0.97
    seen = np.unique(part_map[part_map >= 0])
    allowed = FLIP_PERM_SMPL[seen] if flip else seen
    assert set(np.unique(labels[inside]).tolist()) <= set(allowed.tolist())
    identity = crop_part_map(part_map, np.full(2, SIZE / 2), SIZE / 200, SIZE)
    assert np.array_equal(identity, part_map)


def test_textured_keeps_the_person_and_its_shading_and_clutters_the_background(rendered):
    for image, part_map, _ in rendered:
        body = silhouette(part_map)
        textured = textured_image(image, part_map, seed=3)
        assert textured.shape == image.shape and textured.dtype == np.uint8
        assert np.array_equal(textured, textured_image(image, part_map, seed=3))  # one row, one look
        assert not np.array_equal(textured, textured_image(image, part_map, seed=4))
        # the person's colours are no longer the part code: one skin tone on the head and both hands
        skin = np.isin(part_map, (12, 15, 20, 21, 22, 23))
        hue = textured[skin].astype(float) / np.maximum(textured[skin].sum(-1, keepdims=True), 1)
        assert hue.std(axis=0).max() < 0.02
        # ... under the render's own shading: brightness follows it on the (unpatterned) skin
        shade = render_shading(image, part_map)
        assert np.corrcoef(shade[skin], textured[skin].sum(-1))[0, 1] > 0.95
        assert 0.3 < shade[body].mean() < 1.5
        # the background is clutter: far from the render's plain noisy one, with edges of its own
        background = ~body
        assert np.abs(textured[background].astype(float) - image[background]).mean() > 10
        assert textured[background].astype(float).std(axis=0).mean() > image[background].std(axis=0).mean()
        rgb_input = representation_input("textured", image, part_map, np.zeros((49, 3)), seed=3)
        assert np.allclose(rgb_input * 255, textured.transpose(2, 0, 1))

"""A canonical fit, read for an augmented sample, projects onto that sample's augmented keypoints;
and the trainer's canonical fit jobs undo the augmentation of a prediction."""

import numpy as np
import torch

from fitting_workers.smplify.losses import fit_quality
from spin.camera import CropCamera
from spin.data.augment import AugmentParams, augment_cam_t
from spin.data.datasets import SpinImageDataset
from spin.geometry import axis_angle_to_matrix
from spin.training.step import PELVIS, Prediction, canonical_fit_jobs, project_normalised
from spin.training.supervision import CollateWithFits, StoreFitReader
from store import FitsStore

CAMERA = CropCamera()
AUGMENTATIONS = [AugmentParams(), AugmentParams(flip=True), AugmentParams(rot_deg=35.0),
                 AugmentParams(flip=True, rot_deg=-50.0, scale=1.2), AugmentParams(rot_deg=20.0, scale=0.8)]


def _canonical_ground_truth(dataset, body, rows):
    """GT pose, betas and the camera translation that places the model joints at S."""
    ann = dataset.annotations
    pose = torch.as_tensor(ann.pose[rows])
    betas = torch.as_tensor(ann.betas[rows])
    joints = body.joints(pose, betas)
    cam_t = (torch.as_tensor(ann.S[rows][..., :3]) - joints[:, 25:]).mean(dim=1)
    return pose, betas, cam_t, joints


def test_a_stored_fit_projects_onto_the_augmented_keypoints(tmp_path, tiny_data, body):
    dataset = SpinImageDataset(tiny_data["train"], name="tiny", img_res=64)
    rows = list(range(len(AUGMENTATIONS)))
    pose, betas, cam_t, joints = _canonical_ground_truth(dataset, body, rows)
    store = FitsStore(tmp_path / "fits.lmdb")
    keys = [dataset.key(i) for i in rows]
    store.put_if_better(keys, pose.numpy(), betas.numpy(), cam_t.numpy(), np.ones(len(rows)))
    store.close()
    items = [dataset.item(i, params) for i, params in zip(rows, AUGMENTATIONS, strict=True)]
    for item in items:
        item["has_smpl"] = torch.tensor(False)  # supervise from the store, not from ground truth
    batch = CollateWithFits(StoreFitReader(tmp_path / "fits.lmdb"), threshold=100.0)(items)
    sup = batch["supervision"]
    assert sup.from_fit.all()
    cam_aug = torch.as_tensor(augment_cam_t(cam_t, joints[:, PELVIS], batch["flip"], batch["rot"],
                                            batch["scale"]))
    projected = project_normalised(body.joints(sup.pose, sup.betas), cam_aug.float(), CAMERA)
    gt_part = batch["keypoints"][:, 25:]
    error_px = (projected[:, 25:] - gt_part[..., :2]).norm(dim=-1) * 112  # in 224-crop pixels
    visible = gt_part[..., 2] > 0
    assert error_px[visible].max() < 1.5, error_px.max(dim=1).values


def test_canonical_fit_jobs_undo_the_augmentation(tiny_data, body):
    dataset = SpinImageDataset(tiny_data["train"], name="tiny", img_res=64)
    rows = list(range(len(AUGMENTATIONS)))
    pose, betas, cam_t, joints = _canonical_ground_truth(dataset, body, rows)
    items = [dataset.item(i, params) for i, params in zip(rows, AUGMENTATIONS, strict=True)]
    batch = torch.utils.data.default_collate(items)
    # A perfect prediction in the augmented frame: the augmented GT pose and camera.
    aug_joints = body.joints(batch["pose"], batch["betas"])
    cam_aug = torch.as_tensor(augment_cam_t(cam_t, joints[:, PELVIS], batch["flip"], batch["rot"],
                                            batch["scale"]))
    rotmat = axis_angle_to_matrix(batch["pose"].reshape(-1, 24, 3))
    pred = Prediction(rotmat=rotmat, betas=batch["betas"], cam=torch.zeros(len(rows), 3),
                      cam_t=cam_aug.float(), joints=aug_joints, keypoints_2d=torch.zeros(len(rows), 49, 2))
    jobs = canonical_fit_jobs(pred, batch)
    assert jobs.keys == [dataset.key(i) for i in rows]
    assert np.allclose(jobs.keypoints, dataset.annotations.keypoints[rows])
    canon = body.joints(torch.as_tensor(jobs.pose), torch.as_tensor(jobs.betas))
    assert torch.allclose(canon, joints, atol=1e-4)
    assert np.allclose(jobs.cam_t, cam_t.numpy(), atol=1e-3 * np.abs(cam_t.numpy()).max())
    quality = fit_quality(canon, torch.as_tensor(jobs.cam_t), torch.as_tensor(jobs.keypoints), 5000.0, 224)
    truth = fit_quality(joints, cam_t, torch.as_tensor(jobs.keypoints), 5000.0, 224)
    assert torch.allclose(quality, truth, rtol=1e-3, atol=1e-2)

"""Run a regressor over a SPIN test file under one of SPIN's protocols (see `spin.evaluation.protocols`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from spin.body import BodyFiles, BodyModel
from spin.camera import CropCamera
from spin.errors import UserError
from spin.evaluation.evaluate import evaluate_model, mean_or_none, nbf_errors
from spin.evaluation.protocols import (
    PROTOCOLS,
    Protocol,
    dataset_joints,
    male_mask,
    regressed_joints,
    score,
)
from spin.geometry import matrix_to_axis_angle
from spin.models import Regressor

NUM_VERTICES = 6890


@dataclass
class ProtocolResult:
    """Dataset means (`means`: mm for errors, fractions for PCK/AUC), the number of scored
    samples, per-sample metrics of the scored rows, and the predictions of every row (`pose`
    (N,72) axis-angle, `betas` (N,10), `cam` (N,3), `sample_index` (N,)); `representation` the
    network's input (NBF's rgb, silhouette, parts*, heatmaps*)."""

    protocol: str
    means: dict[str, float | None]
    count: int
    per_sample: dict[str, np.ndarray] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    representation: str = "rgb"

    def metrics(self) -> dict[str, object]:
        """JSON-ready: protocol, representation, count and each metric (None where it has no value;
        `pve` always present)."""
        clean = {k: (None if v is None or not np.isfinite(v) else float(v)) for k, v in self.means.items()}
        return {"protocol": self.protocol, "representation": self.representation, "count": self.count,
                "pve": None, **clean}


def load_h36m_regressor(path: str | Path | None, protocol: str) -> torch.Tensor:
    """`J_regressor_h36m.npy` (17, 6890) as float32, or a UserError saying how to provide it."""
    if path is None:
        raise UserError(f"Protocol {protocol} regresses its joints with J_regressor_h36m.npy (17x6890, "
                        "from SPIN's data download); pass --joint-regressor-h36m PATH or put it beside "
                        "the body model.")
    path = Path(path)
    try:
        reg = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"H36M joint regressor {path} does not exist; "
                        "check --joint-regressor-h36m.") from None
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"H36M joint regressor {path} is not a readable .npy "
                        f"({type(exc).__name__}).") from None
    if reg.shape != (17, NUM_VERTICES) or not np.all(np.isfinite(reg)):
        raise UserError(f"H36M joint regressor {path} has shape {reg.shape}"
                        f"{'' if np.all(np.isfinite(reg)) else ' and NaN/Inf values'}; expected finite "
                        f"(17, {NUM_VERTICES}) (SPIN's J_regressor_h36m.npy).")
    return torch.as_tensor(reg, dtype=torch.float32)


def gendered_bodies(files: BodyFiles, body: BodyModel) -> dict[str, BodyModel]:
    """Male and female body models of a body-model set (3DPW's ground truth), on `body`'s device."""
    from spin.body.loading import load_body_arrays

    out = {}
    for gender, path in (("male", files.model_male), ("female", files.model_female)):
        if path is None:
            raise UserError(f"Protocol 3dpw builds its ground truth with the gendered SMPL models, but no "
                            f"{gender} model was found beside {files.model}; pass a body-model folder with "
                            "SMPL_MALE.pkl and SMPL_FEMALE.pkl (--body-model DIR).")
        arrays = load_body_arrays(path, files.joint_regressor_extra)
        if arrays.J_regressor_extra is None:  # the extra joints are not used here; any fitting rows do
            arrays.J_regressor_extra = body.J_regressor_extra.detach().cpu().double().numpy()
        out[gender] = BodyModel(arrays).to(body.J_regressor_extra.device)
    return out


def _check_ground_truth(protocol: Protocol, dataset) -> None:
    ann = dataset.annotations
    name = ann.path.name
    if protocol.gt_source == "S" and not np.any(dataset._has_pose_3d):
        raise UserError(f"Test file {name} has no 3D ground truth ('S' with confident joints), which "
                        f"protocol {protocol.name} scores against; use the file with S, or another protocol.")
    if protocol.gt_source == "smpl_gendered":
        if not np.any(ann.has_smpl):
            raise UserError(f"Test file {name} has no ground-truth SMPL parameters (pose, shape), which "
                            "protocol 3dpw builds its ground truth from.")
        if ann.gender is None:
            raise UserError(f"Test file {name} has no 'gender' array, which protocol 3dpw needs to pick "
                            "the male or female model per sample.")
    if protocol.gt_source == "model" and not (np.any(dataset._has_pose_3d) or np.any(ann.has_smpl)):
        raise UserError(f"Test file {name} has no 3D ground truth (neither 'S' nor SMPL parameters); "
                        "it cannot be scored.")


@torch.no_grad()
def evaluate_protocol(model: Regressor, body: BodyModel, dataset, protocol: str,
                      h36m_regressor: torch.Tensor | None = None,
                      bodies_by_gender: dict[str, BodyModel] | None = None, batch_size: int = 64,
                      device: torch.device | str = "cpu", amp_dtype: torch.dtype | None = None,
                      num_workers: int = 0, camera: CropCamera | None = None) -> ProtocolResult:
    """Score `model` on `dataset` (a `SpinImageDataset`, no augmentation) under `protocol`.

    Beside the protocol's own metrics, every protocol reports NBF's `joint_rotation_error` (mean
    quaternion distance in radians, rows with ground-truth SMPL; None without) and `pckh` (PCKh@0.5
    of LSP's 14 joints in the crop, rows with a visible head; None without); `camera` is the crop
    camera the weak-perspective prediction is projected with for PCKh (default `CropCamera()`).
    """
    camera = camera or CropCamera()
    if protocol not in PROTOCOLS:
        raise UserError(f"Unknown protocol '{protocol}'; use one of {', '.join(PROTOCOLS)}.")
    spec = PROTOCOLS[protocol]
    _check_ground_truth(spec, dataset)
    device = torch.device(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    if spec.gt_source == "model":
        res = evaluate_model(model, body, loader, device, amp_dtype=amp_dtype, camera=camera)
        metrics = {"mpjpe": res.mpjpe, "pa_mpjpe": res.pa_mpjpe, "pve": res.pve,
                   "joint_rotation_error": res.joint_rotation_error, "pckh": res.pckh}
        preds = dict(res.predictions)
        preds["sample_index"] = np.arange(len(dataset))
        return ProtocolResult(protocol, metrics, res.count, res.per_sample, preds,
                              representation=dataset.representation)
    if h36m_regressor is None:
        raise UserError(f"Protocol {protocol} needs J_regressor_h36m; pass --joint-regressor-h36m PATH.")
    reg = h36m_regressor.to(device)
    male = male_mask(dataset.annotations.gender) if spec.gt_source == "smpl_gendered" else None
    if male is not None and not bodies_by_gender:
        raise UserError("Protocol 3dpw needs the male and female body models (--body-model DIR).")
    was_training = model.training
    model.eval()
    errors: dict[str, list[np.ndarray]] = {}
    nbf: dict[str, list[np.ndarray]] = {"joint_rotation_error": [], "pckh": []}  # rows of their own
    preds: dict[str, list[np.ndarray]] = {"pose": [], "betas": [], "cam": [], "sample_index": []}
    scored: list[np.ndarray] = []
    try:
        for batch in loader:
            images = batch["img"].to(device)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                out = model(images)
            index = batch["sample_index"].numpy()
            pred_body = body(out.rotmat, out.betas)
            pred_vertices = pred_body.vertices
            for key, value in nbf_errors(out.rotmat, out.cam, pred_body.joints, batch, camera).items():
                nbf[key].append(value)
            pred = regressed_joints(pred_vertices.float(), reg, spec.h36m_joints)
            if spec.gt_source == "S":
                has = batch["has_pose_3d"].bool()
                gt = dataset_joints(batch["pose_3d"].to(device), spec.gt_joints)
            else:
                has = batch["has_smpl"].bool()
                gt_pose, gt_betas = batch["pose"].to(device), batch["betas"].to(device)
                is_male = torch.as_tensor(male[index], device=device)
                verts = bodies_by_gender["female"](gt_pose, gt_betas).vertices
                verts[is_male] = bodies_by_gender["male"](gt_pose[is_male], gt_betas[is_male]).vertices
                gt = regressed_joints(verts.float(), reg, spec.h36m_joints)
            mask = has.to(device)
            if mask.any():
                for key, value in score(spec, pred[mask], gt[mask]).items():
                    errors.setdefault(key, []).append(value)
                scored.append(index[has.numpy()])
            preds["pose"].append(matrix_to_axis_angle(out.rotmat).reshape(-1, 72).cpu().numpy())
            preds["betas"].append(out.betas.cpu().numpy())
            preds["cam"].append(out.cam.cpu().numpy())
            preds["sample_index"].append(index)
    finally:
        model.train(was_training)
    per_sample = {k: np.concatenate(v) for k, v in errors.items()}
    per_sample["sample_index"] = np.concatenate(scored)
    metrics: dict[str, float | None] = {k: float(per_sample[k].mean()) for k in spec.metric_names()}
    metrics |= {k: mean_or_none(np.concatenate(v)) if v else None for k, v in nbf.items()}
    return ProtocolResult(protocol, metrics, int(len(per_sample["sample_index"])), per_sample,
                          {k: np.concatenate(v) for k, v in preds.items()},
                          representation=dataset.representation)

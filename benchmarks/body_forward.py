"""Body joints, forward + backward, batch 64, CPU: the fast 49-joint path vs the full smplx forward
(all 6890 vertices) and vs the previous fast path (before the joint basis of `spin.body.kinematics`).

All three are timed in the same run, interleaved round by round so machine load hits them alike;
the best round of each is reported (process CPU time, which a loaded machine inflates less than wall
time), with the ratios. Target: fast path >= 10x faster than the full forward.

    python benchmarks/body_forward.py [--batch 64] [--rounds 15] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from spin.body import BodyModel
from spin.body.files import resolve_body_files
from spin.body.kinematics import pointer_jumping_steps
from spin.body.loading import BodyModelArrays, load_body_arrays
from spin.body.model import VERTEX_JOINT_IDS
from spin.body.pose_sampler import sample_body_pose
from spin.geometry import axis_angle_to_matrix
from spin.joints import MODEL_JOINT_INDEX


class PreviousJoints(torch.nn.Module):
    """The joints-only path as it was before (4x4 pointer jumping with advanced indexing, separate
    bone-offset and pair GEMMs, cat + index for the output order), kept for the side-by-side."""

    def __init__(self, arrays: BodyModelArrays, nb: int = 10) -> None:
        super().__init__()
        parents = arrays.parents
        self.steps = [torch.as_tensor(a) for a in pointer_jumping_steps(parents)]
        parent_or_root = np.where(parents < 0, 0, parents)
        jreg, shapedirs = arrays.J_regressor, arrays.shapedirs[:, :, :nb]
        j_template = jreg @ arrays.v_template
        j_shapedirs = np.einsum("jv,vck->jck", jreg, shapedirs)
        rel_template = j_template - j_template[parent_or_root]
        rel_shapedirs = j_shapedirs - j_shapedirs[parent_or_root]
        rel_template[0], rel_shapedirs[0] = j_template[0], j_shapedirs[0]
        f32 = torch.float32
        self.rel_template = torch.as_tensor(rel_template.reshape(1, -1), dtype=f32)
        self.rel_shapedirs = torch.as_tensor(rel_shapedirs.transpose(2, 0, 1).reshape(nb, -1), dtype=f32)
        extra = arrays.J_regressor_extra
        support = np.nonzero(np.any(extra != 0, axis=0))[0]
        sel = np.unique(np.concatenate([VERTEX_JOINT_IDS, support]))
        reader = np.zeros((len(VERTEX_JOINT_IDS) + len(extra), len(sel)))
        reader[np.arange(len(VERTEX_JOINT_IDS)), np.searchsorted(sel, VERTEX_JOINT_IDS)] = 1.0
        reader[len(VERTEX_JOINT_IDS):] = extra[:, sel]
        weights = arrays.weights[sel]
        rows, joints = np.nonzero(reader @ np.abs(weights))
        coeff = reader[rows] * weights[:, joints].T
        num_pairs = len(rows)
        pair_weight = coeff.sum(1)
        h_template = coeff @ arrays.v_template[sel] - pair_weight[:, None] * j_template[joints]
        h_shapedirs = (coeff @ shapedirs[sel].reshape(len(sel), -1)).reshape(num_pairs, 3, nb)
        h_shapedirs -= pair_weight[:, None, None] * j_shapedirs[joints]
        h_posedirs = (coeff @ arrays.posedirs[sel].reshape(len(sel), -1)).reshape(num_pairs, 3, -1)
        basis = np.concatenate([h_shapedirs, h_posedirs], axis=2).reshape(num_pairs * 3, -1).T
        self.h_template = torch.as_tensor(h_template.reshape(1, -1), dtype=f32)
        self.h_basis = torch.as_tensor(np.ascontiguousarray(basis), dtype=f32)
        self.pair_weight = torch.as_tensor(pair_weight.reshape(1, -1, 1), dtype=f32)
        self.pair_joint = torch.as_tensor(joints, dtype=torch.long)
        to_output = np.zeros((len(reader), num_pairs))
        to_output[rows, np.arange(num_pairs)] = 1.0
        self.pair_to_output = torch.as_tensor(to_output, dtype=f32)
        self.model_joint_index = torch.as_tensor(MODEL_JOINT_INDEX)
        self.bottom = torch.tensor([0.0, 0.0, 0.0, 1.0]).reshape(1, 1, 1, 4)
        self.identity = torch.eye(4).reshape(1, 1, 4, 4)

    def forward(self, pose: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        rot = axis_angle_to_matrix(pose.reshape(-1, 24, 3))
        batch, num = rot.shape[:2]
        rel = torch.addmm(self.rel_template, betas, self.rel_shapedirs).view(batch, num, 3, 1)
        local = torch.cat([torch.cat([rot, rel], dim=-1), self.bottom.expand(batch, num, 1, 4)], dim=-2)
        transforms = torch.cat([local, self.identity.expand(batch, 1, 4, 4)], dim=1)
        for anc in self.steps:
            transforms = transforms[:, anc] @ transforms
        glob = transforms[:, :num, :3]
        pose_feature = (rot[:, 1:] - self.identity[0, :, :3, :3]).flatten(1)
        h = torch.addmm(self.h_template, torch.cat([betas, pose_feature], dim=1), self.h_basis)
        num_pairs = self.pair_weight.shape[1]
        h = torch.cat([h.view(batch, num_pairs, 3), self.pair_weight.expand(batch, -1, 1)], dim=-1)
        contrib = (glob[:, self.pair_joint] * h[:, :, None, :]).sum(-1)
        read = torch.einsum("ep,bpc->bec", self.pair_to_output, contrib)
        return torch.cat([glob[..., 3], read], dim=1)[:, self.model_joint_index]


def _time_once(fn, iters: int) -> float:
    start = time.process_time()
    for _ in range(iters):
        fn()
    return (time.process_time() - start) / iters * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    files = resolve_body_files()
    body = BodyModel.from_files(files)
    previous = PreviousJoints(load_body_arrays(files.model, files.joint_regressor_extra))
    rng = np.random.default_rng(0)
    pose_np = np.zeros((args.batch, 72), dtype=np.float32)
    pose_np[:, 3:] = sample_body_pose(args.batch, rng)
    pose_np[:, :3] = rng.normal(size=(args.batch, 3))
    pose = torch.as_tensor(pose_np).requires_grad_()
    betas = torch.as_tensor(rng.normal(size=(args.batch, 10)).astype(np.float32)).requires_grad_()

    def full() -> None:
        body(pose, betas).joints.square().sum().backward()

    def fast() -> None:
        body.joints(pose, betas).square().sum().backward()

    def before() -> None:
        previous(pose, betas).square().sum().backward()

    with torch.no_grad():
        reference = body(pose, betas).joints
        err = (reference - body.joints(pose, betas)).abs().max().item()
        err_before = (reference - previous(pose, betas)).abs().max().item()
    for fn in (full, fast, before):  # warm-up
        fn()
        fn()
    best = {"full": float("inf"), "fast": float("inf"), "before": float("inf")}
    for _ in range(args.rounds):
        best["full"] = min(best["full"], _time_once(full, 2))
        best["fast"] = min(best["fast"], _time_once(fast, 10))
        best["before"] = min(best["before"], _time_once(before, 10))
    print(
        f"body forward+backward, batch {args.batch}, CPU, {args.threads} threads "
        f"(best of {args.rounds} rounds, process CPU time)"
    )
    print(f"  full smplx forward (6890 vertices):  {best['full']:8.2f} ms/call")
    print(f"  previous fast joints path:           {best['before']:8.2f} ms/call"
          f"  ({best['full'] / best['before']:.1f}x the full forward)")
    print(f"  fast joints path (49 joints):        {best['fast']:8.2f} ms/call")
    print(f"  speed-up vs full forward: {best['full'] / best['fast']:.1f}x  (target >= 10x); "
          f"vs previous fast path: {best['before'] / best['fast']:.2f}x")
    print(f"  max joint difference to the full forward: {err:.1e} m (previous path {err_before:.1e} m)")
    load = os.getloadavg()[0]
    print(f"  machine: {os.cpu_count()} CPUs, load average {load:.1f}; a busy machine slows small ops most")


if __name__ == "__main__":
    main()

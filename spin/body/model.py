"""SMPL body model with SPIN's 49 joints: a full forward through smplx and a fast joints-only path."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import smplx
import torch
from smplx.utils import Struct
from smplx.vertex_ids import vertex_ids as SMPLX_VERTEX_IDS

from spin.body.loading import BodyModelArrays, load_body_arrays
from spin.errors import UserError
from spin.geometry import axis_angle_to_matrix
from spin.joints import MODEL_JOINT_INDEX, NUM_SMPL_JOINTS, VERTEX_JOINT_NAMES

# smplx's SMPL appends these vertices as joints 24-44 (SMPL and SMPL-H share the topology).
VERTEX_JOINT_IDS = np.array([SMPLX_VERTEX_IDS["smplh"][n] for n in VERTEX_JOINT_NAMES], dtype=np.int64)
NUM_BETAS_USED = 10


@dataclass
class BodyOutput:
    """vertices (B, 6890, 3), joints (B, 49, 3) SPIN keypoints, smpl_joints (B, 24, 3).

    Metres, in the model frame (no camera translation).
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    smpl_joints: torch.Tensor


def _pointer_jumping_steps(parents: np.ndarray) -> list[np.ndarray]:
    """Ancestor indices for composing the kinematic chain in log(depth) batched steps.

    Nodes are the joints plus one identity node (index J) that stands above the root. At step k
    every joint's transform is left-multiplied by that of its 2^k-th ancestor; after the last step
    each joint holds its global transform. SMPL's depth of 8 needs 4 steps instead of 23 products.
    """
    num = len(parents)
    anc = np.concatenate([np.where(parents < 0, num, parents), [num]]).astype(np.int64)
    steps = []
    while np.any(anc[:num] != num):
        steps.append(anc.copy())
        anc = anc[anc]
    return steps


class BodyModel(torch.nn.Module):
    """SMPL-layout body model returning SPIN's 49 joints.

    ``forward(pose, betas)`` runs smplx's SMPL on all vertices; ``joints(pose, betas)`` computes
    the same 49 joints from the 24-joint chain and a small precomputed basis for the vertices that
    the vertex joints and the extra regressor read (no mesh skinning), which is over 10x faster and
    agrees to float precision. pose: (B, 72) or (B, 24, 3) axis-angle, or (B, 24, 3, 3) rotation
    matrices; betas (B, num_betas) or (1, num_betas). Buffers follow ``.to(device/dtype)``.
    """

    def __init__(self, arrays: BodyModelArrays, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if arrays.J_regressor_extra is None:
            raise UserError(
                f"Body model file {arrays.path} has no 'J_regressor_extra'; pass --joint-regressor-extra "
                "PATH (SPIN's J_regressor_extra.npy) for its 9 extra joints."
            )
        self.source = arrays.path
        self.synthetic = arrays.synthetic
        nb = min(NUM_BETAS_USED, arrays.num_betas)
        data = Struct(**arrays.as_dict())
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning for 10-component files
            self.smpl = smplx.SMPL(
                model_path=str(arrays.path),
                data_struct=data,
                num_betas=nb,
                dtype=dtype,
                create_betas=False,
                create_global_orient=False,
                create_body_pose=False,
                create_transl=False,
            )
        self._num_betas = int(self.smpl.num_betas)
        self.faces = np.asarray(arrays.f, dtype=np.int64)
        parents = arrays.parents
        self.register_buffer("parents", torch.as_tensor(parents))
        self.register_buffer("J_regressor_extra", torch.as_tensor(arrays.J_regressor_extra, dtype=dtype))
        self.register_buffer("model_joint_index", torch.as_tensor(MODEL_JOINT_INDEX))
        steps = _pointer_jumping_steps(parents)
        self._num_chain_steps = len(steps)
        for i, anc in enumerate(steps):
            self.register_buffer(f"chain_step{i}", torch.as_tensor(anc), persistent=False)
        bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=dtype).reshape(1, 1, 1, 4)
        self.register_buffer("chain_bottom_row", bottom, persistent=False)
        self.register_buffer(
            "chain_identity", torch.eye(4, dtype=dtype).reshape(1, 1, 4, 4), persistent=False
        )
        self._init_fast_path(arrays, nb, dtype)

    def _init_fast_path(self, arrays: BodyModelArrays, nb: int, dtype: torch.dtype) -> None:
        """Precompute (in float64) everything the 49 joints need that is linear in shape and pose feature.

        Rest joints J(β) = J0 + JS·β, so the bone offsets of the chain are linear in β. The 30 joints
        read from vertices (21 vertex joints, 9 extra-regressor rows) are out = M @ verts with
        verts_s = Σ_j W_sj A_j [v_s; 1], A_j = [R_j | t_j - R_j J_j], v_s = v0_s + shapedirs_s·β +
        posedirs_s·f(pose). Swapping the sums: out_e = Σ_j [R_j | t_j] [U_ej - G_ej J_j; G_ej] with
        G_ej = Σ_s M_es W_sj and U_ej = Σ_s M_es W_sj v_s — both linear in (β, f). Only the (row,
        joint) pairs with G_ej ≠ 0 are kept, so no per-vertex work remains.
        """
        parents = arrays.parents
        parent_or_root = np.where(parents < 0, 0, parents)
        jreg = arrays.J_regressor
        shapedirs = arrays.shapedirs[:, :, :nb]
        j_template = jreg @ arrays.v_template  # (24, 3)
        j_shapedirs = np.einsum("jv,vck->jck", jreg, shapedirs)  # (24, 3, K)
        rel_template = j_template - j_template[parent_or_root]
        rel_shapedirs = j_shapedirs - j_shapedirs[parent_or_root]
        rel_template[0], rel_shapedirs[0] = j_template[0], j_shapedirs[0]  # the root keeps its position
        self.register_buffer("fast_rel_template", torch.as_tensor(rel_template.reshape(1, -1), dtype=dtype))
        self.register_buffer(
            "fast_rel_shapedirs",
            torch.as_tensor(rel_shapedirs.transpose(2, 0, 1).reshape(nb, -1), dtype=dtype),
        )

        extra = arrays.J_regressor_extra
        support = np.nonzero(np.any(extra != 0, axis=0))[0]
        sel = np.unique(np.concatenate([VERTEX_JOINT_IDS, support]))
        reader = np.zeros((len(VERTEX_JOINT_IDS) + len(extra), len(sel)))  # (30, S)
        reader[np.arange(len(VERTEX_JOINT_IDS)), np.searchsorted(sel, VERTEX_JOINT_IDS)] = 1.0
        reader[len(VERTEX_JOINT_IDS) :] = extra[:, sel]
        weights = arrays.weights[sel]  # (S, 24)
        rows, joints = np.nonzero(reader @ np.abs(weights))
        coeff = reader[rows] * weights[:, joints].T  # (P, S)
        num_pairs = len(rows)
        pair_weight = coeff.sum(1)  # G, (P,)
        h_template = coeff @ arrays.v_template[sel] - pair_weight[:, None] * j_template[joints]  # (P, 3)
        h_shapedirs = (coeff @ shapedirs[sel].reshape(len(sel), -1)).reshape(num_pairs, 3, nb)
        h_shapedirs -= pair_weight[:, None, None] * j_shapedirs[joints]
        h_posedirs = (coeff @ arrays.posedirs[sel].reshape(len(sel), -1)).reshape(num_pairs, 3, -1)
        # One (K + 207, P * 3) matrix maps [betas, pose feature] to the pairs' 3-vectors.
        basis = np.concatenate([h_shapedirs, h_posedirs], axis=2).reshape(num_pairs * 3, -1).T
        self.register_buffer("fast_h_template", torch.as_tensor(h_template.reshape(1, -1), dtype=dtype))
        self.register_buffer("fast_h_basis", torch.as_tensor(np.ascontiguousarray(basis), dtype=dtype))
        self.register_buffer("fast_pair_weight", torch.as_tensor(pair_weight.reshape(1, -1, 1), dtype=dtype))
        self.register_buffer("fast_pair_joint", torch.as_tensor(joints, dtype=torch.long))
        to_output = np.zeros((len(reader), num_pairs))
        to_output[rows, np.arange(num_pairs)] = 1.0
        self.register_buffer("fast_pair_to_output", torch.as_tensor(to_output, dtype=dtype))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_file(
        cls,
        path: str | Path,
        joint_regressor_extra: str | Path | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> BodyModel:
        """Load an SMPL .pkl (official chumpy pickles included) or .npz.

        ``joint_regressor_extra`` (.npy) is optional when the model file carries ``J_regressor_extra``.
        """
        return cls(load_body_arrays(path, joint_regressor_extra), dtype=dtype)

    @classmethod
    def from_files(cls, files, dtype: torch.dtype = torch.float32) -> BodyModel:
        """From a ``spin.body.files.BodyFiles``."""
        return cls.from_file(files.model, files.joint_regressor_extra, dtype=dtype)

    @classmethod
    def default(cls, dtype: torch.dtype = torch.float32) -> BodyModel:
        """The synthetic stand-in body model from the cache (generated on first use)."""
        from spin.body.files import resolve_body_files

        return cls.from_files(resolve_body_files(), dtype=dtype)

    # ------------------------------------------------------------------ properties
    @property
    def num_betas(self) -> int:
        return self._num_betas

    @property
    def lbs_weights(self) -> torch.Tensor:
        """(6890, 24) skinning weights."""
        return self.smpl.lbs_weights

    @property
    def v_template(self) -> torch.Tensor:
        """(6890, 3) template vertices."""
        return self.smpl.v_template

    @property
    def dtype(self) -> torch.dtype:
        return self.fast_h_basis.dtype

    # ------------------------------------------------------------------ inputs
    def _rotmats(self, pose: torch.Tensor) -> torch.Tensor:
        """(B, 72) | (B, 24, 3) axis-angle or (B, 24, 3, 3) matrices -> (B, 24, 3, 3) in the model dtype."""
        pose = pose.to(self.dtype)
        if pose.ndim == 2 and pose.shape[1] == 3 * NUM_SMPL_JOINTS:
            return axis_angle_to_matrix(pose.reshape(-1, NUM_SMPL_JOINTS, 3))
        if pose.ndim == 3 and pose.shape[1:] == (NUM_SMPL_JOINTS, 3):
            return axis_angle_to_matrix(pose)
        if pose.ndim == 4 and pose.shape[1:] == (NUM_SMPL_JOINTS, 3, 3):
            return pose
        raise ValueError(f"pose must be (B, 72), (B, 24, 3) or (B, 24, 3, 3); got {tuple(pose.shape)}")

    def _betas(self, betas: torch.Tensor, batch: int) -> torch.Tensor:
        betas = betas.to(self.dtype)
        if betas.ndim != 2 or betas.shape[1] != self.num_betas or betas.shape[0] not in (1, batch):
            raise ValueError(
                f"betas must be ({batch}, {self.num_betas}) or (1, {self.num_betas}); "
                f"got {tuple(betas.shape)}"
            )
        return betas.expand(batch, -1)

    # ------------------------------------------------------------------ full forward
    def forward(self, pose: torch.Tensor, betas: torch.Tensor) -> BodyOutput:
        """All vertices through smplx's SMPL; joints (B, 49, 3) via MODEL_JOINT_INDEX."""
        rot = self._rotmats(pose)
        betas = self._betas(betas, rot.shape[0])
        if rot.shape[0] == 0:  # smplx cannot reshape an empty batch
            empty = rot.new_zeros
            return BodyOutput(empty(0, self.v_template.shape[0], 3), empty(0, len(self.model_joint_index), 3),
                              empty(0, NUM_SMPL_JOINTS, 3))
        out = self.smpl(betas=betas, body_pose=rot[:, 1:], global_orient=rot[:, :1], pose2rot=False)
        vertices = out.vertices
        extra = torch.einsum("ev,bvc->bec", self.J_regressor_extra, vertices)
        model_joints = torch.cat([out.joints, extra], dim=1)  # (B, 54, 3)
        return BodyOutput(
            vertices=vertices,
            joints=model_joints[:, self.model_joint_index],
            smpl_joints=out.joints[:, :NUM_SMPL_JOINTS],
        )

    # ------------------------------------------------------------------ fast path
    def _global_transforms(self, rot: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        """Posed 3x4 transforms [R_global | posed joint] (B, 24, 3, 4) for rotations (B, 24, 3, 3).

        The chain is composed by pointer jumping: a few batched 4x4 matmuls over all joints at once.
        """
        batch, num = rot.shape[:2]
        rel = torch.addmm(self.fast_rel_template, betas, self.fast_rel_shapedirs).view(batch, num, 3, 1)
        local = torch.cat(
            [torch.cat([rot, rel], dim=-1), self.chain_bottom_row.expand(batch, num, 1, 4)], dim=-2
        )
        transforms = torch.cat([local, self.chain_identity.expand(batch, 1, 4, 4)], dim=1)  # + identity node
        for i in range(self._num_chain_steps):
            transforms = transforms[:, getattr(self, f"chain_step{i}")] @ transforms
        return transforms[:, :num, :3]

    def joints(self, pose: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        """SPIN's 49 joints (B, 49, 3) without skinning the mesh; differentiable, equal to ``forward``'s."""
        rot = self._rotmats(pose)
        batch = rot.shape[0]
        betas = self._betas(betas, batch)
        glob = self._global_transforms(rot, betas)  # (B, 24, 3, 4)

        pose_feature = (rot[:, 1:] - self.chain_identity[0, :, :3, :3]).flatten(1)
        h = torch.addmm(self.fast_h_template, torch.cat([betas, pose_feature], dim=1), self.fast_h_basis)
        num_pairs = self.fast_pair_weight.shape[1]
        # (B, P, 4); explicit sizes so that an empty batch (B = 0) works too
        h = torch.cat([h.view(batch, num_pairs, 3), self.fast_pair_weight.expand(batch, -1, 1)], dim=-1)
        contrib = (glob[:, self.fast_pair_joint] * h[:, :, None, :]).sum(-1)  # [R|t]_joint(p) h_p (B, P, 3)
        read = torch.einsum("ep,bpc->bec", self.fast_pair_to_output, contrib)  # (B, 30, 3), one GEMM
        model_joints = torch.cat([glob[..., 3], read], dim=1)  # (B, 54, 3)
        return model_joints[:, self.model_joint_index]

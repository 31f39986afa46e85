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

from spin.body.kinematics import build_joint_basis, evaluate_joints
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
        self._init_fast_path(arrays, nb, dtype)

    def _init_fast_path(self, arrays: BodyModelArrays, nb: int, dtype: torch.dtype) -> None:
        """The joints path's basis (`kinematics.build_joint_basis`, in float64) as buffers in `dtype`."""
        fast = build_joint_basis(
            arrays.parents, arrays.J_regressor, arrays.v_template, arrays.shapedirs[:, :, :nb],
            arrays.posedirs, arrays.weights, VERTEX_JOINT_IDS, arrays.J_regressor_extra, MODEL_JOINT_INDEX,
        )
        self._num_chain_steps = len(fast.chain_steps)
        for i, anc in enumerate(fast.chain_steps):
            self.register_buffer(f"chain_step{i}", torch.as_tensor(anc), persistent=False)
        for name in ("template", "basis", "to_output"):
            self.register_buffer(f"fast_{name}", torch.as_tensor(getattr(fast, name), dtype=dtype),
                                 persistent=False)
        self.register_buffer("fast_pair_node", torch.as_tensor(fast.pair_node), persistent=False)
        identity = torch.eye(3, dtype=dtype).reshape(1, 1, 3, 3)
        self.register_buffer("chain_identity", identity, persistent=False)

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
        return self.fast_basis.dtype

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
    def joints(self, pose: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        """SPIN's 49 joints (B, 49, 3) without skinning the mesh; differentiable, equal to ``forward``'s."""
        rot = self._rotmats(pose)
        batch = rot.shape[0]
        betas = self._betas(betas, batch)
        rot = torch.cat([rot, self.chain_identity.expand(batch, 1, 3, 3)], dim=1)  # + identity node
        steps = [getattr(self, f"chain_step{i}") for i in range(self._num_chain_steps)]
        return evaluate_joints(rot, betas, self.fast_template, self.fast_basis, steps, self.fast_pair_node,
                               self.fast_to_output)

"""SPIN's 49 joints of an SMPL-layout model without skinning the mesh: a precomputed basis, its evaluation.

Everything the joints need that is linear in (β, rotation matrices) is folded, in float64, into one
matrix, so an evaluation is: Rodrigues, one GEMM, a kinematic chain of 3x4 affine compositions by
pointer jumping (log₂(depth) batched steps), one gather and one GEMM that writes the 49 joints in
SPIN's order. The derivation is in `build_joint_basis`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class JointBasis:
    """The precomputed arrays (float64 numpy) of `build_joint_basis`; N = joints + 1 identity node.

    template `(1, 3N + 4Q)`, basis `(K + 9N, 3N + 4Q)`: [β, vec(R_0..R_{N-1})] -> [bone offsets
    (N, 3), pair vectors (Q, 4)]; chain_steps: ancestor index arrays `(N,)` of the pointer jumping;
    pair_node `(Q,)` the node whose transform each pair reads; to_output `(E, Q)` pair -> output joint.
    """

    template: np.ndarray
    basis: np.ndarray
    chain_steps: tuple[np.ndarray, ...]
    pair_node: np.ndarray
    to_output: np.ndarray


def pointer_jumping_steps(parents: np.ndarray) -> list[np.ndarray]:
    """Ancestor indices `(J + 1,)` per step for composing the kinematic chain in log(depth) batched steps.

    Nodes are the joints plus one identity node (index J) that stands above the root. At step k
    every node's transform is left-multiplied by that of its 2^k-th ancestor; after the last step
    each joint holds its global transform. SMPL's depth of 8 needs 4 steps instead of 23 products.
    """
    num = len(parents)
    anc = np.concatenate([np.where(parents < 0, num, parents), [num]]).astype(np.int64)
    steps = []
    while np.any(anc[:num] != num):
        steps.append(anc.copy())
        anc = anc[anc]
    return steps


def build_joint_basis(parents: np.ndarray, j_regressor: np.ndarray, v_template: np.ndarray,
                      shapedirs: np.ndarray, posedirs: np.ndarray, weights: np.ndarray,
                      vertex_ids: np.ndarray, regressor_extra: np.ndarray,
                      output_index: np.ndarray) -> JointBasis:
    """Fold the model into a `JointBasis` for the outputs [J joints, vertex_ids, extra rows][output_index].

    Shapes: parents (J,), j_regressor (J, V), v_template (V, 3), shapedirs (V, 3, K), posedirs
    (V, 3, 9(J-1)) as SMPL stores it, weights (V, J), vertex_ids (Nv,), regressor_extra (Ne, V).

    Rest joints J(β) = J0 + JS·β, so the chain's bone offsets are linear in β. A vertex-read output
    e (a vertex joint or an extra-regressor row M_e) is out_e = Σ_s M_es Σ_j W_sj A_j [v_s; 1] with
    A_j = [R_j | t_j − R_j J_j] and v_s = v0_s + shapedirs_s·β + posedirs_s·(vec R − vec I). Swapping
    the sums: out_e = Σ_j [R_j | t_j] [U_ej − G_ej J_j; G_ej] with G_ej = Σ_s M_es W_sj and U_ej =
    Σ_s M_es W_sj v_s, both linear in (β, vec R). Only the (output, joint) pairs with G_ej ≠ 0 are
    kept. A chain joint's position t_j is the pair [0, 0, 0; 1] of joint j, so every output is a sum
    of pairs [R|t]·h and one (E, Q) matrix maps the pairs to the outputs in their final order.
    """
    num, nb = len(parents), shapedirs.shape[2]
    nodes = num + 1  # + the identity node above the root
    parent_or_root = np.where(parents < 0, 0, parents)
    j_template = j_regressor @ v_template  # (J, 3)
    j_shapedirs = np.einsum("jv,vck->jck", j_regressor, shapedirs)  # (J, 3, K)
    rel_template = j_template - j_template[parent_or_root]
    rel_shapedirs = j_shapedirs - j_shapedirs[parent_or_root]
    rel_template[0], rel_shapedirs[0] = j_template[0], j_shapedirs[0]  # the root keeps its position

    support = np.nonzero(np.any(regressor_extra != 0, axis=0))[0]
    sel = np.unique(np.concatenate([vertex_ids, support]))
    reader = np.zeros((len(vertex_ids) + len(regressor_extra), len(sel)))  # (30, S)
    reader[np.arange(len(vertex_ids)), np.searchsorted(sel, vertex_ids)] = 1.0
    reader[len(vertex_ids):] = regressor_extra[:, sel]
    w_sel = weights[sel]  # (S, J)
    rows, joints = np.nonzero(reader @ np.abs(w_sel))
    coeff = reader[rows] * w_sel[:, joints].T  # (P, S)
    pair_weight = coeff.sum(1)  # G, (P,)
    h_template = coeff @ v_template[sel] - pair_weight[:, None] * j_template[joints]  # (P, 3)
    h_shapedirs = np.einsum("ps,sck->pck", coeff, shapedirs[sel])
    h_shapedirs -= pair_weight[:, None, None] * j_shapedirs[joints]
    h_posedirs = np.einsum("ps,scf->pcf", coeff, posedirs[sel])  # (P, 3, 9(J-1))

    pairs = num + len(rows)  # Q: the J chain-joint pairs first, then the vertex-read pairs
    rel_cols, pair_cols = 3 * nodes, 4 * pairs
    template = np.zeros((1, rel_cols + pair_cols))
    basis = np.zeros((nb + 9 * nodes, rel_cols + pair_cols))
    rel_t = template[0, :rel_cols].reshape(nodes, 3)
    rel_t[:num] = rel_template
    basis[:nb, :rel_cols].reshape(nb, nodes, 3)[:, :num] = rel_shapedirs.transpose(2, 0, 1)
    pair_t = template[0, rel_cols:].reshape(pairs, 4)
    pair_t[:num, 3] = 1.0
    pair_t[num:, :3] = h_template
    pair_t[num:, 3] = pair_weight
    # Rotation rows of joints 1..J-1 carry the pose blend shapes; their constant −vec I goes to the template.
    pose_rows = slice(nb + 9, nb + 9 * num)
    pair_basis = basis[:, rel_cols:].reshape(-1, pairs, 4)
    pair_basis[:nb, num:, :3] = h_shapedirs.transpose(2, 0, 1)
    pair_basis[pose_rows, num:, :3] = h_posedirs.transpose(2, 0, 1)
    eye = np.tile(np.eye(3).reshape(-1), num - 1)
    pair_t[num:, :3] -= np.einsum("f,pcf->pc", eye, h_posedirs)
    basis = np.ascontiguousarray(basis)

    to_all = np.zeros((num + len(reader), pairs))  # [J joints, vertex joints, extra rows] x pairs
    to_all[np.arange(num), np.arange(num)] = 1.0
    to_all[num + rows, num + np.arange(len(rows))] = 1.0
    return JointBasis(template=template, basis=basis, chain_steps=tuple(pointer_jumping_steps(parents)),
                      pair_node=np.concatenate([np.arange(num), joints]).astype(np.int64),
                      to_output=np.ascontiguousarray(to_all[np.asarray(output_index)]))


def compose_chain(local: torch.Tensor, steps: list[torch.Tensor]) -> torch.Tensor:
    """Global 3x4 transforms `(B, N, 3, 4)` from local ones `(B, N, 3, 4)` by pointer jumping.

    [R|t]∘[R'|t'] = [R R' | R t' + t]: one (3x3)·(3x4) batched product per step (cheaper than 4x4
    products with a constant bottom row), index_select for the ancestors (its backward is an
    index_add, much cheaper than advanced indexing's index_put).
    """
    x = local
    for anc in steps:
        ancestor = x.index_select(1, anc)
        x = torch.matmul(ancestor[..., :3], x) + torch.nn.functional.pad(ancestor[..., 3:], (3, 0))
    return x


def evaluate_joints(rot: torch.Tensor, betas: torch.Tensor, template: torch.Tensor,
                    basis: torch.Tensor, steps: list[torch.Tensor], pair_node: torch.Tensor,
                    to_output: torch.Tensor) -> torch.Tensor:
    """Output joints `(B, E, 3)` for rotations `(B, N, 3, 3)` (identity node last) and betas `(B, K)`.

    The other arguments are a `JointBasis` as tensors (chain_steps as a list).
    """
    batch, nodes = rot.shape[:2]
    pairs = pair_node.shape[0]
    lin = torch.addmm(template, torch.cat([betas, rot.reshape(batch, 9 * nodes)], dim=1), basis)
    rel = lin[:, : 3 * nodes].view(batch, nodes, 3, 1)
    h = lin[:, 3 * nodes:].view(batch, pairs, 4, 1)
    glob = compose_chain(torch.cat([rot, rel], dim=-1), steps)
    contrib = torch.matmul(glob.index_select(1, pair_node), h)  # [R|t]_node(q) h_q, (B, Q, 3, 1)
    # (E, Q) @ (B·3, Q)ᵀ as one GEMM, then back to (B, E, 3)
    flat = contrib.view(batch, pairs, 3).transpose(1, 2).reshape(batch * 3, pairs)
    return torch.mm(flat, to_output.t()).view(batch, 3, to_output.shape[0]).transpose(1, 2)

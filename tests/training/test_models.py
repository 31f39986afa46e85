"""The regressor: shapes, starts at the mean parameters, local-only ImageNet weights."""

import numpy as np
import pytest
import torch
import torchvision

from spin.errors import UserError
from spin.geometry import matrix_to_rot6d, rot6d_to_matrix
from spin.models import ModelConfig, build_regressor

torch.set_num_threads(1)


def _mean_params():
    rotmat = torch.eye(3).expand(24, 3, 3)
    return {"pose": matrix_to_rot6d(rotmat).reshape(-1).numpy(), "shape": np.zeros(10, np.float32),
            "cam": np.array([0.9, 0.0, 0.0], np.float32)}


def test_regressor_shapes_and_orthonormal_rotations():
    model = build_regressor(ModelConfig(backbone="resnet18", img_res=64, hidden=64), _mean_params()).eval()
    out = model(torch.randn(3, 3, 64, 64))
    assert out.rotmat.shape == (3, 24, 3, 3) and out.betas.shape == (3, 10) and out.cam.shape == (3, 3)
    eye = torch.eye(3).expand(3, 24, 3, 3)
    assert torch.allclose(out.rotmat @ out.rotmat.transpose(-1, -2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(out.rotmat), torch.ones(3, 24), atol=1e-5)


def test_regressor_with_zero_heads_returns_the_mean_parameters():
    mean = _mean_params()
    model = build_regressor(ModelConfig(backbone="resnet18", img_res=64, hidden=32), mean).eval()
    for head in (model.dec_pose, model.dec_betas, model.dec_cam):
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
    out = model(torch.randn(2, 3, 64, 64))
    expected = rot6d_to_matrix(torch.as_tensor(mean["pose"]).reshape(24, 6))
    assert torch.allclose(out.rotmat[1], expected)
    assert torch.allclose(out.cam[0], torch.as_tensor(mean["cam"]))


def test_pretrained_weights_load_from_a_local_file_only(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = build_regressor(ModelConfig(backbone="resnet18", pretrained=str(path), hidden=16), _mean_params())
    assert torch.equal(model.encoder.stem[0].weight, reference.conv1.weight)
    with pytest.raises(UserError, match="does not exist"):
        missing = ModelConfig(backbone="resnet18", pretrained=str(tmp_path / "nope.pth"))
        build_regressor(missing, _mean_params())
    with pytest.raises(UserError, match="does not match"):
        build_regressor(ModelConfig(backbone="resnet50", pretrained=str(path)), _mean_params())


def test_unknown_backbone_is_a_user_error():
    with pytest.raises(UserError, match="model.backbone"):
        build_regressor(ModelConfig(backbone="vgg11"), _mean_params())

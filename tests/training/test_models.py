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


def test_every_ief_iteration_is_returned_when_asked_and_the_last_is_the_prediction():
    model = build_regressor(ModelConfig(backbone="resnet18", img_res=64, hidden=64, iterations=3,
                                        head_init_gain=1.0), _mean_params()).eval()
    images = torch.randn(2, 3, 64, 64)
    plain = model(images)
    out = model(images, return_iterations=True)
    assert plain.rotmat_iters is None and plain.betas_iters is None
    assert out.rotmat_iters.shape == (3, 2, 24, 3, 3) and out.betas_iters.shape == (3, 2, 10)
    assert torch.allclose(out.rotmat, plain.rotmat, atol=1e-6)
    assert torch.equal(out.rotmat, out.rotmat_iters[-1])
    assert torch.allclose(out.betas, plain.betas) and torch.equal(out.betas, out.betas_iters[-1])
    # the iterations are distinct estimates (large heads: each residual step moves)
    assert not torch.allclose(out.rotmat_iters[0], out.rotmat_iters[-1], atol=1e-4)


@pytest.mark.parametrize("channels", [1, 6, 24])
def test_backbone_takes_the_representation_channel_count(channels):
    model = build_regressor(ModelConfig(backbone="resnet18", img_res=32, hidden=32, in_channels=channels),
                            _mean_params()).eval()
    assert model.encoder.stem[0].in_channels == channels
    assert model(torch.rand(2, channels, 32, 32)).rotmat.shape == (2, 24, 3, 3)

"""load_regressor: this project's checkpoints and SPIN's released layout, recognised automatically,
predicting what SPIN's own network predicts; clear errors for files of another kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models import resnet50

from spin.errors import UserError
from spin.models import ModelConfig, Regressor, load_regressor, read_regressor
from spin.models.checkpoints import project_to_spin_state


def _means(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"pose": rng.standard_normal(144).astype(np.float32),
            "shape": rng.standard_normal(10).astype(np.float32),
            "cam": np.array([0.9, 0.1, -0.1], np.float32)}


@pytest.fixture(scope="module")
def regressor():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = Regressor(ModelConfig(backbone="resnet50", head_init_gain=1.0), _means())
    # Non-trivial batch-norm statistics so that a wrong key mapping cannot go unnoticed.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _spin_rot6d_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """SPIN's utils.geometry.rot6d_to_rotmat, written from its definition: (B, 6) -> (B, 3, 3)."""
    x = x.view(-1, 3, 2)
    a1, a2 = x[:, :, 0], x[:, :, 1]
    b1 = F.normalize(a1)
    b2 = F.normalize(a2 - torch.einsum("bi,bi->b", b1, a2).unsqueeze(-1) * b1)
    return torch.stack((b1, b2, torch.cross(b1, b2, dim=1)), dim=-1)


def spin_hmr_forward(state: dict[str, torch.Tensor], images: torch.Tensor, n_iter: int = 3):
    """SPIN's HMR.forward from its published structure, on a SPIN-layout state dict."""
    net = resnet50(weights=None)
    net.load_state_dict({k: v for k, v in state.items() if k.split(".")[0] in
                         ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")}, strict=False)
    net.eval()
    x = net.maxpool(net.relu(net.bn1(net.conv1(images))))
    x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
    xf = F.avg_pool2d(x, 7, stride=1).view(images.shape[0], -1)
    pose = state["init_pose"].expand(images.shape[0], -1)
    shape = state["init_shape"].expand(images.shape[0], -1)
    cam = state["init_cam"].expand(images.shape[0], -1)
    lin = lambda name, v: F.linear(v, state[f"{name}.weight"], state[f"{name}.bias"])  # noqa: E731
    for _ in range(n_iter):
        xc = lin("fc2", lin("fc1", torch.cat([xf, pose, shape, cam], 1)))  # dropout: eval mode
        pose, shape, cam = lin("decpose", xc) + pose, lin("decshape", xc) + shape, lin("deccam", xc) + cam
    return _spin_rot6d_to_rotmat(pose).view(images.shape[0], 24, 3, 3), shape, cam


def _spin_file(tmp_path, regressor, prefix=""):
    state = {prefix + k: v for k, v in project_to_spin_state(regressor.state_dict()).items()}
    path = tmp_path / "model_checkpoint.pt"
    torch.save({"model": state, "optimizer": {}, "epoch": 3, "total_step_count": 1000}, path)
    return path, state


@pytest.mark.parametrize("prefix", ["", "module."])
def test_spin_layout_loads_and_predicts_as_spins_network(tmp_path, regressor, prefix):
    path, state = _spin_file(tmp_path, regressor, prefix)
    assert "decshape.weight" in {k.removeprefix(prefix) for k in state} and "layer4.2.bn3.running_var" in {
        k.removeprefix(prefix) for k in state}
    loaded = read_regressor(path)
    assert loaded.layout == "spin" and loaded.config is None
    assert loaded.model.config.backbone == "resnet50" and loaded.model.config.hidden == 1024
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = loaded.model.eval()(images)
        mine = regressor(images)
        spins = spin_hmr_forward({k.removeprefix(prefix): v for k, v in state.items()}, images)
    torch.testing.assert_close(ours.rotmat, mine.rotmat, rtol=0, atol=0)
    for got, want in zip((ours.rotmat, ours.betas, ours.cam), spins, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_project_checkpoint_round_trips(tmp_path, regressor):
    from dataclasses import asdict

    from spin.config import TrainConfig

    config = TrainConfig()
    config.model = ModelConfig(backbone="resnet50", head_init_gain=1.0)
    path = tmp_path / "last.pt"
    torch.save({"model": regressor.state_dict(), "config": asdict(config)}, path)
    loaded = read_regressor(path)
    assert loaded.layout == "project" and loaded.config.model.backbone == "resnet50"
    for key, value in regressor.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    with pytest.raises(UserError, match="model.backbone=resnet50 but the run asks for resnet18"):
        load_regressor(path, ModelConfig(backbone="resnet18"))


def test_project_weights_without_config_are_a_clear_error(tmp_path, regressor):
    path = tmp_path / "weights.pt"
    torch.save({"model": regressor.state_dict()}, path)
    with pytest.raises(UserError, match="no saved config"):
        load_regressor(path)


def test_another_architecture_is_a_clear_error(tmp_path, regressor):
    path, state = _spin_file(tmp_path, regressor)
    state["fc1.weight"] = state["fc1.weight"][:, :100]  # fc1 of another input width
    torch.save({"model": state}, path)
    with pytest.raises(UserError, match="another architecture"):
        load_regressor(path)
    torch.save({"model": {"features.0.weight": torch.zeros(3)}}, path)
    with pytest.raises(UserError, match="weights of another network"):
        load_regressor(path)
    path.write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="cannot be read"):
        load_regressor(path)

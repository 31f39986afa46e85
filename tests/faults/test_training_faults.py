"""Trainer/CLI faults end in one clear error or a clean stop (issue 9): unreachable Ray address,
unknown device, architecture override on --resume, SIGTERM, a checkpoint write that fails."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from spin.config import TrainConfig
from spin.config_loading import config_to_yaml
from spin.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def _run_python(code: str, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT, **kwargs)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_ray_address_is_a_clear_error_within_the_timeout():
    from fitting_workers.runtime import start_ray

    address = f"127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    with pytest.raises(UserError, match=address.replace(".", r"\.")):
        start_ray(address=address, connect_timeout_s=2.0)
    assert time.monotonic() - start < 10.0


def test_an_address_that_accepts_but_is_no_ray_cluster_gives_up_after_the_timeout():
    # A listener that never speaks Ray's protocol: ray.init would retry; the bound must hold.
    code = """
        import socket, threading, time
        server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(8)
        threading.Thread(target=lambda: [server.accept() for _ in range(100)], daemon=True).start()
        address = "127.0.0.1:%d" % server.getsockname()[1]
        from fitting_workers.runtime import start_ray
        from spin.errors import UserError
        start = time.monotonic()
        try:
            start_ray(address=address, connect_timeout_s=3.0)
        except UserError as err:
            print("USERERROR", address in str(err), round(time.monotonic() - start, 1))
        import os; os._exit(0)
    """
    result = _run_python(code, timeout=90)
    line = [x for x in result.stdout.splitlines() if x.startswith("USERERROR")]
    assert line, result.stdout + result.stderr
    _, names_address, seconds = line[0].split()
    assert names_address == "True" and float(seconds) < 30.0


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "gpu"])
def test_an_unknown_device_is_a_config_error(device):
    from spin.config_loading import load_config
    from spin.training.trainer import select_device

    with pytest.raises(UserError, match="device"):
        select_device(device)
    with pytest.raises(UserError, match="Config key device"):  # already when the config loads
        load_config(TrainConfig, None, [f"device={device}"])


def test_resume_with_an_architecture_override_names_the_key(tmp_path):
    from spin.cli.train import train_command

    (tmp_path / "config.yaml").write_text(config_to_yaml(TrainConfig()))
    with pytest.raises(UserError, match=r"model\.backbone"):
        train_command(overrides=["model.backbone=resnet18"], config=None, run_dir=None, resume=tmp_path)


def test_a_failed_checkpoint_write_keeps_the_last_good_one(tmp_path):
    from spin.training.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1, "weights": torch.zeros(4)})
    good = path.read_bytes()
    # The file-size limit makes the write fail with EFBIG, as a full disk fails with ENOSPC.
    code = f"""
        import resource, signal, torch
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
        from spin.training.checkpoint import save_checkpoint
        from spin.errors import UserError
        try:
            save_checkpoint({str(path)!r}, {{"step": 2, "weights": torch.zeros(1_000_000)}})
        except UserError as err:
            print("USERERROR", err)
    """
    result = _run_python(code, timeout=120)
    assert "USERERROR" in result.stdout and "disk is full" in result.stdout, result.stdout + result.stderr
    assert "is kept" in result.stdout
    assert path.read_bytes() == good and load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from spin.body import BodyModel
    from spin.data.synthetic import synthesize_dataset

    torch.set_num_threads(1)
    return synthesize_dataset(tmp_path_factory.mktemp("faults_synth"), BodyModel.default(), n_train=8,
                              n_test=2, image_size=32, seed=3, gt_fraction=0.5, progress=False)


def test_sigterm_stops_cleanly_with_a_resume_line(tmp_path, tiny_data):
    run_dir = tmp_path / "run"
    overrides = [
        'fitting.mode="off"', "wandb.enabled=false", "torch_threads=1", "model.backbone=resnet18",
        "model.img_res=32", "model.hidden=16", "data.source=files", "data.batch_size=2", "data.num_workers=0",
        'optim.amp="off"', "rounds.num_rounds=1", "rounds.steps_per_round=100000",
        "rounds.checkpoint_every=2", "rounds.overlay_images=0", f"run_dir={run_dir}",
        f"data.train=[{{name: synth, annotations: '{tiny_data['train']}'}}]",
        f"data.test={{name: synth_test, annotations: '{tiny_data['test']}'}}",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", RAY_ADDRESS="local", COLUMNS="200")
    process = subprocess.Popen([sys.executable, "-m", "spin.cli.main", "train", *overrides], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    last = run_dir / "last.pt"
    deadline = time.monotonic() + 240
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, process.stdout.read()
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, output
    assert f"spin train --resume {run_dir}" in " ".join(output.split()), output
    assert "Traceback" not in output
    step = torch.load(last, weights_only=False)["step"]
    assert f"at step {step} " in output  # last.pt holds the step it says it stopped at

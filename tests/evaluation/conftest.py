"""Fixtures of the evaluation tests: the synthetic body model and a tiny test split."""

import pytest
import torch


@pytest.fixture(scope="session")
def body():
    from spin.body import BodyModel

    torch.set_num_threads(1)
    return BodyModel.default()


@pytest.fixture(scope="session")
def test_split(tmp_path_factory, body):
    from spin.data.synthetic import synthesize_dataset

    out = tmp_path_factory.mktemp("eval_synth")
    return synthesize_dataset(out, body, n_train=0, n_test=6, image_size=64, seed=4, progress=False)["test"]


@pytest.fixture(scope="session")
def eval_app():
    """A typer app with `spin eval` mounted (two commands, so typer keeps the "eval" name)."""
    import typer

    from spin.cli.eval import eval_command

    app = typer.Typer()
    app.command("eval")(eval_command)
    app.command("noop")(lambda: None)
    return app

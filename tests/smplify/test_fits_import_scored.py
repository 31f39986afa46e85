"""`spin fits import --data`: static fits scored as SPIN scores them, stored with their real loss."""

from __future__ import annotations

import numpy as np
import typer
from typer.testing import CliRunner

from fitting_workers.smplify import SMPLify, SmplifyConfig
from fitting_workers.smplify.synthetic import make_problems, save_problems
from spin.cli.fits import fits_app
from store import UNSCORED_LOSS, FitsStore


def _app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(fits_app, name="fits")
    return app


def test_scored_import_stores_smplifys_own_loss_and_skips_unscorable_rows(body, body_files, tmp_path):
    problems = make_problems(body, 5, seed=21, missing_fraction=0.0)
    problems.keypoints[4, :, 2] = 0.0  # no confident keypoint: cannot be scored, never stored
    data, _ = save_problems(problems, tmp_path)
    rows = np.concatenate([problems.init_pose, problems.init_betas], axis=1).astype(np.float32)
    np.save(tmp_path / "fits.npy", rows)
    store = tmp_path / "fits.lmdb"
    result = CliRunner().invoke(_app(), ["fits", "import", str(tmp_path / "fits.npy"), "--store", str(store),
                                         "--dataset", "d", "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "too_few_keypoints 1" in result.output
    with FitsStore(store, readonly=True) as fits:
        got = fits.get([f"d/{i}" for i in range(5)])
    assert got["present"].tolist() == [True, True, True, True, False]
    smplify = SMPLify(body, body_files.prior, SmplifyConfig())
    expected = smplify.quality(rows[:4, :72], rows[:4, 72:], got["cam_t"][:4], problems.keypoints[:4])
    np.testing.assert_allclose(got["loss"][:4], expected, rtol=1e-4, atol=1e-4)
    assert (got["loss"][:4] < UNSCORED_LOSS).all() and (got["loss"][:4] >= 0).all()
    # the estimated camera is SPIN's: in front of the image plane, near the true translation
    assert (got["cam_t"][:4, 2] > 0).all()
    np.testing.assert_allclose(got["cam_t"][:4, 2], problems.gt_cam_t[:4, 2], rtol=0.2)


def test_scored_import_needs_the_matching_dataset(body, tmp_path):
    problems = make_problems(body, 3, seed=22)
    data, _ = save_problems(problems, tmp_path)
    np.save(tmp_path / "fits.npy", np.zeros((4, 82), np.float32))
    result = CliRunner().invoke(_app(), ["fits", "import", str(tmp_path / "fits.npy"), "--store",
                                         str(tmp_path / "s"), "--dataset", "d", "--data", str(data)])
    assert result.exit_code != 0
    assert "has 3 samples but the fits file has 4 rows" in str(result.exception)
    assert not (tmp_path / "s").exists()


def test_show_png_draws_the_fitted_mesh_over_the_crop(body, tmp_path):
    from PIL import Image

    problems = make_problems(body, 2, seed=23, missing_fraction=0.0)
    data, _ = save_problems(problems, tmp_path)
    for i in range(2):  # the sample's image: the 224 crop itself (box = crop), a plain dark picture
        Image.fromarray(np.full((224, 224, 3), 30, np.uint8)).save(tmp_path / f"{i:04d}.jpg")
    with FitsStore(tmp_path / "s") as fits:
        fits.put_if_better(["d/1"], problems.gt_pose[1:], problems.gt_betas[1:], problems.gt_cam_t[1:], [1.0])
    out = tmp_path / "fit.png"
    args = ["fits", "show", "d/1", "--store", str(tmp_path / "s"), "--png", str(out), "--data", str(data)]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    picture = np.asarray(Image.open(out))
    assert picture.shape == (224, 224, 3)
    drawn = np.abs(picture.astype(int) - 30).sum(axis=2) > 30
    # the true fit covers the person: the drawn pixels surround the keypoints' centre
    centre = problems.keypoints[1, problems.keypoints[1, :, 2] > 0, :2].mean(axis=0).round().astype(int)
    assert 0.02 < drawn.mean() < 0.9 and drawn[centre[1], centre[0]]

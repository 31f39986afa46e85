"""The run's datasets: the embedded synthetic set (generated once into the cache) or the user's files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from spin.body import BodyModel
from spin.body.files import BodyFiles
from spin.config import DataConfig, SyntheticDataConfig
from spin.data.datasets import MixedDataset, SpinImageDataset
from spin.paths import cache_dir

SYNTHETIC_TRAIN, SYNTHETIC_TEST = "synth_train", "synth_test"


@dataclass
class TrainData:
    """train: one dataset or a `MixedDataset`; weights (N,) for the sampler or None (uniform epochs);
    sizes: train dataset name → rows (declared in the store); test: the evaluation split."""

    train: Dataset
    weights: np.ndarray | None
    sizes: dict[str, int]
    test: SpinImageDataset

    @property
    def train_datasets(self) -> list[SpinImageDataset]:
        """The training datasets, in the mixture's order."""
        return list(self.train.datasets) if isinstance(self.train, MixedDataset) else [self.train]

    def keypoints(self) -> dict[str, np.ndarray]:
        """Training dataset name → (N, 49, 3) canonical keypoints in SPIN's 224-px crop (SMPLify's)."""
        return {d.name: d.annotations.keypoints for d in self.train_datasets}


def synthetic_files(config: SyntheticDataConfig, body: BodyModel, body_files: BodyFiles) -> dict[str, Path]:
    """The synthetic dataset of `config` for this body model: generated on first use into
    `cache_dir()/synthetic_data/<digest>/` (temp folder + rename, safe when runs race)."""
    from spin.data.synthetic import META_VERSION, SynthConfig, synthesize_dataset

    # The representation only changes what the loader builds from the same files: not part of the identity.
    identity = {**{k: v for k, v in asdict(config).items() if k != "representation"},
                "body_model": str(Path(body_files.model).resolve()), "version": META_VERSION}
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    root = cache_dir() / "synthetic_data"
    final = root / digest
    manifest = final / "manifest.json"
    if not manifest.is_file():
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{digest}.", dir=root))
        try:
            paths = synthesize_dataset(tmp, body, n_train=config.n_train, n_test=config.n_test,
                                       image_size=config.image_size, seed=config.seed,
                                       gt_fraction=config.gt_fraction,
                                       config=SynthConfig(joints3d_for_all=config.joints3d_for_all))
            (tmp / "manifest.json").write_text(json.dumps(
                {"identity": identity, "train": str(Path(paths["train"]).relative_to(tmp)),
                 "test": str(Path(paths["test"]).relative_to(tmp))}))
            try:
                os.rename(tmp, final)
            except OSError:  # another process finished first: use its copy
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    entry = json.loads(manifest.read_text())
    return {"train": final / entry["train"], "test": final / entry["test"]}


def build_data(config: DataConfig, img_res: int, body: BodyModel, body_files: BodyFiles) -> TrainData:
    """Datasets of the run: augmented training data (mixed when several), un-augmented test split."""
    if config.source == "synthetic":
        files = synthetic_files(config.synthetic, body, body_files)
        representation = config.synthetic.representation
        train = [SpinImageDataset(files["train"], name=SYNTHETIC_TRAIN, img_res=img_res,
                                  augment=config.augment, representation=representation)]
        ratios = [1.0]
        test = SpinImageDataset(files["test"], name=SYNTHETIC_TEST, img_res=img_res, augment=None,
                                representation=representation)
    else:
        train = [SpinImageDataset(spec.annotations, spec.h5 or spec.images, name=spec.name or None,
                                  img_res=img_res, augment=config.augment) for spec in config.train]
        ratios = [spec.ratio for spec in config.train]
        spec = config.test
        assert spec is not None  # TrainConfig validates this
        test = SpinImageDataset(spec.annotations, spec.h5 or spec.images, name=spec.name or None,
                                img_res=img_res, augment=None)
    sizes = {d.name: len(d) for d in train}
    if len(train) == 1:
        return TrainData(train=train[0], weights=None, sizes=sizes, test=test)
    mixed = MixedDataset(train, ratios)
    return TrainData(train=mixed, weights=mixed.sample_weights(), sizes=sizes, test=test)

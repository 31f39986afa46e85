"""Finished runs shared between experiment folders (`spin experiment --reuse DIR`).

Several experiments hold the same run under another row name: `nbf-3d-fraction`'s `off-10pct` is
`spin-table1`'s `2d-only`, `hmr-unpaired`'s `2d-only` is `off-0pct`. A planned run whose resolved
training config (seed included) equals that of a finished run in a `--reuse` folder is linked to it
instead of trained again: its folder holds symlinks to the other run's files and its own
`experiment_run.json`, which names the source (`reused_from`). Deleting the source breaks the links;
the next invocation then finds the run unstarted and trains it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from spin.errors import UserError
from spin.training.rounds import METRICS_FILE, round_dir

# Neither changes what a run trains: where it writes (run_dir is its folder anyway) and how it logs.
IGNORED_SECTIONS = ("run_dir", "wandb")
CONFIG_FILE = "config.yaml"  # spin.training.trainer.CONFIG_FILE (not imported: it pulls in the trainer)
RUN_RECORD = "experiment_run.json"  # the runner's record of a run's row, seed and overrides


def training_identity(config_path: Path, overrides: list[str]) -> dict[str, Any]:
    """The run's resolved config as `spin train` loads it, without `IGNORED_SECTIONS`, and with
    SMPLify's schedule as it runs (a field left None takes the mode's preset: None and the preset's
    own value train alike)."""
    from spin.config import TrainConfig
    from spin.config_loading import load_config

    config = load_config(TrainConfig, config_path, overrides)
    identity = {key: value for key, value in asdict(config).items() if key not in IGNORED_SECTIONS}
    try:
        schedule = asdict(config.fitting.smplify.resolved())
    except ValueError:
        schedule = {}  # an invalid schedule: compared as written (such a run never finished anyway)
    identity["fitting"]["smplify"].update(schedule)
    return identity


def finished_runs(folder: Path) -> dict[str, Path]:
    """Finished runs of the experiment folder `folder`, keyed by their training identity (as JSON).

    A run counts when its own `config.yaml` resolves and its last round's metrics exist; runs that
    are themselves links to another folder are followed to their source.
    """
    if not (folder / "runs").is_dir():
        raise UserError(
            f"--reuse {folder}: no experiment folder there (it has no runs/); pass the --out of an "
            "earlier `spin experiment`."
        )
    found: dict[str, Path] = {}
    for config_file in sorted((folder / "runs").glob(f"*/seed_*/{CONFIG_FILE}")):
        run_dir = config_file.parent.resolve()
        try:
            identity = training_identity(config_file, [])
        except UserError:
            continue  # written by a version with other config keys: not comparable
        metrics = round_dir(run_dir, int(identity["rounds"]["num_rounds"])) / METRICS_FILE
        if metrics.is_file():
            found.setdefault(_key(identity), _source_of(run_dir))
    return found


def _key(identity: dict[str, Any]) -> str:
    return json.dumps(identity, sort_keys=True, default=str)


def reused_from(run_dir: Path) -> str | None:
    """The source folder a linked run stands for (its record's `reused_from`), None for a run of its own."""
    record = run_dir / RUN_RECORD
    if not record.is_file():
        return None
    return json.loads(record.read_text()).get("reused_from") or None


def _source_of(run_dir: Path) -> Path:
    """The folder that holds the run's files: a reused run's own source, else the run itself."""
    source = reused_from(run_dir)
    return Path(source) if source else run_dir


def identical_run(config_path: Path, overrides: list[str], index: dict[str, Path]) -> Path | None:
    """The finished run in `index` (from `finished_runs`) that trains exactly as this one, if any."""
    return index.get(_key(training_identity(config_path, overrides)))


def link_run(source: Path, run_dir: Path, record: dict[str, Any]) -> None:
    """Make `run_dir` stand for `source`: a symlink to each of its files, and the run's own record."""
    run_dir.mkdir(parents=True)
    for entry in sorted(source.iterdir()):
        if entry.name != RUN_RECORD:
            (run_dir / entry.name).symlink_to(entry.resolve())
    (run_dir / RUN_RECORD).write_text(json.dumps({**record, "reused_from": str(source)}, indent=2))

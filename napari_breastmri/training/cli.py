"""``breastmri train``: train a model package (the demo models, on the phantom or on real layouts).

One command reproduces a shipped package, for example::

    breastmri train --task seg --cases 60 --seed 1 --out napari_breastmri/models/weights

Phantom cases are split by seed: training seeds ``seed * 10000 + i``, validation (temperature
scaling, never trained on) ``seed * 10000 + 5000 + i``, and a held-out test set with fixed seeds
``900000000 + i`` that no training seed can reach. With ``--data`` the cases come from a
MAMA-MIA / nnU-Net folder (or a Duke box CSV with ``--duke-boxes``) and the last 25 % of cases,
in sorted order, are held out; ``--corrections`` fine-tunes on corrections saved in the viewer.
"""

from __future__ import annotations

import argparse
import shlex
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from ..errors import BreastMRIError
from ..types import Progress
from .data import RawCase, Sample
from .tasks import LESION_SAMPLING, TASKS, TaskSpec, get_task

TEST_SEED0 = 900_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--task", required=True, type=_task_list,
        help=f"what to train: one of {', '.join(TASKS)}, a comma-separated list of them, or 'all'",
    )  # fmt: skip
    parser.add_argument("--cases", type=int, default=60, help="training cases (phantom) [60]")
    parser.add_argument(
        "--val-cases", type=int, default=None, help="validation cases (phantom) [cases/4, >= 12]"
    )
    parser.add_argument("--test-cases", type=int, default=40, help="held-out test cases (phantom) [40]")
    parser.add_argument("--seed", type=int, default=1, help="seed for cases, initialisation and sampling [1]")
    parser.add_argument("--epochs", type=int, default=None, help="passes over the training cases [per task]")
    parser.add_argument("--out", required=True, help="folder to write the package(s) into (OUT/<name>/)")
    parser.add_argument("--init", default=None, help="fine-tune from this package (name, folder or .zip)")
    parser.add_argument("--name", default=None, help="package name [the demo name]")
    parser.add_argument(
        "--data", default=None, help="train on a MAMA-MIA / nnU-Net folder (or Duke/case folder)"
    )
    parser.add_argument("--clinical", default=None, help="clinical CSV with case-level labels (with --data)")
    parser.add_argument("--duke-boxes", default=None, help="Duke-style Annotation_Boxes.csv (with --data)")
    parser.add_argument(
        "--corrections", default=None, help="annotation store saved in the viewer (with --data CASE)"
    )
    parser.add_argument("--cache", default=None, help="cache folder for preprocessed phantom cases")
    parser.add_argument(
        "--phantom-shape",
        type=int,
        nargs=3,
        default=None,
        metavar=("Z", "Y", "X"),
        help="phantom volume shape (default: the phantom's own)",
    )
    parser.add_argument(
        "--phantom-spacing",
        type=float,
        nargs=3,
        default=None,
        metavar=("DZ", "DY", "DX"),
        help="phantom voxel size for training/validation cases (the held-out set keeps the default)",
    )
    parser.add_argument(
        "--held-out-grid",
        choices=["default", "same"],
        default="default",
        help="held-out cases on the phantom's default grid (honest) or the training grid (tests)",
    )
    parser.add_argument(
        "--lesion-sampling",
        choices=list(LESION_SAMPLING),
        default="voxel",
        help="segmentation: centre lesion patches on any lesion voxel [voxel]; the same with small "
        "lesions weighed up in the loss [sized]; or, with those weights, mostly on the lesions the "
        "network misses, re-measured during the run [missed: for fine-tuning with --init]",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads [2]")
    parser.add_argument(
        "--device", default=None, help="cpu, cuda or auto [auto: CUDA when present, else the CPU]"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="processes generating phantom cases in parallel [1]"
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="the whole command's time budget in seconds: segmentation (trained last) takes what is "
        "left after the data, the classifiers and a reserve for its evaluation, by capping its patch steps",
    )


def _task_list(text: str) -> list[str]:
    keys = list(TASKS) if text == "all" else [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in keys if k not in TASKS]
    if bad or not keys:
        raise argparse.ArgumentTypeError(
            f"unknown task(s) {bad or text!r}; choose from {', '.join(TASKS)} or 'all'"
        )
    return keys


def run(args: argparse.Namespace) -> int:
    import torch

    from .. import progress

    torch.set_num_threads(max(1, args.threads))
    pkgs = progress.run(train_tasks(args.task, args), progress.tqdm_printer(f"train {','.join(args.task)}"))
    for pkg in pkgs:
        print(f"{pkg.card.name}: {pkg.path}")
        for k, v in pkg.card.metrics.items():
            print(f"  {k}: {v}")
    return 0


def _command(args: argparse.Namespace, key: str) -> str:
    """The one command that reproduces this package (recorded in its card)."""
    parts = ["breastmri", "train", "--task", key, "--cases", str(args.cases), "--seed", str(args.seed)]
    parts += ["--test-cases", str(args.test_cases)]
    for flag in (
        "val_cases",
        "epochs",
        "init",
        "name",
        "data",
        "clinical",
        "duke_boxes",
        "corrections",
        "device",
        "time_limit",
    ):
        value = getattr(args, flag)
        if value is not None:
            parts += ["--" + flag.replace("_", "-"), str(value)]
    if args.phantom_shape:
        parts += ["--phantom-shape", *map(str, args.phantom_shape)]
    if args.phantom_spacing:
        parts += ["--phantom-spacing", *map(str, args.phantom_spacing)]
    if args.held_out_grid != "default":
        parts += ["--held-out-grid", args.held_out_grid]
    if getattr(args, "lesion_sampling", "voxel") != "voxel":
        parts += ["--lesion-sampling", args.lesion_sampling]
    return " ".join(shlex.quote(p) for p in parts + ["--out", str(args.out)])


def _apply_init(spec: TaskSpec, init: str) -> tuple[TaskSpec, Any]:
    """Take the channels, grid and network of the package being fine-tuned, and its weights."""
    from ..models.package import load_package

    pkg = load_package(init)
    card = pkg.card
    if card.task != spec.card_task:
        raise BreastMRIError(
            f"--init {init} is a '{card.task}' model but task {spec.key} trains '{spec.card_task}'."
        )
    spec.channels = list(card.inputs.channels)
    spec.spacing_mm, spec.resize_to = card.inputs.spacing_mm, card.inputs.resize_to
    spec.patch_size = card.inputs.patch_size or spec.patch_size
    spec.normalisation = dict(card.inputs.normalisation)
    spec.features = list(card.network.kwargs.get("features", spec.features))
    spec.dropout = float(card.network.kwargs.get("dropout", spec.dropout))
    spec.classes = list(card.outputs.classes)
    # the path alone says nothing once the package there is replaced (as a fine-tune's output may do)
    spec.init_from = f"{card.name} {card.version} (weights sha256 {card.weights.sha256}) from {init}"
    net = pkg.build("cpu")
    return spec, {k: v.detach().clone() for k, v in net.state_dict().items()}


def _phantom_splits(
    specs: list[TaskSpec], cards: dict[str, Any], args
) -> Generator[Progress, None, tuple[dict[str, dict[str, list[Sample]]], str]]:
    """Train / validation / held-out samples for every task, each phantom case generated once."""
    from .. import progress
    from .data import phantom_sample_sets

    n_val = args.val_cases if args.val_cases is not None else max(12, args.cases // 4)
    base = args.seed * 10_000
    seeds = {
        "train": [base + i for i in range(args.cases)],
        "val": [base + 5_000 + i for i in range(n_val)] if any(not s.is_segmentation for s in specs) else [],
        "test": [TEST_SEED0 + i for i in range(args.test_cases)],
    }
    cache = Path(args.cache) if args.cache else None
    kw: dict[str, Any] = {}
    if args.phantom_shape:
        kw["shape"] = tuple(args.phantom_shape)
    if args.phantom_spacing:
        kw["spacing"] = tuple(args.phantom_spacing)
    longitudinal = any(s.longitudinal for s in specs)
    total = sum(len(v) for v in seeds.values())
    splits: dict[str, dict[str, list[Sample]]] = {s.key: {} for s in specs}
    done = 0
    for name, ss in seeds.items():
        for spec in specs:
            splits[spec.key][name] = []
        pk = kw if name != "test" or args.held_out_grid == "same" else {}
        if args.workers > 1:
            from .data import fill_phantom_cache

            yield from progress.scaled(
                fill_phantom_cache(
                    ss,
                    cards,
                    longitudinal=longitudinal,
                    cache_dir=cache,
                    phantom_kwargs=pk,
                    workers=args.workers,
                ),
                0.4 * done / total,
                0.4 * (done + len(ss)) / total,
            )
        # the held-out set is by default the phantom's default grid: what a user would run
        it = phantom_sample_sets(
            ss,
            cards,
            longitudinal=longitudinal,
            keep_truth=name == "test",
            cache_dir=cache,
            phantom_kwargs=pk,
        )
        for i, sets in enumerate(it):
            for key, sample in sets.items():
                splits[key][name].append(sample)
            yield Progress(f"data ({name})", 0.4 * (done + i + 1) / total, f"case {i + 1}/{len(ss)}")
        done += len(ss)
    grid = ", generated with " + ", ".join(f"{k} {v}" for k, v in kw.items()) if kw else ""
    # segmentation alone uses no validation cases: say none, not "0 validation cases"
    val = f"{len(seeds['val'])} validation cases (seeds from {base + 5000}{grid}), " if seeds["val"] else ""
    data = (
        f"synthetic phantom (napari_breastmri.phantom.generate_case{', longitudinal' if longitudinal else ''}): "
        f"{len(seeds['train'])} training cases (seeds {base}..{base + args.cases - 1}{grid}), "
        f"{val}{len(seeds['test'])} held-out test cases "
        f"{'at the phantom default grid' if args.held_out_grid == 'default' else 'on the training grid'} "
        f"(seeds {TEST_SEED0}..{TEST_SEED0 + args.test_cases - 1})"
    )
    return splits, data


def _raw_cases(args) -> list[RawCase]:
    from . import data as D

    if args.corrections:
        from ..io import load_study

        return [D.read_corrections(load_study(args.data), args.corrections)]
    if args.duke_boxes:
        return sorted(D.read_duke_folder(args.data, args.duke_boxes), key=lambda r: r.case_id)
    return sorted(D.read_nifti_folder(args.data, args.clinical), key=lambda r: r.case_id)


def _folder_splits(
    specs: list[TaskSpec], cards: dict[str, Any], args
) -> Generator[Progress, None, tuple[dict[str, dict[str, list[Sample]]], str]]:
    """Splits from a dataset folder: the last 25 % of cases (sorted) held out, 12.5 % validation."""
    from .data import make_sample

    raws = _raw_cases(args)
    if not raws:
        raise BreastMRIError(f"No training cases found in {args.data}.")
    n_test = len(raws) // 4 if len(raws) >= 4 else 0
    n_val = len(raws) // 8 if len(raws) >= 8 else 0
    cut_val, cut_test = len(raws) - n_test - n_val, len(raws) - n_test
    splits: dict[str, dict[str, list[Sample]]] = {s.key: {"train": [], "val": [], "test": []} for s in specs}
    for i, raw in enumerate(raws):
        name = "train" if i < cut_val else "val" if i < cut_test else "test"
        for spec in specs:
            splits[spec.key][name].append(make_sample(raw, cards[spec.key], keep_truth=name == "test"))
        yield Progress("data", 0.4 * (i + 1) / len(raws), raw.case_id)
    src = "corrections " + str(args.corrections) if args.corrections else str(args.data)
    data = f"{src}: {cut_val} training, {n_val} validation, {n_test} held-out cases (sorted by case id)"
    return splits, data


def train_tasks(keys: list[str], args: argparse.Namespace) -> Generator[Progress, None, list[Any]]:
    """Data for all tasks at once, then per task: training -> held-out metrics -> package."""
    from .. import progress

    t0 = time.perf_counter()
    specs, inits = [], {}
    for key in keys:
        spec = get_task(key)
        if args.init:
            spec, inits[key] = _apply_init(spec, args.init)
        if args.name:
            spec.name = args.name
        specs.append(spec)
    # segmentation last: the classifiers take a fixed, short time, so a --time-limit only ever
    # shortens the one training that can use any amount of time
    specs.sort(key=lambda s: s.is_segmentation)
    cards = {s.key: s.parsed_card() for s in specs}
    if args.data:
        splits, data = yield from _folder_splits(specs, cards, args)
    else:
        splits, data = yield from _phantom_splits(specs, cards, args)
    data_seconds = time.perf_counter() - t0
    pkgs = []
    for k, spec in enumerate(specs):
        lo, hi = 0.4 + 0.6 * k / len(specs), 0.4 + 0.6 * (k + 1) / len(specs)
        gen = train_one(spec, splits[spec.key], args, data, data_seconds, inits.get(spec.key), t0)
        pkgs.append((yield from progress.scaled(gen, lo, hi)))
    return pkgs


def train_one(
    spec: TaskSpec,
    split: dict[str, list[Sample]],
    args,
    data: str,
    data_seconds: float,
    init_state=None,
    t_start: float | None = None,
) -> Generator[Progress, None, Any]:
    """Train one task on its samples, measure it on the held-out ones, write its package."""
    from .. import progress
    from ..models.package import save_package
    from . import loops

    train, val, test = split["train"], split["val"], split["test"]
    epochs = args.epochs if args.epochs is not None else spec.default_epochs
    device = getattr(args, "device", None)
    t_train = time.perf_counter()
    stats: dict[str, Any] = {}
    limit = getattr(args, "time_limit", None)
    if limit and t_start is not None:
        # what is left of the budget, less about 1 s per held-out case for the evaluation
        limit = max(30.0, limit - (time.perf_counter() - t_start) - 1.0 * len(test))
    if spec.is_segmentation:
        net = yield from progress.scaled(
            loops.train_segmentation(
                spec,
                train,
                epochs,
                args.seed,
                init_state,
                device,
                limit,
                stats,
                lesion_sampling=getattr(args, "lesion_sampling", "voxel"),
            ),
            0.0,
            0.85,
        )
    else:
        if not any(s.label is not None for s in train):
            raise BreastMRIError(
                f"No training case has a '{spec.target}' label; give a clinical CSV with that column."
            )
        net = yield from progress.scaled(
            loops.train_classifier(spec, train, epochs, args.seed, init_state, device), 0.0, 0.85
        )
    train_seconds = time.perf_counter() - t_train
    t_eval = time.perf_counter()
    metrics: dict[str, Any] = {}
    if test:
        if spec.is_segmentation:
            metrics = yield from progress.scaled(
                loops.evaluate_segmentation(spec, net, test, device), 0.85, 1.0
            )
        elif val and any(s.label is not None for s in test):
            metrics = loops.evaluate_classifier(spec, net, val, test)
    eval_seconds = time.perf_counter() - t_eval
    metrics["evaluated_on"] = (
        "held-out synthetic phantom cases" if not args.data else "held-out cases of the training source"
    )
    training = {
        "data": data,
        "command": _command(args, spec.key),
        "seconds": round(data_seconds + train_seconds + eval_seconds, 1),
        "data_seconds": round(data_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "epochs": epochs,
        **stats,
        "train_cases": len([s for s in train if spec.is_segmentation or s.label is not None]),
        "seed": args.seed,
        "machine": _machine(device),
        "init": spec.init_from or (str(args.init) if args.init else None),
    }
    doc = spec.card(training={k: v for k, v in training.items() if v is not None}, metrics=metrics)
    pkg = save_package(Path(args.out) / spec.name, doc, net)
    yield Progress("done", 1.0, spec.name)
    return pkg


def _machine(device: str | None = None) -> str:
    """Where the training ran, for the card: the CPU, and the GPU when it trained there."""
    import os
    import platform

    from ..inference.device import pick_device

    cpu = f"{platform.machine()} CPU, {os.cpu_count()} cores, torch threads {_threads()}"
    dev = pick_device(device)
    if dev.type == "cuda":
        import torch

        return f"{torch.cuda.get_device_name(dev)} (CUDA, torch {torch.__version__}); {cpu}"
    return cpu


def _threads() -> int:
    import torch

    return torch.get_num_threads()

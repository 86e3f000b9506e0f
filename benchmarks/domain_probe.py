#!/usr/bin/env python
"""How well a fresh patch-wise domain classifier tells source from target in a trained detector's
backbone features, and where in the image: a probe of what image-level alignment left (or had).

For each checkpoint, the backbone's features (``--features``, default the config's
``MODEL.DA.IMAGE.IN_FEATURES`` or else the RPN's) of ``--images`` source and target training images
are computed once, frozen; a new :class:`ImageDomainClassifier` (one head shared by the levels,
hidden width as configured) is trained on them with Adam for ``--steps`` steps of 8 + 8 images,
then its per-location accuracy is measured on as many val images of each domain (the splits named
like the train splits, ``_val`` for ``_train``): over all locations, and per horizontal band of the
image (top, middle and bottom third). A model that adapts has, below its probe's row, the same
accuracies for its own D_img, the classifier its features were trained against. Prints a markdown
table; 0.5 is chance, 1.0 domains told apart everywhere.

    python benchmarks/domain_probe.py --config-file configs/synthetic/da_faster_rcnn_R18_FPN.yaml \\
        --weights source-only=output/benchmark/full-foggy/source_only/seed1/model_final.pth \\
                  adapted=output/benchmark/full-foggy/image_instance_consistency/seed1/model_final.pth
"""
import argparse
import sys

import da_detect  # noqa: F401  (detectron2 compatibility, registrations; before detectron2)
import torch
from da_detect.argument_types import at_least
from da_detect.checkpoint import CheckpointError
from da_detect.config import CONFIG_KEY, ConfigError, load_config, require_registered
from da_detect.data.problems import DatasetError
from da_detect.engine.predictor import Predictor
from da_detect.modeling.image_domain_classifier import ImageDomainClassifier, image_domain_loss
from detectron2.data import DatasetCatalog
from detectron2.data.detection_utils import read_image
from tabulate import tabulate

BANDS = ("top", "middle", "bottom")


def trained_image_classifiers(predictor, names):
    """The model's own D_img for the features ``names``, if its checkpoint trained them (a
    source-only checkpoint loaded into a DomainAdaptiveRCNN leaves them at random); else None."""
    own = getattr(predictor.model, "image_classifiers", None)
    if own is None or not set(names) <= set(own):
        return None
    if any(name.startswith("image_classifiers.") for name in predictor.missing_weights):
        return None
    return own


def backbone_features(predictor, records, names, input_format):
    """name -> (N, C, H, W) features of the images of ``records`` (all of one size)."""
    out = {name: [] for name in names}
    for record in records:
        features = predictor.backbone_features(read_image(record["file_name"],
                                                          format=input_format))
        missing = [name for name in names if name not in features]
        if missing:
            raise ValueError(f"--features {missing}: not among the backbone's {sorted(features)}")
        for name in names:
            out[name].append(features[name])
    shapes = {tuple(x.shape) for x in out[names[0]]}
    if len(shapes) != 1:
        raise ValueError(f"the probe needs images of one size, got feature shapes {shapes}")
    return {name: torch.cat(xs) for name, xs in out.items()}


def train_probe(source, target, hidden_channels, steps, seed):
    """A fresh ImageDomainClassifier fit to tell ``source`` (label 0) from ``target`` (1)."""
    torch.manual_seed(seed)
    names = list(source)
    probe = ImageDomainClassifier(source[names[0]].shape[1], hidden_channels)
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-3)
    labels = torch.tensor([0.0] * 8 + [1.0] * 8)
    for _ in range(steps):
        picks = [torch.randint(len(d[names[0]]), (8,)) for d in (source, target)]
        logits, masks = [], []
        for name in names:
            x = torch.cat([source[name][picks[0]], target[name][picks[1]]])
            logits.append(probe(x))
            masks.append(torch.ones_like(logits[-1], dtype=torch.bool))
        loss, _ = image_domain_loss(logits, labels, masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return probe


@torch.no_grad()
def band_accuracy(classifiers, features, label):
    """Accuracy of ``classifiers`` (feature name -> patch-wise domain classifier) on every
    location of ``features`` (all one domain, ``label``): overall and per band of rows (top /
    middle / bottom third)."""
    correct = {band: 0.0 for band in ("all",) + BANDS}
    count = dict.fromkeys(correct, 0)
    for name, x in features.items():
        right = ((classifiers[name](x) > 0).float() == label).float()[:, 0]  # (N, H, W)
        rows = right.shape[1]
        band_of_row = (torch.arange(rows) * len(BANDS)) // rows
        for k, band in enumerate(BANDS):
            in_band = right[:, band_of_row == k]
            correct[band] += in_band.sum().item()
            count[band] += in_band.numel()
        correct["all"] += right.sum().item()
        count["all"] += right.numel()
    return {band: correct[band] / count[band] for band in correct}


def named_checkpoints(parser, words):
    """``--weights``' words as ``{NAME: PATH}`` and the ``KEY VALUE`` overrides that argparse also
    gave it (``--weights a=A.pth MODEL.DEVICE cpu``): the words from the first config key on."""
    first_key = next((i for i, word in enumerate(words) if CONFIG_KEY.fullmatch(word)),
                     len(words))
    checkpoints = {}
    for word in words[:first_key]:
        name, equals, path = word.partition("=")
        if not equals:
            name = path = word
        elif not (name and path):
            parser.error(f"argument --weights: {word}: must be NAME=PATH (or a bare PATH)")
        if name in checkpoints:
            parser.error(f"argument --weights: two checkpoints named {name!r}: the table could "
                         f"not tell them apart")
        checkpoints[name] = path
    if not checkpoints:
        parser.error(f"argument --weights: no checkpoint before the config key {words[0]}")
    return checkpoints, words[first_key:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", nargs="+", required=True, metavar="NAME=PATH",
                        help="checkpoints to probe, each with a name for the table (a bare "
                             "PATH names itself); KEY VALUE overrides may follow them")
    parser.add_argument("--source-split", help="source train split; default: the config's "
                                                "DATASETS.TRAIN[0]")
    parser.add_argument("--target-split", help="target train split; default: the config's "
                                                "DATASETS.TARGET_TRAIN[0]")
    parser.add_argument("--features", nargs="+", help="backbone features to probe")
    parser.add_argument("--images", type=at_least(1), default=128,
                        help="images per domain and split")
    parser.add_argument("--steps", type=at_least(1), default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args()
    checkpoints, opts = named_checkpoints(parser, args.weights)
    try:
        cfg = load_config(args.config_file, opts + args.opts)
        train = {"source": args.source_split or cfg.DATASETS.TRAIN[0],
                 "target": args.target_split or cfg.DATASETS.TARGET_TRAIN[0]}
        val = {d: name.replace("_train", "_val") for d, name in train.items()}
        for domain, name in train.items():
            require_registered(name, f"--{domain}-split")
            if val[domain] == name or val[domain] not in DatasetCatalog.list():
                raise ConfigError(f"--{domain}-split {name}: no validation split beside it (the "
                                  f"probe is measured on the split named with _val for _train)")
        records = {(d, part): DatasetCatalog.get(splits[d])[:args.images]
                   for part, splits in (("train", train), ("val", val)) for d in splits}
    except (ConfigError, DatasetError, KeyError) as e:
        sys.exit(f"error: {e}")
    except IndexError:
        sys.exit("error: give --source-split and --target-split (the config names no "
                 "DATASETS.TRAIN / TARGET_TRAIN)")
    names = (args.features or list(cfg.MODEL.DA.IMAGE.IN_FEATURES)
             or list(cfg.MODEL.RPN.IN_FEATURES))

    rows = []
    for name, path in checkpoints.items():
        try:
            predictor = Predictor(cfg, path)
        except CheckpointError as e:
            sys.exit(f"error: {e}")
        try:
            features = {key: backbone_features(predictor, recs, names, cfg.INPUT.FORMAT)
                        for key, recs in records.items()}
        except ValueError as e:
            sys.exit(f"error: {e}")
        probe = train_probe(features["source", "train"], features["target", "train"],
                            cfg.MODEL.DA.IMAGE.HIDDEN_CHANNELS, args.steps, args.seed)
        classifiers = {name: dict.fromkeys(names, probe)}
        own = trained_image_classifiers(predictor, names)
        if own is not None:
            classifiers[f"{name}, its own D_img"] = own
        for row, classifier in classifiers.items():
            source = band_accuracy(classifier, features["source", "val"], 0.0)
            target = band_accuracy(classifier, features["target", "val"], 1.0)
            accuracy = {band: (source[band] + target[band]) / 2 for band in source}
            rows.append([row, *accuracy.values()])
            print(f"{row}: " + ", ".join(f"{band} {value:.3f}" for band, value in accuracy.items()),
                  file=sys.stderr)
    print(f"Domain probe accuracy ({train['source']} vs {train['target']}, features {names}, "
          f"{args.images} images per domain, {args.steps} steps; measured on {val['source']} "
          f"and {val['target']}, mean of the two domains' accuracies):\n")
    print(tabulate(rows, headers=["model", "all locations", *[f"{band} third" for band in BANDS]],
                   tablefmt="pipe", floatfmt=".3f", disable_numparse=[0]))


if __name__ == "__main__":
    main()

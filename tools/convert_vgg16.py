#!/usr/bin/env python
"""Convert a torchvision VGG16 checkpoint file (e.g. vgg16-397923af.pth, which you supply) into
MODEL.WEIGHTS for the VGG16 configs.

    python tools/convert_vgg16.py vgg16-397923af.pth output/vgg16_imagenet.pth

A file already at the output path is kept under a timestamped name.
"""
import argparse
import sys
from pathlib import Path

import torch

import da_detect  # noqa: F401
from da_detect.atomic_file import atomic_open
from da_detect.modeling.vgg import torchvision_vgg16_to_detectron2


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input")
    parser.add_argument("output")
    args = parser.parse_args()
    try:
        state_dict = torch.load(args.input, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        sys.exit(f"error: {args.input}: no such file")
    except Exception as e:  # not a torch file, damaged, or a pickle weights_only refuses
        sys.exit(f"error: {args.input}: not a readable weights file ({type(e).__name__})")
    try:
        if not isinstance(state_dict, dict):
            raise ValueError(f"not a torchvision VGG16 state dict: a {type(state_dict).__name__}")
        model = torchvision_vgg16_to_detectron2(state_dict)
    except ValueError as e:
        sys.exit(f"error: {args.input}: {e}")
    output = Path(args.output)
    if output.is_dir():
        sys.exit(f"error: {output} is a folder; give the output file's path")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file in the way
        sys.exit(f"error: {output}: its folder cannot be made ({e.strerror}: {e.filename})")
    with atomic_open(output, "wb", keep=True) as f:
        torch.save({"model": model, "__author__": "torchvision"}, f)
    print(f"wrote {len(model)} tensors to {output}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Convert a torchvision VGG16 checkpoint file (e.g. vgg16-397923af.pth, which you supply) into
MODEL.WEIGHTS for the VGG16 configs:

    python tools/convert_vgg16.py vgg16-397923af.pth output/vgg16_imagenet.pth
"""
import argparse

import torch

import da_detect  # noqa: F401
from da_detect.modeling.vgg import torchvision_vgg16_to_detectron2


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("output")
    args = parser.parse_args()
    state_dict = torch.load(args.input, map_location="cpu", weights_only=True)
    model = torchvision_vgg16_to_detectron2(state_dict)
    torch.save({"model": model, "__author__": "torchvision"}, args.output)
    print(f"wrote {len(model)} tensors to {args.output}")


if __name__ == "__main__":
    main()

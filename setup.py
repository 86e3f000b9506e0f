"""da-detect: Domain Adaptive Faster R-CNN (Chen et al., CVPR 2018) on detectron2.

detectron2 itself is not on the package registry: `tools/bootstrap.sh` installs it (see README).
"""
from setuptools import find_packages, setup

setup(
    name="da-detect",
    version="0.1.0",
    description="Domain adaptive object detection (DA Faster R-CNN) on detectron2",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["da_detect", "da_detect.*"]),
    install_requires=[
        "torch>=1.13",  # torch.load(weights_only=...)
        "torchvision>=0.14",  # vgg16(weights=...)
        # What detectron2 v0.6 imports at run time (its own install_requires, less `black`).
        "fvcore>=0.1.5,<0.1.6",
        "iopath>=0.1.7,<0.1.10",
        "pycocotools>=2.0.2",
        "termcolor>=1.1",
        "yacs>=0.1.8",
        "tabulate",
        "cloudpickle",
        "matplotlib",
        "scikit-learn",
        "tqdm>4.29.0",
        "tensorboard",
        "omegaconf>=2.1",
        "hydra-core>=1.1",
        "scipy>1.5.1",
        "Pillow>=7.1",
        # da-detect's own.
        "numpy",
        "opencv-python-headless",
        "albumentations>=2.0",  # RandomFog(fog_coef_range=...), as the configs use it
        "wandb",
        "cityscapesscripts",
    ],
    extras_require={"test": ["pytest", "hypothesis"]},
)

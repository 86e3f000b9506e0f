"""albumentations augmentation declared in the config: applied to the chosen domain's training
images, pixel-aligned with the unaugmented image (so boxes stay exact), and reproducible."""
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, SYNTHETIC_DA
from da_detect.config import ConfigError, load_config
from da_detect.data.albumentations_augmentation import build_albumentations
from da_detect.data.train_loader import build_train_loader

BRIGHTER = "RandomBrightnessContrast(brightness_limit=(0.2, 0.2), contrast_limit=0, p=1)"


def first_step(opts):
    cfg = load_config(str(SYNTHETIC_DA), ["DATALOADER.NUM_WORKERS", "0", *opts])
    return next(iter(build_train_loader(cfg)))


@pytest.mark.parametrize("key,domain", [("INPUT.ALBUMENTATIONS.SOURCE", 0),
                                        ("INPUT.ALBUMENTATIONS.TARGET", 1)])
def test_augmentation_changes_its_domains_pixels_not_boxes(key, domain):
    plain = first_step([])
    augmented = first_step([key, f"['{BRIGHTER}']"])
    assert [x["image_id"] for x in plain] == [x["image_id"] for x in augmented]
    assert {x["domain"] for x in plain} == {0, 1}
    for before, after in zip(plain, augmented):
        image_before = before["image"].numpy().astype(int)
        image_after = after["image"].numpy().astype(int)
        if before["domain"] == domain:
            # +0.2 * 255 on every pixel where it was (same flip, same resize): nothing moved,
            # so the boxes, as they were, still frame their objects
            assert np.abs(image_after - np.clip(image_before + 51, 0, 255)).max() <= 1
        else:  # the other domain's images untouched
            assert np.array_equal(image_before, image_after)
        if before["domain"] == 0:
            assert before["instances"].gt_boxes.tensor.equal(after["instances"].gt_boxes.tensor)
        else:
            assert "instances" not in after


def test_target_augmentation_without_target_images_is_named_in_a_warning(caplog):
    cfg = load_config(str(SYNTHETIC_DA), ["INPUT.ALBUMENTATIONS.TARGET", f"['{BRIGHTER}']",
                                          "MODEL.META_ARCHITECTURE", "GeneralizedRCNN",
                                          "MODEL.ROI_HEADS.NAME", "StandardROIHeads",
                                          "DATASETS.TARGET_TRAIN", "()"])
    build_train_loader(cfg)
    assert "INPUT.ALBUMENTATIONS.TARGET is set, but DATASETS.TARGET_TRAIN is empty" in caplog.text


def test_random_source_augmentation_is_seeded():
    fog = "RandomFog(fog_coef_range=(0.3, 0.5), p=1)"
    plain = first_step([])
    augmented = first_step(["INPUT.ALBUMENTATIONS.SOURCE", f"['{fog}']"])
    again = first_step(["INPUT.ALBUMENTATIONS.SOURCE", f"['{fog}']"])
    for before, after, repeat in zip(plain, augmented, again):
        assert np.array_equal(after["image"].numpy(), repeat["image"].numpy())
        assert np.array_equal(after["image"].numpy(), before["image"].numpy()) == (
            before["domain"] == 1)


@pytest.mark.parametrize("expression,message", [
    ("NoSuchTransform(p=1)", "'NoSuchTransform' is not a pixel-level albumentations transform"),
    ("Rotate(limit=30)", "'Rotate' is not a pixel-level albumentations transform"),
    ("RandomFog(p=", "is not Name(arg=value, ...)"),
    ("RandomFog(0.5)", "is not Name(arg=value, ...)"),  # a positional argument, not dropped
    ("RandomFog(p='often')",
     "\"RandomFog(p='often')\": p: Input should be a valid number, unable to parse string"),
    ("RandomFog(fog_coef_range=(0.5, 0.3))",
     "fog_coef_range: Value error, First value should be less than the second value"),
    ("RandomFog(p='often', fog_coef_range=(0.5, 0.3))",  # every reason, each with its argument
     "p: Input should be a valid number, unable to parse string as a number; fog_coef_range: "
     "Value error, First value should be less than the second value, got (0.5, 0.3) instead"),
    ("RandomSunFlare(flare_roi=(1, 1, 0, 0))",  # about the arguments together: no one named
     "'RandomSunFlare(flare_roi=(1, 1, 0, 0))': Value error, Invalid flare_roi. Got: (1.0, 1.0"),
    # albumentations only warns of these, and uses the default
    ("RandomBrightnessContrast(brightnes_limit=0.9)",
     "RandomBrightnessContrast has no argument 'brightnes_limit' (it takes brightness_limit, "),
    ("RandomFog(fog_coef_lower=0.3)", "RandomFog has no argument 'fog_coef_lower'"),
    ("Normalize(p=1)", "'Normalize' changes the pixels' dtype or range"),
    ("ToFloat(max_value=255)", "'ToFloat' changes the pixels' dtype or range"),
    ("FromFloat()", "'FromFloat' changes the pixels' dtype or range"),
])
@pytest.mark.parametrize("key", ["INPUT.ALBUMENTATIONS.SOURCE", "INPUT.ALBUMENTATIONS.TARGET"])
def test_bad_transforms_name_the_key(expression, message, key):
    with pytest.raises(ConfigError) as error:
        load_config(str(SYNTHETIC_DA), [key, f'["{expression}"]'])
    assert str(error.value).startswith(f"{key}: ") and message in str(error.value)


def test_each_image_draws_its_own_augmentation_fixed_by_numpys_seed():
    augmentation = build_albumentations(load_config(str(SYNTHETIC_DA), [
        "INPUT.ALBUMENTATIONS.SOURCE", "['RandomBrightnessContrast(p=1)']"]), "SOURCE")
    image = np.full((8, 8, 3), 128, dtype=np.uint8)

    def draws(seed):
        np.random.seed(seed)  # as the data loader seeds each sample
        return [augmentation.get_transform(image).apply_image(image) for _ in range(3)]

    first, again = draws(1), draws(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], first[1]) and not np.array_equal(first[1], first[2])


def test_importing_the_augmentation_makes_no_network_request():
    """albumentations checks PyPI for updates on import unless told not to; ours must not."""
    probe = (
        "import os, urllib.request\n"
        "os.environ.pop('NO_ALBUMENTATIONS_UPDATE', None)\n"
        "requests = []\n"
        "def refuse(self, request, *args, **kwargs):\n"
        "    requests.append(getattr(request, 'full_url', request))\n"
        "    raise OSError('offline')\n"
        "urllib.request.OpenerDirector.open = refuse\n"
        "import da_detect.data.albumentations_augmentation\n"
        "print(requests)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=REPO, check=True)
    assert result.stdout.strip() == "[]"

"""Single-image inference with a trained detector."""
import torch
from detectron2.engine import DefaultPredictor

from ..checkpoint import CheckpointError, DACheckpointer


class Predictor(DefaultPredictor):
    """detectron2's DefaultPredictor (test-time resize, one image in), loading MODEL.WEIGHTS
    through :class:`DACheckpointer` (weights_only unless the config allows more); refuses to run
    without weights, and with a checkpoint that lacks any weight inference uses (another
    model's: it would detect with random layers). ``missing_weights``: the model's weights the
    checkpoint did not give (for a :class:`DomainAdaptiveRCNN`, at most its domain classifiers).
    Images are HxWxC in the config's INPUT.FORMAT, as the test loader reads them
    (``read_image(path, format=cfg.INPUT.FORMAT)``), where DefaultPredictor takes BGR only."""

    def __init__(self, cfg, weights=None):
        """``weights``: the checkpoint to load, in place of MODEL.WEIGHTS."""
        weights = cfg.MODEL.WEIGHTS if weights is None else str(weights)
        if not weights:
            raise CheckpointError("MODEL.WEIGHTS is empty: give the trained model's checkpoint "
                                  "(MODEL.WEIGHTS path/to/model_final.pth)")
        without_weights = cfg.clone()
        without_weights.defrost()
        without_weights.MODEL.WEIGHTS = ""
        super().__init__(without_weights)
        checkpointer = DACheckpointer(self.model, allow_unsafe_pickle=cfg.MODEL.ALLOW_UNSAFE_PICKLE)
        checkpointer.load(weights)
        checkpointer.require_inference_weights()
        self.missing_weights = checkpointer.missing_weights

    def _model_input(self, image):
        """The model's input dict for one image: resized to test-time size, (C, H, W) float."""
        height, width = image.shape[:2]
        resized = self.aug.get_transform(image).apply_image(image)
        return {"image": torch.as_tensor(resized.astype("float32").transpose(2, 0, 1)),
                "height": height, "width": width}

    def __call__(self, image):
        """One image's detections: {"instances": Instances} in the image's own size."""
        with torch.no_grad():
            return self.model([self._model_input(image)])[0]

    def backbone_features(self, image):
        """One image's backbone features at test-time size: name -> (1, C, h, w); for a
        :class:`DomainAdaptiveRCNN` also an FPN's bottom-up ones."""
        batch = self.model.preprocess_image([self._model_input(image)])
        with torch.no_grad():
            return getattr(self.model, "backbone_features", self.model.backbone)(batch.tensor)

    def backbone_embedding(self, image):
        """The image's backbone features that the RPN reads, each averaged over its locations
        and concatenated: a (sum of channels,) vector, for feature-space plots."""
        features = self.backbone_features(image)
        names = self.model.proposal_generator.in_features
        return torch.cat([features[name].mean(dim=(2, 3))[0] for name in names]).cpu().numpy()

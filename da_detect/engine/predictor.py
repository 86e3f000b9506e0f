"""Single-image inference with a trained detector."""
import torch
from detectron2.engine import DefaultPredictor

from ..checkpoint import CheckpointError, DACheckpointer


class Predictor(DefaultPredictor):
    """detectron2's DefaultPredictor (test-time resize, channel order, one image in), loading
    MODEL.WEIGHTS through :class:`DACheckpointer` (weights_only unless the config allows more);
    refuses to run without weights."""

    def __init__(self, cfg):
        if not cfg.MODEL.WEIGHTS:
            raise CheckpointError("MODEL.WEIGHTS is empty: give the trained model's checkpoint "
                                  "(MODEL.WEIGHTS path/to/model_final.pth)")
        without_weights = cfg.clone()
        without_weights.defrost()
        without_weights.MODEL.WEIGHTS = ""
        super().__init__(without_weights)
        DACheckpointer(self.model, allow_unsafe_pickle=cfg.MODEL.ALLOW_UNSAFE_PICKLE).load(
            cfg.MODEL.WEIGHTS)

    def backbone_features(self, image):
        """One image's (HxWxC, the config's INPUT.FORMAT) backbone features at test-time size:
        name -> (1, C, h, w); for a :class:`DomainAdaptiveRCNN` also an FPN's bottom-up ones."""
        height, width = image.shape[:2]
        resized = self.aug.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(resized.astype("float32").transpose(2, 0, 1))
        batch = self.model.preprocess_image([{"image": tensor, "height": height, "width": width}])
        with torch.no_grad():
            return getattr(self.model, "backbone_features", self.model.backbone)(batch.tensor)

    def backbone_embedding(self, image):
        """The image's backbone features that the RPN reads, each averaged over its locations
        and concatenated: a (sum of channels,) vector, for feature-space plots."""
        features = self.backbone_features(image)
        names = self.model.proposal_generator.in_features
        return torch.cat([features[name].mean(dim=(2, 3))[0] for name in names]).cpu().numpy()

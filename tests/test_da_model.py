"""DomainAdaptiveRCNN: gradient reversal, classifier shapes, losses and deployment equivalence."""
import copy
import math

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from conftest import REPO, SMALL_IMAGES, SYNTHETIC_DA
from da_detect.config import deployment_config, load_config
from da_detect.modeling import meta_arch
from da_detect.modeling.consistency import consistency_loss
from da_detect.modeling.gradient_reversal import grl_lambda, reverse_gradient
from da_detect.modeling.image_domain_classifier import (
    ImageDomainClassifier,
    image_domain_loss,
    image_domain_probability,
    valid_location_mask,
)
from da_detect.modeling.instance_domain_classifier import (
    InstanceDomainClassifier,
    instance_domain_loss,
)

SMALL = [*SMALL_IMAGES, "INPUT.RANDOM_FLIP", "none"]
# detectron2's R50-C4 made domain-adaptive: D_img on res4, D_ins on the res5 head's features
C4_CONFIG = REPO / "configs" / "Base-RCNN-C4.yaml"
C4_DA = ["MODEL.META_ARCHITECTURE", "DomainAdaptiveRCNN", "MODEL.ROI_HEADS.NAME",
         "DomainAdaptiveRes5ROIHeads", "MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.NUM_CLASSES", "3",
         "DATASETS.TRAIN", "('synthetic_clean_train',)"]
ALL_OFF = ["MODEL.DA.IMAGE.ENABLED", "False", "MODEL.DA.INSTANCE.ENABLED", "False",
           "MODEL.DA.CONSISTENCY.ENABLED", "False"]


def cfg_for(config=SYNTHETIC_DA, *opts):
    return load_config(str(config), SMALL + list(opts))


def batch(cfg, dataset, n, domain, keep_labels=True):
    mapper = DatasetMapper(cfg, is_train=True)
    out = []
    for d in DatasetCatalog.get(dataset)[:n]:
        x = mapper(copy.deepcopy(d))
        x["domain"] = domain
        if not keep_labels:
            del x["instances"]
        out.append(x)
    return out


def train_losses(model, inputs, seed=0):
    torch.manual_seed(seed)
    with EventStorage():
        return {k: v.detach() for k, v in model(inputs).items()}


def assert_same(a, b, keys=None):
    keys = keys or sorted(a)
    for k in keys:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6), (k, a[k], b[k])


@pytest.fixture(scope="module")
def da_cfg():
    return cfg_for()


@pytest.fixture(scope="module")
def inputs(da_cfg):
    source = batch(da_cfg, "synthetic_clean_val", 2, meta_arch.SOURCE)
    target = batch(da_cfg, "synthetic_foggy_val", 2, meta_arch.TARGET)
    return source, target


def test_gradient_reversal_multiplies_gradient_by_minus_lambda():
    x = torch.randn(3, 4, requires_grad=True)
    upstream = torch.randn(3, 4)
    y = reverse_gradient(x, 0.3)
    assert torch.equal(y, x)
    y.backward(upstream)
    assert torch.allclose(x.grad, -0.3 * upstream)


def test_dann_schedule_rises_from_zero_to_base():
    assert grl_lambda(0.5, "constant", 0.3) == 0.5
    assert grl_lambda(1.0, "dann", 0.0) == 0.0
    values = [grl_lambda(1.0, "dann", p / 10) for p in range(11)]
    assert all(a < b for a, b in zip(values, values[1:]))
    assert abs(values[-1] - (2 / (1 + torch.exp(torch.tensor(-10.0)).item()) - 1)) < 1e-9
    # MODEL.DA.GRL_GAMMA sets how fast it rises
    assert grl_lambda(0.5, "dann", 0.2, gamma=5.0) == pytest.approx(0.5 * (2 / (1 + math.exp(-1))
                                                                         - 1))


def bce(logit, label):
    """Binary cross-entropy of one logit, by hand."""
    p = 1 / (1 + math.exp(-logit))
    return -math.log(p) if label else -math.log(1 - p)


def test_valid_locations_cover_the_image_and_not_its_padding():
    # stride 4: a 10 x 13 image covers ceil(10/4) = 3 rows and ceil(13/4) = 4 columns of a
    # 4 x 5 map padded for the batch; a 16 x 8 image, 4 rows and 2 columns
    mask = valid_location_mask([(10, 13), (16, 8)], (2, 256, 4, 5), 4)
    expected = torch.zeros(2, 1, 4, 5, dtype=torch.bool)
    expected[0, 0, :3, :4] = True
    expected[1, 0, :4, :2] = True
    assert torch.equal(mask, expected)


def test_image_domain_loss_and_accuracy_by_hand():
    # two levels, two images (source, target); the padded locations hold logits that would
    # change both the loss and the accuracy if they counted
    level1 = torch.tensor([[[[2.0, -1.0], [0.5, 9.0]]], [[[3.0, -2.0], [1.0, 9.0]]]])
    mask1 = torch.tensor([[[[1, 1], [1, 0]]], [[[1, 1], [1, 0]]]], dtype=torch.bool)
    level2 = torch.tensor([[[[-4.0]]], [[[0.0]]]])
    mask2 = torch.ones(2, 1, 1, 1, dtype=torch.bool)
    loss, accuracy = image_domain_loss([level1, level2], torch.tensor([0.0, 1.0]), [mask1, mask2])
    level1_loss = (bce(2, 0) + bce(-1, 0) + bce(0.5, 0) + bce(3, 1) + bce(-2, 1) + bce(1, 1)) / 6
    level2_loss = (bce(-4, 0) + bce(0, 1)) / 2
    assert loss.item() == pytest.approx((level1_loss + level2_loss) / 2, rel=1e-6)
    # right ("target" where the logit is above 0): -1 (source), 3 and 1 (target), -4 (source)
    assert accuracy.item() == pytest.approx(4 / 8)
    # a confident right answer costs nothing, a confident wrong one much
    confident = torch.full((2, 1, 1, 1), 20.0) * torch.tensor([-1.0, 1.0]).view(2, 1, 1, 1)
    assert image_domain_loss([confident], torch.tensor([0.0, 1.0]), [mask2])[0].item() < 1e-8
    assert image_domain_loss([-confident], torch.tensor([0.0, 1.0]), [mask2])[0].item() > 19


def test_image_domain_classifier_is_conv_relu_conv():
    torch.manual_seed(0)
    classifier = ImageDomainClassifier(3, 4)
    x = torch.randn(2, 3, 5, 6)
    hidden = torch.einsum("oc,nchw->nohw", classifier.conv1.weight[:, :, 0, 0], x)
    hidden = hidden + classifier.conv1.bias.view(1, -1, 1, 1)
    assert (hidden < 0).any()  # the ReLU has something to cut
    expected = torch.einsum("oc,nchw->nohw", classifier.conv2.weight[:, :, 0, 0], hidden.relu())
    expected = expected + classifier.conv2.bias.view(1, -1, 1, 1)
    assert torch.allclose(classifier(x), expected, atol=1e-6)


def test_instance_domain_loss_and_accuracy_by_hand():
    logits = torch.tensor([3.0, -1.0, 0.5, 2.0])
    labels = torch.tensor([0.0, 0.0, 1.0, 1.0])
    loss, accuracy = instance_domain_loss(logits, labels)
    assert loss.item() == pytest.approx(
        (bce(3, 0) + bce(-1, 0) + bce(0.5, 1) + bce(2, 1)) / 4, rel=1e-6)
    assert accuracy.item() == 0.75  # -1 (source), 0.5 and 2 (target) are right
    assert instance_domain_loss(torch.tensor([-20.0, 20.0]), torch.tensor([0.0, 1.0]))[0] < 1e-8


def test_instance_domain_classifier_drops_out_in_training_only():
    torch.manual_seed(0)
    classifier = InstanceDomainClassifier(6, 32, dropout=0.5)
    x = torch.randn(1, 6)  # one region: still a (1,) vector of logits
    assert classifier.eval()(x).shape == (1,)
    assert torch.equal(classifier(x), classifier(x))
    classifier.train()
    outputs = {classifier(x).item() for _ in range(8)}
    assert len(outputs) > 1
    # fc2's output drops out too: about half of what its ReLU passes is zeroed
    x = torch.randn(100, 6)
    hidden = []
    hook = classifier.fc3.register_forward_hook(lambda m, inputs, out: hidden.append(inputs[0]))
    classifier.eval()(x)
    classifier.train()(x)
    hook.remove()
    zeros_eval, zeros_train = ((h == 0).float().mean().item() for h in hidden)
    assert zeros_train > zeros_eval + 0.5 * (1 - zeros_eval) - 0.1


def test_consistency_loss_pulls_the_image_prediction_too():
    image_probs = torch.tensor([0.2, 0.9], requires_grad=True)
    instance_probs = torch.tensor([0.1, 0.5, 0.6, 1.0, 0.7], requires_grad=True)
    consistency_loss(image_probs, instance_probs, torch.tensor([0, 0, 1, 1, 1])).backward()
    # d/dp_img of mean |p_img - p_ins|: the signs of the differences, over the 5 regions
    assert torch.allclose(image_probs.grad, torch.tensor([(1 - 1) / 5, (1 - 1 + 1) / 5]))
    assert torch.allclose(instance_probs.grad, torch.tensor([-1, 1, -1, 1, -1]) / 5)


def test_consistency_loss_by_hand():
    image_probs = torch.tensor([0.2, 0.9])
    instance_probs = torch.tensor([0.1, 0.5, 0.6, 1.0, 0.7])
    image_index = torch.tensor([0, 0, 1, 1, 1])
    # |0.2-0.1| + |0.2-0.5| + |0.9-0.6| + |0.9-1.0| + |0.9-0.7| = 0.1+0.3+0.3+0.1+0.2 = 1.0
    assert torch.isclose(consistency_loss(image_probs, instance_probs, image_index),
                         torch.tensor(1.0 / 5))


def test_image_probability_is_float32_for_bfloat16_logits():
    torch.manual_seed(0)
    shapes = [(2, 1, 8, 10), (2, 1, 4, 5)]
    logits = [(0.05 * torch.randn(shape)).bfloat16() for shape in shapes]
    masks = [torch.ones(shape, dtype=torch.bool) for shape in shapes]
    masks[0][1, :, 6:] = False
    probs = image_domain_probability(logits, masks)
    expected = torch.stack([torch.cat([torch.sigmoid(x[i].float())[m[i]] for x, m in
                                       zip(logits, masks)]).mean() for i in range(2)])
    assert probs.dtype == torch.float32
    assert torch.allclose(probs, expected, rtol=0, atol=1e-6)
    assert not torch.equal(probs, probs.bfloat16().float())  # finer than bfloat16 can hold


def test_every_loss_is_float32_under_cpu_autocast(da_cfg, inputs):
    source, target = inputs
    model = build_model(da_cfg).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = train_losses(model, source + target)
    assert "loss_da_consistency" in losses
    assert {k: v.dtype for k, v in losses.items()} == {k: torch.float32 for k in losses}


@pytest.mark.parametrize("config,opts,levels,box_dim", [
    (SYNTHETIC_DA, [], ["p3", "p4", "p5", "p6"], 512),
    (SYNTHETIC_DA, ["MODEL.DA.IMAGE.IN_FEATURES", "['res3', 'res4', 'res5']",
                    "MODEL.DA.IMAGE.SHARED", "False"], ["res3", "res4", "res5"], 512),
    (C4_CONFIG, C4_DA, ["res4"], 2048),
])
def test_classifier_shapes(config, opts, levels, box_dim):
    cfg = cfg_for(config, *opts)
    model = build_model(cfg)
    assert model.image_in_features == levels
    assert model.roi_heads.box_feature_dim == box_dim
    images = torch.randn(2, 3, 128, 160)
    features = model.backbone_features(images)
    for level in levels:
        logits = model.image_classifiers[level](features[level])
        assert logits.shape == (2, 1) + features[level].shape[2:]
    assert model.instance_classifier(torch.randn(7, box_dim)).shape == (7,)


def test_unknown_image_feature_is_named_with_the_choices():
    cfg = cfg_for(SYNTHETIC_DA, "MODEL.DA.IMAGE.IN_FEATURES", "['p3', 'res9']")
    with pytest.raises(ValueError, match=r"MODEL.DA.IMAGE.IN_FEATURES: \['res9'\].*'p6'.*'res5'"):
        build_model(cfg)


def test_consistency_without_both_classifiers_is_refused_by_the_model_itself(da_cfg):
    # check_da_config refuses such a config; the model, built from arguments, refuses them too
    arguments = meta_arch.DomainAdaptiveRCNN.from_config(da_cfg)
    for classifier in ("image_classifiers", "instance_classifier"):
        with pytest.raises(ValueError, match="consistency regularizer .* needs both classifiers"):
            meta_arch.DomainAdaptiveRCNN(**{**arguments, classifier: None})


def test_image_loss_on_bottom_up_features_reaches_only_the_bottom_up_network(inputs):
    cfg = cfg_for(SYNTHETIC_DA, "MODEL.DA.IMAGE.IN_FEATURES", "['res3', 'res4', 'res5']",
                  "MODEL.DA.IMAGE.SHARED", "False")
    model = build_model(cfg).train()
    source, target = inputs
    with EventStorage():
        model(source + target)["loss_da_image"].backward()
    bottom_up = model.backbone.bottom_up
    assert bottom_up.stem.conv1.weight.grad.abs().sum() > 0
    assert bottom_up.res5[-1].conv2.weight.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in model.backbone.named_parameters()
               if not n.startswith("bottom_up."))


def test_c4_model_trains_on_source_and_target(inputs):
    cfg = cfg_for(C4_CONFIG, *C4_DA, "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16")
    source, target = inputs
    model = build_model(cfg).train()
    torch.manual_seed(0)
    with EventStorage():
        losses = model(source[:1] + target[:1])
    assert {"loss_da_image", "loss_da_instance", "loss_da_consistency", "loss_cls"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    # the domain losses reach the backbone's res4 (D_img's input) and res5 (in the ROI head)
    model.zero_grad()
    sum(losses[k] for k in ("loss_da_image", "loss_da_instance", "loss_da_consistency")).backward()
    for module in (model.backbone.res4, model.roi_heads.res5, model.image_classifiers,
                   model.instance_classifier):
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)


def test_domain_labels_are_zero_for_source_and_one_for_target(da_cfg, inputs, monkeypatch):
    seen = {}

    def spy(name, fn):
        def wrapped(*args):
            seen[name] = args[1].clone()
            return fn(*args)
        monkeypatch.setattr(meta_arch, name, wrapped)

    spy("image_domain_loss", meta_arch.image_domain_loss)
    spy("instance_domain_loss", meta_arch.instance_domain_loss)
    source, target = inputs
    model = build_model(da_cfg).train()
    train_losses(model, source + target[:1])
    assert seen["image_domain_loss"].tolist() == [0.0, 0.0, 1.0]
    instance_labels = seen["instance_domain_loss"]
    regions = model.instance_regions
    assert regions == da_cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE // 2
    assert instance_labels.tolist() == [0.0] * 2 * regions + [1.0] * regions


def test_each_domain_loss_takes_its_gradient_path_weight_and_inputs(inputs, monkeypatch):
    """Eq. 7 and 8 reach the features through GRLs of their own lambdas; Eq. 9 through plain
    gradient scalings (not reversed), on the same features, comparing D_img's and D_ins' own
    probabilities; Eq. 10 weighs each by lambda (LOSS_WEIGHT) and its part weight."""
    cfg = cfg_for(SYNTHETIC_DA, "MODEL.DA.IMAGE.GRL_LAMBDA", "0.3", "MODEL.DA.INSTANCE.GRL_LAMBDA",
                  "0.2", "MODEL.DA.INSTANCE.DROPOUT", "0.0", "MODEL.DA.IMAGE.LOSS_WEIGHT", "0.7",
                  "MODEL.DA.INSTANCE.LOSS_WEIGHT", "0.6")
    calls, seen = [], {}

    def gradient_path(kind, fn):
        def wrapped(x, coefficient):
            calls.append((kind, coefficient, x.requires_grad, x.dim()))
            return fn(x, coefficient)
        monkeypatch.setattr(meta_arch, f"{kind}_gradient", wrapped)

    def spy(name):
        fn = getattr(meta_arch, name)

        def wrapped(*args):
            seen[name] = [a.detach() if torch.is_tensor(a) else a for a in args]
            return fn(*args)
        monkeypatch.setattr(meta_arch, name, wrapped)

    gradient_path("reverse", meta_arch.reverse_gradient)
    gradient_path("scale", meta_arch.scale_gradient)
    for name in ("image_domain_loss", "instance_domain_loss", "consistency_loss"):
        spy(name)
    source, target = inputs
    model = build_model(cfg).train()
    assert model.part_loss_weights == {"image": 0.7, "instance": 0.6, "consistency": 0.1}
    losses = train_losses(model, source + target)
    levels = len(model.image_in_features)
    # D_img on each level (4-d maps), D_ins on the regions' features (2-d), all with gradients
    assert calls == ([("reverse", 0.3, True, 4)] * levels + [("reverse", 0.2, True, 2)]
                     + [("scale", 0.3, True, 4)] * levels + [("scale", 0.2, True, 2)])
    image_logits, _, masks = seen["image_domain_loss"]
    image_probs, instance_probs, roi_image = seen["consistency_loss"]
    assert torch.allclose(image_probs, image_domain_probability(image_logits, masks))
    assert torch.allclose(instance_probs, torch.sigmoid(seen["instance_domain_loss"][0]))
    # Eq. 10's lambda multiplies every domain loss
    model.da_loss_weight *= 2
    doubled = train_losses(model, source + target)
    for key in ("loss_da_image", "loss_da_instance", "loss_da_consistency"):
        assert torch.allclose(doubled[key], 2 * losses[key], rtol=1e-5), key
    # a step without target images is plain Faster R-CNN's
    assert not [k for k in train_losses(model, source) if k.startswith("loss_da")]


def test_instance_regions_are_chosen_without_labels(inputs):
    """D_ins sees the same kind of regions in source and target images: the domain losses do not
    change when the source labels do, while the detection losses do."""
    source, target = inputs
    fewer = [dict(x, instances=x["instances"][:1]) for x in source]
    assert all(len(x["instances"]) > 1 for x in source)
    # no dropout in D_ins: the detection losses' sampling draws from the same random stream
    model = build_model(cfg_for(SYNTHETIC_DA, "MODEL.DA.INSTANCE.DROPOUT", "0.0")).train()
    all_labels = train_losses(model, source + target)
    one_label = train_losses(model, fewer + target)
    assert_same(all_labels, one_label,
                keys=["loss_da_image", "loss_da_instance", "loss_da_consistency"])
    assert not torch.allclose(all_labels["loss_cls"], one_label["loss_cls"])


def test_losses_do_not_depend_on_target_annotations(da_cfg, inputs):
    source, target = inputs
    unlabeled = [{k: v for k, v in x.items() if k != "instances"} for x in target]
    model = build_model(da_cfg).train()
    labeled_losses = train_losses(model, source + target)
    unlabeled_losses = train_losses(model, source + unlabeled)
    assert set(labeled_losses) == set(unlabeled_losses)
    for k in labeled_losses:
        assert torch.equal(labeled_losses[k], unlabeled_losses[k]), k


def test_detection_losses_come_from_source_images_only(da_cfg, inputs):
    source, target = inputs
    da_model = build_model(da_cfg).train()
    plain = build_model(deployment_config(da_cfg)).train()
    plain.load_state_dict(da_model.state_dict(), strict=False)
    da_losses = train_losses(da_model, source + target)
    plain_losses = train_losses(plain, source)
    assert set(da_losses) - set(plain_losses) == {
        "loss_da_image", "loss_da_instance", "loss_da_consistency"}
    assert_same(da_losses, plain_losses, keys=sorted(plain_losses))


def test_steps_before_start_iter_train_on_the_source_images_alone(inputs):
    source, target = inputs
    model = build_model(cfg_for(SYNTHETIC_DA, "MODEL.DA.START_ITER", "5")).train()
    model.set_training_progress(4, 10)
    before = train_losses(model, source + target)
    assert not [k for k in before if k.startswith("loss_da")]
    assert_same(before, train_losses(model, source))  # the target images are left out
    model.set_training_progress(5, 10)
    after = train_losses(model, source + target)
    assert {"loss_da_image", "loss_da_instance", "loss_da_consistency"} <= set(after)


def test_the_dann_ramp_rises_over_the_adapting_steps_alone(inputs):
    cfg = cfg_for(SYNTHETIC_DA, "MODEL.DA.START_ITER", "5", "MODEL.DA.GRL_SCHEDULE", "dann")
    model = build_model(cfg)
    model.train()
    pushes = {}
    for iteration in (0, 5, 10):
        model.set_training_progress(iteration, 15)
        model.zero_grad()
        with EventStorage() as storage:
            losses = model(inputs[0] + inputs[1])
            if "loss_da_image" in losses:
                losses["loss_da_image"].backward()
                backbone = sum(p.grad.abs().sum() for p in model.backbone.parameters()
                               if p.grad is not None)
                pushes[iteration] = (storage.latest()["da/grl_lambda_image"][0], backbone)
    assert set(pushes) == {5, 10}  # source-only before START_ITER
    # progress 0 at START_ITER, 0.5 halfway from it to the end: 2 / (1 + exp(-10 * p)) - 1
    assert pushes[5] == (0.0, 0.0)
    expected = cfg.MODEL.DA.IMAGE.GRL_LAMBDA * (2 / (1 + math.exp(-10 * 0.5)) - 1)
    assert pushes[10][0] == pytest.approx(expected) and pushes[10][1] > 0


def test_a_box_head_without_fc_layers_feeds_d_ins_its_flattened_conv_output(inputs):
    source, target = inputs
    model = build_model(cfg_for(SYNTHETIC_DA, "MODEL.ROI_BOX_HEAD.NUM_FC", "0",
                                "MODEL.ROI_BOX_HEAD.NUM_CONV", "1",
                                "MODEL.ROI_BOX_HEAD.CONV_DIM", "8")).train()
    resolution = model.roi_heads.box_pooler.output_size
    assert model.roi_heads.box_feature_dim == 8 * resolution[0] * resolution[1]
    losses = train_losses(model, source + target)
    assert torch.isfinite(losses["loss_da_instance"])


@pytest.mark.parametrize("config,opts", [(SYNTHETIC_DA, []), (C4_CONFIG, C4_DA)])
def test_d_ins_sees_the_top_proposals_features_the_box_predictor_classifies(config, opts, inputs):
    """D_ins reads, for each image's top-scoring proposals, the features the box predictor
    gets for them (a box head's output; res5's output averaged over space for C4)."""
    source, target = inputs
    model = build_model(cfg_for(config, *opts)).eval()
    model.instance_regions = 20
    images = model.preprocess_image(source[:1] + target[:1])
    features = model.backbone(images.tensor)
    proposals, _ = model.proposal_generator(images, features)
    chosen = model._top_proposal_boxes(images, features)  # (as in training: the RPN in train mode)
    top = [p[p.objectness_logits.argsort(descending=True)[:20]] for p in proposals]
    assert [b.tensor.tolist() for b in chosen] == [p.proposal_boxes.tensor.tolist() for p in top]
    classified = []
    hook = model.roi_heads.box_predictor.register_forward_hook(
        lambda module, args, out: classified.append(args[0].flatten(1)))
    with torch.no_grad():
        model.roi_heads(images, features, top)
        seen_by_d_ins = model.roi_heads.box_features(features, chosen)
    hook.remove()
    # (an untrained R50's RPN may keep fewer than 20 after NMS)
    assert seen_by_d_ins.shape == (sum(map(len, top)), model.roi_heads.box_feature_dim)
    assert torch.allclose(seen_by_d_ins, classified[0], atol=1e-5)


@pytest.mark.parametrize("config,opts", [(SYNTHETIC_DA, []), (C4_CONFIG, C4_DA)])
def test_domain_adaptive_roi_heads_are_box_only(config, opts):
    with pytest.raises(ValueError, match="domain-adaptive ROI heads are box-only: set "
                                         "MODEL.MASK_ON and MODEL.KEYPOINT_ON to False"):
        build_model(cfg_for(config, *opts, "MODEL.MASK_ON", "True"))


def test_every_switch_off_is_plain_faster_rcnn(da_cfg, inputs):
    source, target = inputs
    off = build_model(cfg_for(SYNTHETIC_DA, *ALL_OFF)).train()
    plain = build_model(deployment_config(da_cfg)).train()
    plain.load_state_dict(off.state_dict(), strict=True)
    off_losses = train_losses(off, source + target)
    plain_losses = train_losses(plain, source)
    assert set(off_losses) == set(plain_losses)
    assert_same(off_losses, plain_losses)


def test_da_checkpoint_deploys_into_plain_generalized_rcnn(da_cfg, inputs, tmp_path):
    source, _ = inputs
    da_model = build_model(da_cfg)
    torch.manual_seed(0)
    for p in da_model.parameters():  # non-trivial weights, so that predictions are not empty
        if p.dim() > 1:
            p.data.normal_(0, 0.02)
    DetectionCheckpointer(da_model, save_dir=str(tmp_path)).save("da")
    plain = build_model(deployment_config(da_cfg))
    DetectionCheckpointer(plain).load(str(tmp_path / "da.pth"))
    da_model.eval(), plain.eval()
    images = [{"image": x["image"], "height": 256, "width": 320} for x in source]
    with torch.no_grad():
        expected, got = da_model(images), plain(images)
    for e, g in zip(expected, got):
        e, g = e["instances"], g["instances"]
        assert len(e) > 0
        assert torch.equal(e.pred_boxes.tensor, g.pred_boxes.tensor)
        assert torch.equal(e.scores, g.scores) and torch.equal(e.pred_classes, g.pred_classes)

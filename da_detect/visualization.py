"""Pictures of what adaptation does: detections drawn on images, and domains in feature space."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from detectron2.utils.visualizer import Visualizer  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402


def draw_detections(image_rgb, instances, metadata, score_threshold):
    """HxWx3 RGB image with the detections scoring at least ``score_threshold`` drawn."""
    kept = instances[instances.scores >= score_threshold]
    return Visualizer(image_rgb, metadata).draw_instance_predictions(kept).get_image()


def draw_ground_truth(image_rgb, record, metadata):
    """HxWx3 RGB image with a dataset dict's annotations drawn."""
    return Visualizer(image_rgb, metadata).draw_dataset_dict(record).get_image()


def save_panels(path, panels, titles):
    """Images side by side, each under its title, as one PNG."""
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for axis, panel, title in zip(np.atleast_1d(axes), panels, titles):
        axis.imshow(panel)
        axis.set_title(title)
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def save_feature_plot(path, embeddings, domains, titles, seed=0):
    """One t-SNE panel per model: ``embeddings[k]`` is an (N, D) array of that model's image
    features and ``domains`` N labels ("source"/"target") shared by every panel."""
    figure, axes = plt.subplots(1, len(embeddings), figsize=(4.6 * len(embeddings), 4.4))
    domains = np.asarray(domains)
    for axis, features, title in zip(np.atleast_1d(axes), embeddings, titles):
        points = TSNE(n_components=2, perplexity=min(30.0, len(features) - 1.0), init="pca",
                      random_state=seed).fit_transform(np.asarray(features, dtype=np.float64))
        for domain, color in (("source", "tab:blue"), ("target", "tab:orange")):
            chosen = domains == domain
            axis.scatter(points[chosen, 0], points[chosen, 1], s=9, c=color, label=domain)
        axis.set_title(title)
        axis.set_xticks([])
        axis.set_yticks([])
        axis.legend(loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)

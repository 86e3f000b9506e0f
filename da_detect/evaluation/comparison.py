"""Tables comparing evaluations: splits class by class, and runs over seeds."""
import statistics

from tabulate import tabulate


def mean_std(values):
    """``"mean ± std"`` of ``values`` (e.g. AP50 over seeds), one decimal; one value: itself."""
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def gap_closed(means):
    """Per variant, the share (%) of the source-only -> oracle gap its mean closes:
    ``100 * (mean - source_only) / (oracle - source_only)``. ``means``: variant -> mean AP50,
    with "source_only" and "oracle" among them; none where either is missing or there is no
    gap (the oracle no better)."""
    if "source_only" not in means or "oracle" not in means:
        return {}
    gap = means["oracle"] - means["source_only"]
    return {v: 100 * (m - means["source_only"]) / gap for v, m in means.items()} if gap > 0 else {}


def comparison_table(results_by_split):
    """Markdown table of AP50 per class (rows) and split (columns), mean AP50 first.

    ``results_by_split``: split name -> detectron2 results (``{"bbox": {"AP50": ...,
    "AP50-<class>": ..., ...}}``), as :meth:`DATrainer.test` returns them.
    """
    splits = list(results_by_split)
    boxes = [results_by_split[s]["bbox"] for s in splits]
    classes = [k[len("AP50-"):] for k in boxes[0] if k.startswith("AP50-")]
    rows = [["AP50 (mean)"] + [b["AP50"] for b in boxes]]
    rows += [[c] + [b.get(f"AP50-{c}", float("nan")) for b in boxes] for c in classes]
    return tabulate(rows, headers=["class"] + splits, tablefmt="pipe", floatfmt=".1f")

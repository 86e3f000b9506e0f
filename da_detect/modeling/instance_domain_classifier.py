"""The instance-level domain classifier D_ins of DA Faster R-CNN and its loss (the paper's Eq. 8)."""
import torch.nn.functional as F
from torch import nn


class InstanceDomainClassifier(nn.Module):
    """Per-region domain classifier on ROI box-head features.

    FC (D -> hidden), ReLU, dropout, FC (hidden -> hidden), ReLU, dropout, FC (hidden -> 1):
    maps (R, D) region features, or (R, C, h, w) flattened, to (R,) domain logits.
    """

    def __init__(self, in_features, hidden_dim=1024, dropout=0.5):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, hidden_dim)
        self.fc3 = nn.Linear(hidden_dim, 1)
        self.dropout = nn.Dropout(dropout)
        # PyTorch's default init for the hidden layers, a small output layer: starts at chance
        # (see ImageDomainClassifier).
        nn.init.normal_(self.fc3.weight, std=0.01)
        nn.init.zeros_(self.fc3.bias)

    def forward(self, x):
        x = self.dropout(F.relu(self.fc1(x.flatten(1))))
        x = self.dropout(F.relu(self.fc2(x)))
        return self.fc3(x).squeeze(1)


def instance_domain_loss(logits, domain_labels):
    """Binary cross-entropy per region (Eq. 8), averaged (the paper sums over regions). Returns
    (loss, accuracy).

    Args:
        logits: (R,) domain logits. domain_labels: (R,) float, 0 source, 1 target.
    """
    loss = F.binary_cross_entropy_with_logits(logits, domain_labels)
    accuracy = ((logits > 0).to(logits.dtype) == domain_labels).to(logits.dtype).mean()
    return loss, accuracy.detach()

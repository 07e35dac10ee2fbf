"""ClassShareMonitor (models/utils/class_share_monitor.py): the labeled,
predicted and reliable class counts and the raw-to-final flips of a
window."""
import numpy as np
import torch

from mmseg_semi.models.pseudo_labelers import EntropyPseudoLabeler
from mmseg_semi.models.utils.class_share_monitor import ClassShareMonitor

IGNORE = 255


def test_class_share_monitor_counts_and_resets():
    monitor = ClassShareMonitor(num_classes=3)
    monitor.update_labeled(torch.tensor([5., 0., 1.]))
    raw = torch.tensor([[0.9, 0.1, 0.0], [0.6, 0.0, 0.4],
                        [0.2, 0.7, 0.1]]).t().reshape(1, 3, 1, 3)
    final = torch.tensor([[0.9, 0.1, 0.0], [0.3, 0.0, 0.7],
                          [0.2, 0.7, 0.1]]).t().reshape(1, 3, 1, 3)
    pseudo = EntropyPseudoLabeler(alpha_0=0.0)(final)
    pseudo.labels[0, 0, 1] = IGNORE  # say the labeler dropped pixel 1
    monitor.update_pseudo(raw, pseudo)
    counts = monitor.read_and_reset()
    np.testing.assert_array_equal(counts['labeled'].numpy(), [5, 0, 1])
    np.testing.assert_array_equal(counts['predicted'].numpy(), [1, 1, 1])
    np.testing.assert_array_equal(counts['reliable'].numpy(), [1, 1, 0])
    flips = np.zeros((3, 3))
    flips[0, 0] = flips[0, 2] = flips[1, 1] = 1  # raw 0 -> final 2 once
    np.testing.assert_array_equal(counts['flips'].numpy(), flips)
    assert all(v.sum() == 0 for v in monitor.read_and_reset().values())
    assert monitor.state_dict() == {}

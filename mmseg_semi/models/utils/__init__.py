from .cutmix import cutmix_batch, sample_cutmix_boxes
from .pseudo_label_functional import (adaptive_unsup_weight, class_argmax,
                                      dynamic_partition_alpha,
                                      entropy_quantile_threshold,
                                      pixel_entropy,
                                      pseudo_label_cross_entropy)

__all__ = [
    'adaptive_unsup_weight',
    'class_argmax',
    'cutmix_batch',
    'dynamic_partition_alpha',
    'entropy_quantile_threshold',
    'pixel_entropy',
    'pseudo_label_cross_entropy',
    'sample_cutmix_boxes',
]

from .model_noise import (ResidualBranchDrop, add_classifier_dropout,
                          add_stochastic_depth, apply_model_noise,
                          stochastic_depth_drop_probs)
from .prototype_functional import (argmax_change_fraction,
                                   class_feature_means,
                                   ema_update_class_prior,
                                   ema_update_prototypes,
                                   prototype_class_weights,
                                   prototype_distances,
                                   rectify_probabilities)

__all__ += [
    'ResidualBranchDrop',
    'add_classifier_dropout',
    'add_stochastic_depth',
    'apply_model_noise',
    'argmax_change_fraction',
    'class_feature_means',
    'ema_update_class_prior',
    'ema_update_prototypes',
    'prototype_class_weights',
    'prototype_distances',
    'rectify_probabilities',
    'stochastic_depth_drop_probs',
]

from .class_memory_bank import (ClassMemoryBank,  # noqa: E402
                                fifo_write_slots, random_subset_per_class)
from .contrastive_functional import (anchor_mask,  # noqa: E402
                                     class_positive_keys, class_rank,
                                     flatten_pixels, gather_pixels, info_nce,
                                     labeled_negative_mask,
                                     sample_anchor_pixels,
                                     unlabeled_negative_mask)

__all__ += [
    'ClassMemoryBank',
    'anchor_mask',
    'class_positive_keys',
    'class_rank',
    'fifo_write_slots',
    'flatten_pixels',
    'gather_pixels',
    'info_nce',
    'labeled_negative_mask',
    'random_subset_per_class',
    'sample_anchor_pixels',
    'unlabeled_negative_mask',
]

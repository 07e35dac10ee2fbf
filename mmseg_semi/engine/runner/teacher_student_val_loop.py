from typing import Dict, List, Optional, Sequence, Union

from mmengine.evaluator import Evaluator
from mmengine.model import is_model_wrapper
from mmengine.runner import ValLoop
from torch.utils.data import DataLoader

from mmseg.registry import LOOPS


@LOOPS.register_module()
class TeacherStudentValLoop(ValLoop):
    """Validate every network of a semi-supervised model in one pass.

    For each name in ``predict_on`` (default: every name the model offers,
    e.g. ``teacher`` and ``student``; RML adds more) the model predicts with
    that network and the metrics are logged with the name as prefix
    (``teacher/mIoU``, ``student/mIoU``), so ``save_best`` can follow either.

    Args:
        runner, dataloader, evaluator, fp16: as :class:`ValLoop`.
        predict_on: Networks to evaluate, or None for all.
    """

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, Dict],
                 evaluator: Union[Evaluator, Dict, List],
                 fp16: bool = False,
                 predict_on: Optional[Sequence[str]] = None) -> None:
        super().__init__(runner, dataloader, evaluator, fp16)
        self.predict_on = list(predict_on) if predict_on else None

    def run(self) -> dict:
        model = self.runner.model
        if is_model_wrapper(model):
            model = model.module
        if not hasattr(model, 'predict_choices'):
            return super().run()  # a plain segmentor: mmseg's behaviour
        names = self.predict_on or model.predict_choices()
        original = model.predict_on
        self.runner.call_hook('before_val')
        self.runner.call_hook('before_val_epoch')
        self.runner.model.eval()
        metrics = {}
        try:
            for name in names:
                model.predict_on = name
                for idx, data_batch in enumerate(self.dataloader):
                    self.run_iter(idx, data_batch)
                branch_metrics = self.evaluator.evaluate(
                    len(self.dataloader.dataset))
                metrics.update({
                    f'{name}/{key}': value
                    for key, value in branch_metrics.items()
                })
        finally:
            model.predict_on = original
        self.runner.call_hook('after_val_epoch', metrics=metrics)
        self.runner.call_hook('after_val')
        return metrics

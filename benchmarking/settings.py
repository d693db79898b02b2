"""The settings one benchmark run shares across all its cases, independent of argparse."""
from dataclasses import asdict, dataclass, field

# The runner's and train.py's default data root (NVIDIA's container layout).
DEFAULT_DATA_ROOT = "/data/imagenet/train-val-recordio-passthrough"


@dataclass
class Settings:
    """What every case of a sweep runs with.

    Attributes
    ----------
    model : str
        A name of the models registry (``resnet50_v1.5``, ``ssd320_resnet50_fpn`` ...).
    task : str
        The model's task: "classification", "detection" or "instance_segmentation"
        (`models.model_task`).
    dtype : str
        "float32" or "float16" (GPU only).
    data_backend : str
        "synthetic" (compute alone) or a real data backend: "dali-cpu", "dali-gpu", "mxnet".
    data_root : str
        Classification: folder with train.rec/.idx (training) and val.rec/.idx (inference on
        real data). Detection: a COCO-layout folder (training reads train2017, inference on
        real data val2017; synthetic training takes the classes and epoch length from it).
    image_shape : tuple of int
        Network input (C, H, W). Mask R-CNN: the input of synthetic inference (padded to a
        multiple of 32); its training and real-data inference resize by `min_size` and
        `max_size`.
    iterations : int
        Iterations (batches) per epoch.
    epochs : int
        Epochs that are measured.
    warmup : int
        Epochs run before them and not counted.
    num_examples : int or None
        Cap on the samples of an epoch (all workers together); an epoch then has
        ``min(iterations, num_examples // global batch)`` iterations.
    layout : str
        "NCHW", or "NHWC" (GPU only).
    num_classes : int
        Classes of the network: classification, and detection inference (object classes;
        detection training takes those of the COCO json).
    runner_args : tuple of str
        Extra flags for ``./runner`` (and through it train.py), training only.
    detect_options : dict
        Keyword arguments of `models.ssd.SSDFPN.detect` for detection inference (score and
        NMS thresholds, detections kept); empty: its defaults. benchmark.py passes train.py's.
    min_size, max_size : int or None
        Mask R-CNN: the recipe's resize (shorter side, longest allowed longer side), given to
        train.py as --min-size / --max-size and to the evaluation pipeline for inference.
    image_hw : tuple of int or None
        Mask R-CNN synthetic inference: the image's (height, width) inside `image_shape`.
    runtime : str
        What runs inference: "mxnet" (the network of the registry, built here) or
        "onnxruntime" (the exported file `onnx_path`).
    onnx_path : str or None
        The ONNX file ONNX Runtime runs.
    """

    model: str = "resnet50_v1.5"
    task: str = "classification"
    dtype: str = "float32"
    data_backend: str = "synthetic"
    data_root: str = DEFAULT_DATA_ROOT
    image_shape: tuple = (3, 224, 224)
    iterations: int = 100
    epochs: int = 3
    warmup: int = 1
    num_examples: int = None
    layout: str = "NCHW"
    num_classes: int = 1000
    runner_args: tuple = field(default_factory=tuple)
    detect_options: dict = field(default_factory=dict)
    runtime: str = "mxnet"
    onnx_path: str = None
    min_size: int = None
    max_size: int = None
    image_hw: tuple = None

    def epoch_iterations(self, global_batch):
        """Iterations in one epoch for `global_batch` samples per iteration (0: too few
        examples for one batch)."""
        if self.num_examples is None:
            return self.iterations
        return min(self.iterations, self.num_examples // global_batch)

    @property
    def detection(self):
        return self.task == "detection"

    @property
    def instance_segmentation(self):
        return self.task == "instance_segmentation"

    @property
    def real_data(self):
        return self.data_backend != "synthetic"

    def as_dict(self):
        values = asdict(self)
        values["image_shape"] = list(self.image_shape)
        values["runner_args"] = list(self.runner_args)
        if self.image_hw is not None:
            values["image_hw"] = list(self.image_hw)
        return values

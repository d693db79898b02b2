"""Model registry: every network the runner can train, built by name.

    net = models.get_model("resnet50_v1.5", classes=1000)       # classification
    net = models.get_model("ssd320_resnet50_fpn", classes=80)   # detection
    models.model_task("ssd320_resnet50_fpn")                    # -> "detection"
    net = models.get_model("maskrcnn_r50_fpn", classes=80)      # instance segmentation

Each registered name is a few lines over one family builder; `list_models()` gives the names,
and an unknown name fails with that list. Every builder takes ``classes`` (the number of
classes; for detection and instance segmentation, object classes without background) and
``layout``.

Tasks: "classification", "detection" (SSD: boxes) and "instance_segmentation" (Mask R-CNN:
boxes and masks, trained from polygons); train.py and the runner train all three.
"""
import mxnet as mx

from models.precision import cast_network, check_device_support
from models.resnet import default_initializer, load_backbone_weights, resnet_v15
from models.ssd import ssd_fpn

TASKS = ("classification", "detection", "instance_segmentation")
_REGISTRY = {}
_TASK_OF = {}


def register_model(name, task="classification"):
    """Decorator that registers a builder function under `name`, for `task` (one of TASKS)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")

    def add(builder):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = builder
        _TASK_OF[name] = task
        return builder
    return add


def list_models(task=None):
    """Sorted names of every registered model, or of those for `task`."""
    return sorted(name for name in _REGISTRY if task is None or _TASK_OF[name] == task)


def get_model(name, **kwargs):
    """Build the registered model `name`; keyword arguments go to its builder.

    Raises
    ------
    ValueError
        If `name` is not registered; the message lists the valid names.
    """
    _check_name(name)
    return _REGISTRY[name](**kwargs)


def model_task(name):
    """The task of the registered model `name`: one of TASKS.

    Raises
    ------
    ValueError
        If `name` is not registered; the message lists the valid names.
    """
    _check_name(name)
    return _TASK_OF[name]


def _check_name(name):
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")


def build_network(name, classes, layout, image_shape, dtype, ctx, seed=0, **kwargs):
    """The registered model `name`, initialised on `ctx`, cast to `dtype` and hybridized as
    it is trained and deployed.

    Parameters
    ----------
    image_shape : (int, int, int)
        Channels, height, width of the input; one forward pass resolves deferred shapes.
    seed : int
        Seed of the weight initialisation.
    kwargs
        Further arguments of the model's builder (e.g. ``zero_init_residual``).
    """
    net = get_model(name, classes=classes, layout=layout, **kwargs)
    mx.random.seed(seed)
    net.initialize(default_initializer(), ctx=ctx)
    c, h, w = image_shape
    shape = (1, c, h, w) if layout == "NCHW" else (1, h, w, c)
    net(mx.nd.zeros(shape, ctx=ctx))  # materialise the deferred shapes before casting
    cast_network(net, dtype)
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def _register_resnets():
    for depth in (18, 34, 50, 101, 152):
        def build(classes=1000, layout="NCHW", zero_init_residual=False, _depth=depth):
            return resnet_v15(_depth, classes, layout, zero_init_residual)
        build.__doc__ = f"ResNet-{depth} v1.5 (stride on the 3x3 convolution)."
        register_model(f"resnet{depth}_v1.5")(build)


_register_resnets()


@register_model("ssd320_resnet50_fpn", task="detection")
def ssd320_resnet50_fpn(classes=80, layout="NCHW", image_size=320):
    """SSD320 v1.2 (NVIDIA): ResNet-50 v1.5, FPN P3-P7, 320x320 input."""
    return ssd_fpn(50, classes, image_size, layout)


@register_model("ssd320_resnet18_fpn", task="detection")
def ssd320_resnet18_fpn(classes=80, layout="NCHW", image_size=320):
    """SSD320 v1.2 with a ResNet-18 v1.5 backbone (CPU demos)."""
    return ssd_fpn(18, classes, image_size, layout)


@register_model("ssd128_resnet18_fpn64", task="detection")
def ssd128_resnet18_fpn64(classes=80, layout="NCHW", image_size=128):
    """SSD-FPN with ResNet-18 v1.5 at 128x128, 64-channel FPN and 2-convolution towers: a
    network that learns the demo detection set in minutes on two CPU cores (tests)."""
    return ssd_fpn(18, classes, image_size, layout, channels=64, num_convs=2)


@register_model("ssd256_resnet18_fpn", task="detection")
def ssd256_resnet18_fpn(classes=80, layout="NCHW", image_size=256):
    """SSD-FPN with ResNet-18 v1.5 at 256x256 (CPU demos and tests)."""
    return ssd_fpn(18, classes, image_size, layout)


@register_model("maskrcnn_r50_fpn", task="instance_segmentation")
def maskrcnn_r50_fpn(classes=80, layout="NCHW", **settings):
    """Mask R-CNN R-50-FPN (NVIDIA's seed, maskrcnn-benchmark's e2e_mask_rcnn_R_50_FPN_1x):
    ResNet-50 v1.5, FPN P2-P6 of 256, 2x1024 FC box head, 4x256 mask head. `settings` go to
    `models.mask_rcnn.MaskRCNN` (rpn=, roi=, detect=, ...)."""
    from models.mask_rcnn import mask_rcnn_fpn  # here: it imports gluoncv, which the
    return mask_rcnn_fpn(50, classes, layout, **settings)  # other models never need


@register_model("maskrcnn_r18_fpn", task="instance_segmentation")
def maskrcnn_r18_fpn(classes=80, layout="NCHW", **settings):
    """A small Mask R-CNN for CPU demos and tests, meant for a short side of 320: ResNet-18
    v1.5, FPN of 64 channels, 2x256 FC box head, 4x64 mask head; the recipe otherwise."""
    from models.mask_rcnn import mask_rcnn_fpn
    settings = dict(dict(fpn_channels=64, box_channels=256, mask_channels=64), **settings)
    return mask_rcnn_fpn(18, classes, layout, **settings)


__all__ = ["TASKS", "build_network", "cast_network", "check_device_support",
           "default_initializer", "get_model", "list_models", "load_backbone_weights",
           "model_task", "register_model"]

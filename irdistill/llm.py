"""Finding and loading a causal language model: the listwise LLM teacher and the query generator.

A model is a folder (``config.json`` and weights, or a folder holding one ``.gguf`` file), a
``.gguf`` file, a name under ``$IRDISTILL_MODELS`` or a hub id. GGUF checkpoints are read by
``transformers`` itself (``gguf_file=``, which needs the ``gguf`` and ``accelerate`` packages).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irdistill.dependencies import require
from irdistill.errors import InputError
from irdistill.paths import resolve_model

logger = logging.getLogger(__name__)

__all__ = ["CausalLM", "load_causal_lm", "locate_causal_lm", "torch_dtype"]


def locate_causal_lm(model: str, gguf_file: str | None) -> tuple[str, str | None]:
    """``(folder or hub id, gguf file name)``; an :class:`InputError` for a local path that holds
    no model. A GGUF checkpoint checks that its extra packages are installed."""
    resolved = resolve_model(model)
    path = Path(resolved)
    found: tuple[str, str | None]
    if not path.exists():
        found = (resolved, gguf_file)  # a hub id: from_pretrained decides
    elif path.is_file():
        if path.suffix.lower() != ".gguf" or gguf_file is not None:
            raise InputError(
                f"{path} is a file, not a model folder: expected a folder with config.json or a .gguf file"
            )
        found = (str(path.parent), path.name)
    elif gguf_file is not None:
        if not (path / gguf_file).is_file():
            raise InputError(
                f"{path} has no GGUF file {gguf_file!r}; GGUF files there: "
                f"{', '.join(sorted(p.name for p in path.glob('*.gguf'))) or 'none'}"
            )
        found = (str(path), gguf_file)
    elif (path / "config.json").is_file():
        found = (str(path), None)
    else:
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        if len(ggufs) > 1:
            raise InputError(f"{path} holds several GGUF files ({', '.join(ggufs)}); choose one with gguf_file=")
        if not ggufs:
            raise InputError(f"{path} is not a model folder: it has no config.json and no .gguf file")
        logger.info("using the GGUF file %s in %s", ggufs[0], path)
        found = (str(path), ggufs[0])
    if found[1] is not None:
        require("gguf", "accelerate", purpose=f"loading the GGUF model {found[1]}")
    return found


def torch_dtype(dtype: Any) -> Any:
    """``None`` (the checkpoint's own), ``"auto"``, a ``torch.dtype``, or its name (``"bfloat16"``)."""
    import torch

    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise InputError(f"dtype must be a torch dtype name such as float32 or bfloat16, got {dtype!r}")
    return value


@dataclass
class CausalLM:
    """A loaded tokenizer and model. ``system_role``: whether the chat template takes a system
    turn (some refuse one; the system text then goes into the first user turn)."""

    tokenizer: Any
    model: Any
    system_role: bool = True


def template_accepts_system(tokenizer: Any) -> bool:
    """Whether ``tokenizer``'s chat template renders a system turn."""
    from jinja2 import TemplateError

    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    try:
        tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except TemplateError:
        logger.info("the chat template refuses a system turn; it goes into the user turn")
        return False
    return True


def load_tokenizer(path: str, gguf_file: str | None) -> Any:
    """The tokenizer of a located model, with a pad token (EOS or UNK when it has none)."""
    from transformers import AutoTokenizer

    kwargs = {"gguf_file": gguf_file} if gguf_file is not None else {}
    where = path + (f" ({gguf_file})" if gguf_file else "")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:  # missing or unreadable model files
        raise InputError(f"cannot load a tokenizer from {where}: {exc}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_model(path: str, gguf_file: str | None, *, device: str | None = None, dtype: Any = None) -> Any:
    """The causal LM of a located model, in eval mode on ``device`` (default: CPU or the rank's GPU)."""
    from transformers import AutoModelForCausalLM

    from irdistill.encoding import rank_device

    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file is not None else {}
    if (resolved := torch_dtype(dtype)) is not None:
        kwargs["dtype"] = resolved
    where = path + (f" ({gguf_file})" if gguf_file else "")
    logger.info("loading causal LM %s", where)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:  # missing or unreadable model files
        raise InputError(f"cannot load a causal language model from {where}: {exc}") from exc
    model.to(rank_device(device) or "cpu")
    model.eval()
    return model


def load_causal_lm(path: str, gguf_file: str | None, *, device: str | None = None, dtype: Any = None) -> CausalLM:
    """Tokenizer and model of a model :func:`locate_causal_lm` found."""
    tokenizer = load_tokenizer(path, gguf_file)
    system = template_accepts_system(tokenizer) if tokenizer.chat_template else True
    return CausalLM(tokenizer, load_model(path, gguf_file, device=device, dtype=dtype), system)

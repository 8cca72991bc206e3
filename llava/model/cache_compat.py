"""Where transformers hands over the KV cache, across the versions we run on (5.17 … 5.25).

Up to 5.23 a model's forward and every decoder layer receive the cache as `past_key_values=`; from 5.24
they receive it as `cache=` (the old name is still accepted on input, with a deprecation warning). Every
reader of the cache in this repository goes through `find_cache`, which accepts both names and refuses,
naming the installed transformers version, a cache passed under any other name: a hook that silently saw
"no cache" would treat every decode step as a new sequence and drop the video.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import transformers
from transformers.cache_utils import Cache
from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer

from llava.errors import HookError

# Newest name first; both are read, whichever this transformers passes.
CACHE_KEYWORDS = ("cache", "past_key_values")


def _own_keyword() -> str:
    params = inspect.signature(Qwen2DecoderLayer.forward).parameters
    for name in CACHE_KEYWORDS:
        if name in params:
            return name
    raise ImportError(
        f"transformers {transformers.__version__}: Qwen2DecoderLayer.forward takes the KV cache under none of "
        f"{CACHE_KEYWORDS} (its parameters: {', '.join(params)}); this holitom release supports transformers "
        "5.17–5.25 (see constraints.txt)"
    )


# The name this transformers' own forwards declare: what we pass when we call one of them.
CACHE_KEYWORD = _own_keyword()


def find_cache(kwargs: Mapping[str, Any], where: str) -> Cache | None:
    """The KV cache in a forward's (or decoder layer's) keyword arguments, or None when there is none.

    Raises when a `Cache` object arrives under a name we do not know (transformers moved it again): reading
    None there would silently restart the sequence at every decode step.
    """
    for name in CACHE_KEYWORDS:
        value = kwargs.get(name)
        if value is not None:
            return value
    for name, value in kwargs.items():
        if isinstance(value, Cache):
            raise HookError(
                f"{where}: transformers {transformers.__version__} passes the KV cache as `{name}=`, which this "
                f"holitom release does not know (it reads {' / '.join(CACHE_KEYWORDS)}); install a transformers "
                "version from constraints.txt"
            )
    return None


def require_cache(kwargs: Mapping[str, Any], where: str) -> Cache:
    """`find_cache`, for a pass that must have a cache (a decode step): one clear error when it has none."""
    cache = find_cache(kwargs, where)
    if cache is None:
        raise HookError(
            f"{where}: a decode step arrived without a KV cache under {' / '.join(CACHE_KEYWORDS)} "
            f"(transformers {transformers.__version__}); run with use_cache=True"
        )
    return cache


def output_cache(output: Any) -> Cache | None:
    """The cache a forward returned (`cache` from 5.24, `past_key_values` before)."""
    for name in CACHE_KEYWORDS:
        if name in getattr(type(output), "__dataclass_fields__", {}):
            return getattr(output, name)
    return None

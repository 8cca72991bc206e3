"""What a method is, for the registry. Pure Python: a method's module imports torch only inside `install`.

A method module holds
- a frozen config dataclass: one field per setting, declared with `setting(default, help, ...)`, validated
  in `__post_init__` (a bad value names itself); the field types (`int`, `float`, `str`, `bool`, `int | None`,
  `tuple[int, ...]`) tell every front end how to parse text;
- a `Method` subclass: the config class, paper presets, the FLOPs schedule, the paper's table rows it
  produces, and `install` onto a host model.

Everything else — `holitom generate/bench/flops`, the lmms-eval plugin's `model_args`, sweep configs — derives
names, types, defaults, validation and help from here.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from holitom import counts

NONE_WORDS = ("none", "null", "off", "")
LAYOUTS = ("one_token", "grid")
# The budget ρ of the paper's tables for the models it evaluates at one budget only (the 72B and LLaVA-Video
# tables print 15 % rows only); OV-7B's Table 1 has four budgets, so there the method's default (one of them)
# stands. Read by `Method.presets` for every method with a `retain_ratio`.
PAPER_RETAIN_RATIO: dict[str, float] = {"ov-72b": 0.15, "vid-7b": 0.15}
# The published shapes the paper's tables evaluate (ov-0.5b is published but not in the paper).
PAPER_SHAPES: tuple[str, ...] = ("ov-7b", "ov-72b", "vid-7b")


def setting(
    default: Any,
    help: str,  # noqa: A002 - the argparse word
    *,
    short: str | None = None,
    choices: Sequence[str] | None = None,
    layer: bool = False,
) -> Any:
    """A config field with its help text. short: key in `holitom bench --methods` items (e.g. "K");
    choices: valid strings; layer: the value names decoder layers (checked against the model's depth)."""
    meta = {"help": help, "short": short, "choices": tuple(choices) if choices else None, "layer": layer}
    if isinstance(default, (list, tuple)):
        return dataclasses.field(default_factory=lambda: tuple(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Setting:
    """One setting of a method, as front ends see it."""

    name: str
    type: type  # int, float, str or bool (the element type of a sequence)
    default: Any
    help: str
    optional: bool = False  # None allowed ("none" in text)
    sequence: bool = False  # a tuple of `type`
    short: str | None = None
    choices: tuple[str, ...] | None = None
    layer: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def type_name(self) -> str:
        """What a value must be, with its article: "an integer or none", "a list of integers (e.g. 2/7/14)"."""
        name = {int: "integer", float: "number", str: "string", bool: "true/false"}[self.type]
        if self.sequence:
            name = f"a list of {name}s (e.g. 2/7/14)"
        else:
            name = ("an " if name[0] in "aeiou" else "a ") + name
        return name + (" or none" if self.optional else "")

    def parse(self, raw: Any) -> Any:
        """A value from text (command line, lmms-eval model_args, YAML) or Python; ValueError naming it."""
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in NONE_WORDS):
            if self.optional:
                return None
            raise ValueError(f"{self.name}={raw!r}: must be {self.type_name}")
        if self.sequence:
            items = raw
            if isinstance(raw, str):
                items = [part for part in raw.replace("/", " ").replace(",", " ").split() if part]
            elif not isinstance(raw, (list, tuple)):
                items = [raw]
            return tuple(self._one(item, raw) for item in items)
        return self._one(raw, raw)

    def _one(self, value: Any, raw: Any) -> Any:
        bad = ValueError(f"{self.name}={raw!r}: must be {self.type_name}")
        if self.type is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no"):
                return False
            raise bad
        if isinstance(value, bool):
            raise bad
        if self.type is int:
            if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
                return int(value)
            if isinstance(value, str):
                try:
                    return int(value.strip())
                except ValueError:
                    raise bad from None
            raise bad
        if self.type is float:
            try:
                out = float(value)
            except (TypeError, ValueError):
                raise bad from None
            if not math.isfinite(out):
                raise ValueError(f"{self.name}={raw!r}: must be a finite number")
            return out
        if not isinstance(value, str):
            raise bad
        if self.choices and value not in self.choices:
            raise ValueError(f"{self.name}={value!r}: valid values are {', '.join(self.choices)}")
        return value

    def format(self, value: Any) -> str:
        """Text form for lmms-eval's model_args and run names (no ',' or '=')."""
        if value is None:
            return "none"
        if isinstance(value, tuple):
            return "/".join(self.format(v) for v in value)
        if isinstance(value, float):
            return repr(value)
        return str(value).lower() if isinstance(value, bool) else str(value)


def _field_type(hint: Any) -> tuple[type, bool, bool]:
    """(element type, optional, sequence) of a field annotation."""
    optional = False
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        optional = type(None) in args
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"unsupported setting type {hint!r}")
        hint, args = rest[0], typing.get_args(rest[0])
    if typing.get_origin(hint) is tuple:
        return args[0], optional, True
    if hint not in (int, float, str, bool):
        raise TypeError(f"unsupported setting type {hint!r}")
    return hint, optional, False


def settings_of(config_class: type) -> tuple[Setting, ...]:
    """The settings of a config dataclass, in field order."""
    hints = typing.get_type_hints(config_class)
    out = []
    for f in dataclasses.fields(config_class):
        kind, optional, sequence = _field_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        meta = f.metadata
        out.append(
            Setting(
                name=f.name,
                type=kind,
                default=default,
                help=meta.get("help", ""),
                optional=optional,
                sequence=sequence,
                short=meta.get("short"),
                choices=meta.get("choices"),
                layer=meta.get("layer", False),
            )
        )
    return tuple(out)


# ---------------------------------------------------------------------------------------------- validators


def check_share(owner: str, name: str, value: Any, *, low_open: bool = True, high_open: bool = False) -> None:
    """ValueError "Owner.name=value: must be in (0, 1]" unless value is in (0, 1] (or the interval asked for)."""
    counts.check_share(f"{owner}.{name}", value, low_open=low_open, high_open=high_open)


def check_int(owner: str, name: str, value: Any, low: int, *, optional: bool = False, what: str = "") -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{owner}.{name}={value!r}: must be {what or f'an integer ≥ {low}'}")


# ---------------------------------------------------------------------------------------------- methods

# A FLOPs schedule: ((first layer, visual tokens from there on), ...), the first entry at layer 0.
Schedule = tuple[tuple[int, int], ...]


class Method:
    """One registered method. Subclasses set the class attributes and override what applies."""

    name: str = ""
    summary: str = ""
    config_class: type | None = None  # a frozen dataclass of `setting` fields (None: no settings)
    layouts: tuple[str, ...] = LAYOUTS  # newline layouts it supports
    # position kinds of the hosts it runs on (holitom.hosts.base.POSITIONS): "mrope" hosts need compressors that
    # say where each kept token came from, and cuts that keep the survivors' own positions
    positions: tuple[str, ...] = ("sequential",)
    paper_labels: tuple[str, ...] = ()  # row labels of the paper's tables it produces
    acts: str = ""  # where it acts, for docs and help: "before the LLM", "inside the LLM", ...
    label_keys: tuple[str, ...] = ()  # settings every label shows (by short key)
    relative_layers: bool = False  # its layer settings scale with the LM's depth (HoliTom's K = 18 of 28)
    # Settings under which the method keeps every token unchanged: the model must then give exactly the
    # vanilla logits (checked for every registered method by tests/test_registry.py).
    identity_settings: dict[str, Any] = {}

    @property
    def retention_setting(self) -> str | None:
        """The setting a results table shows as the row's retention (None: see `retention`)."""
        return "retain_ratio" if any(s.name == "retain_ratio" for s in self.settings) else None

    def retention(self, config: Any, frames: int, tokens_per_frame: int) -> float:
        """The share of the pooled tokens a configuration keeps before the LLM (tables show it)."""
        key = self.retention_setting
        return float(getattr(config, key)) if key and config is not None else 1.0

    @cached_property
    def settings(self) -> tuple[Setting, ...]:
        return settings_of(self.config_class) if self.config_class is not None else ()

    def setting(self, name: str) -> Setting:
        for item in self.settings:
            if item.name == name:
                return item
        raise KeyError(name)

    # ---- presets and configs ---------------------------------------------------------------------------
    def presets(self, shape: str | None, given: Mapping[str, Any]) -> dict[str, Any]:
        """Values for settings not given, from the paper's settings for a published model shape: here the
        budget of a model the paper evaluates at one budget only (`PAPER_RETAIN_RATIO`); methods add theirs."""
        if shape in PAPER_RETAIN_RATIO and any(s.name == "retain_ratio" for s in self.settings):
            return {"retain_ratio": PAPER_RETAIN_RATIO[shape]}
        return {}

    def make_config(
        self,
        values: Mapping[str, Any] | None = None,
        *,
        shape: str | None = None,
        num_layers: int | None = None,
        layout: str | None = None,
    ) -> Any:
        """A validated config from settings by name (text or typed values). Settings not given take the
        paper's value for `shape` (see `presets`), else the config's default. With `num_layers`/`layout`,
        the config is also checked against the model (a layer beyond its depth is an error)."""
        values = dict(values or {})
        names = [s.name for s in self.settings]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(
                f"unknown {self.name} settings {unknown}; valid: {', '.join(names) or 'none (it takes no settings)'}"
            )
        parsed = {name: self.setting(name).parse(value) for name, value in values.items()}
        merged = {**self.presets(shape, parsed), **parsed}
        config = self.config_class(**merged) if self.config_class is not None else None
        if num_layers is not None or layout is not None:
            self.check_model(config, num_layers, layout, given=set(parsed))
        return config

    def check_model(
        self, config: Any, num_layers: int | None, layout: str | None = None, given: set[str] | None = None
    ) -> None:
        """ValueError when a setting cannot apply to a model of this depth / newline layout."""
        if layout is not None and layout not in self.layouts:
            raise ValueError(f"{self.name} supports the {' / '.join(self.layouts)} layout, not {layout!r}")
        if num_layers is None or config is None:
            return
        for item in self.settings:
            value = getattr(config, item.name)
            if not item.layer or value is None:
                continue
            for layer in value if item.sequence else (value,):
                if not 1 <= layer <= num_layers - 1:
                    origin = "" if given is None or item.name in given else " (the default)"
                    raise ValueError(
                        f"{self.name}: {item.name}={_show(value)}{origin} is beyond this {num_layers}-layer LM: "
                        f"layers must be in [1, {num_layers - 1}]" + self.layer_hint(item.name)
                    )

    def layer_hint(self, name: str) -> str:
        """Extra words for a layer-out-of-range error (e.g. how to switch the stage off)."""
        return ""

    def config_dict(self, config: Any) -> dict[str, Any]:
        return dataclasses.asdict(config) if config is not None else {}

    def label(self, config: Any, given: Mapping[str, Any]) -> str:
        """A short label of a configuration: name, ρ, the `label_keys` settings, then other given ones by
        name, e.g. "holitom ρ=0.10 K=18 r=0.5 tau=0.65", "fastv K=2 R=0.2"."""
        values = self.config_dict(config)
        parts = [self.name]
        if "retain_ratio" in values:
            parts.append(f"ρ={values['retain_ratio']:.2f}")
        parts += [f"{self.setting(n).short or n}={self.setting(n).format(values[n])}" for n in self.label_keys]
        extra = sorted(set(given) - {"retain_ratio", *self.label_keys})
        parts += [f"{n}={self.setting(n).format(values[n])}" for n in extra]
        return " ".join(parts)

    # ---- accounting --------------------------------------------------------------------------------------
    def schedule(self, config: Any, frames: int, tokens_per_frame: int, num_layers: int) -> Schedule:
        """Visual tokens per layer as the paper counts them (newlines not counted)."""
        raise NotImplementedError

    # ---- the paper ---------------------------------------------------------------------------------------
    def paper_settings(self, label: str, shape: str, budget: float) -> dict[str, Any] | None:
        """The settings behind a row of the paper's tables (None: this method does not produce it)."""
        return None

    # ---- install -----------------------------------------------------------------------------------------
    def install(self, host: Any, config: Any) -> Any:
        """Install on a host (see holitom.hosts); returns an object with remove() and stats()."""
        raise NotImplementedError


def _show(value: Any) -> str:
    return "/".join(str(v) for v in value) if isinstance(value, tuple) else repr(value)

"""Front ends of the registry: command-line flags and `holitom bench --methods` items. Pure Python.

Every flag, key, type, default and help text comes from the methods' config dataclasses; a setting name
shared by several methods (e.g. `retain_ratio`) is one flag.
"""

from __future__ import annotations

import argparse
from typing import Any

from holitom import methods
from holitom.methods.base import Method, Setting


def add_method_arguments(parser: argparse.ArgumentParser, default: str = "vanilla") -> None:
    """`--method NAME` and one flag per setting of every registered method (values parsed later, so a
    bad value or a flag of another method is a one-line error naming it)."""
    described = "; ".join(f"{m.name}: {m.summary}" for m in methods.all_methods())
    parser.add_argument("--method", choices=methods.METHODS, default=default, help=f"token reduction ({described})")
    group = parser.add_argument_group(
        "method settings",
        "only the chosen method's; a setting not given takes the paper's value for a published model, "
        "else the method's default",
    )
    for name, owners in methods.all_settings().items():
        first = owners[0][1]
        text = "; ".join(f"{method}: {item.help} (default {item.format(item.default)})" for method, item in owners)
        if first.type is bool and not first.sequence:  # `--flag` alone means true; `--flag false` also works
            group.add_argument(first.flag, dest=name, default=None, nargs="?", const="true", metavar="BOOL", help=text)
        else:
            group.add_argument(first.flag, dest=name, default=None, metavar=_metavar(first), help=text)


def _metavar(item: Setting) -> str:
    if item.choices:
        return "{" + ",".join(item.choices) + "}"
    return {int: "INT", float: "X", str: "TEXT", bool: "BOOL"}[item.type] + ("S" if item.sequence else "")


def method_settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line for `args.method`, typed (ValueError naming a bad one)."""
    spec = methods.get(args.method)
    given = {name: getattr(args, name) for name in methods.all_settings() if getattr(args, name, None) is not None}
    own = {item.name for item in spec.settings}
    foreign = sorted(set(given) - own)
    if foreign:
        flags = ", ".join("--" + name.replace("_", "-") for name in foreign)
        takes = ", ".join(item.flag for item in spec.settings) or "no settings"
        raise ValueError(f"{flags}: not a setting of method {spec.name} (it takes {takes})")
    out = {}
    for name, value in given.items():
        try:
            out[name] = spec.setting(name).parse(value)
        except ValueError as exc:
            raise ValueError(f"{spec.setting(name).flag}: {exc}") from None
    return out


# ---------------------------------------------------------------------------------------------- bench items


def parse_method_item(item: str) -> tuple[Method, dict[str, Any]]:
    """One `NAME[@RHO][:KEY=VALUE]...` item → (method, settings given). KEY: a setting's name or short key
    (e.g. K, r, tau); RHO: retain_ratio. Values are parsed by the setting's type (`none` where allowed)."""
    head, *pairs = item.split(":")
    name, _, rho_text = head.partition("@")
    name = name.strip()
    if name not in methods.METHODS:
        raise ValueError(f"--methods item {item!r}: unknown method {name!r}; valid: {', '.join(methods.METHODS)}")
    spec = methods.get(name)
    keys = {key: s for s in spec.settings for key in (s.name, s.short) if key}
    given: dict[str, Any] = {}
    try:
        if rho_text:
            if "retain_ratio" not in keys:
                raise ValueError(f"@ρ applies to methods with a retain_ratio, not {name}")
            given["retain_ratio"] = keys["retain_ratio"].parse(rho_text)
        for pair in pairs:
            key, eq, value = pair.partition("=")
            if not eq or key not in keys:
                valid = ", ".join(sorted(keys)) or "none"
                raise ValueError(f"bad setting {pair!r} for {name}; valid keys: {valid}")
            given[keys[key].name] = keys[key].parse(value)
    except ValueError as exc:
        raise ValueError(f"--methods item {item!r}: {exc}") from None
    return spec, given

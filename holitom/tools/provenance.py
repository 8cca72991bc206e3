"""Where a number came from: package versions, this package's git commit, the devices. Written into every
run record (lmms-eval plugin, `holitom bench`) and printed under `holitom tables`."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from typing import Any

PACKAGES = ("torch", "transformers", "accelerate", "lmms_eval", "flash_attn", "decord", "av")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package.replace("_", "-"))
    except metadata.PackageNotFoundError:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None


def git_commit(path: str | None = None) -> str | None:
    """The commit of the checkout holding this package (with "+dirty" for local changes), or None."""
    where = path or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(
            ["git", "-C", where, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", where, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Versions of Python, holitom (and its git commit) and the packages a run depends on."""
    import holitom

    out: dict[str, Any] = {
        "python": platform.python_version(),
        "holitom": holitom.__version__,
        "holitom_git": git_commit(),
    }
    out.update({package: _version(package) for package in PACKAGES})
    try:
        import torch

        out["cuda"] = torch.version.cuda
    except ImportError:
        pass
    return out


def device_names(model: Any) -> list[str]:
    """The distinct devices a model's parameters sit on, by name (e.g. "cuda:0 NVIDIA H100 80GB HBM3")."""
    import torch

    devices = sorted({str(p.device) for p in model.parameters()})
    names = []
    for device in devices:
        if device.startswith("cuda"):
            names.append(f"{device} {torch.cuda.get_device_name(torch.device(device))}")
        else:
            names.append(f"{device} {cpu_name()}")
    return names

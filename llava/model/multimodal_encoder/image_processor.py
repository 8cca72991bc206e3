"""SigLIP image preprocessing as LLaVA-OneVision / LLaVA-Video use it.

Each image or video frame is resized to `size` (bicubic), scaled by 1/255, normalised with mean 0.5 and
std 0.5, and laid out channels first.

Resizing is done with PIL, one frame at a time, on purpose: it is what the reference pipeline does
(it rounds the resized frame back to uint8 before rescaling), and on CPU it is no slower than a batched
`F.interpolate(mode="bicubic", antialias=True)`, which would also differ from PIL by up to 4 grey levels
on some pixels. Everything after the resize (rescale, normalise, layout) is one vectorised tensor op.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature

ImageInput = Image.Image | np.ndarray | torch.Tensor | Sequence[Image.Image | np.ndarray | torch.Tensor]


def _as_frame(image: Any, name: str) -> Image.Image:
    """One HWC uint8 array / tensor or PIL image → an RGB PIL image (errors name `name`)."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name} must be a PIL image or a uint8 array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (H, W, 3) (channels last, RGB), got {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 (0..255), got dtype {image.dtype}")
    return Image.fromarray(np.ascontiguousarray(image))


def to_frames(images: ImageInput) -> list[Image.Image]:
    """Normalise the accepted inputs to a list of RGB PIL frames.

    Accepts a PIL image, an (H, W, 3) or (T, H, W, 3) uint8 array/tensor, or a sequence of PIL images
    and (H, W, 3) uint8 arrays.
    """
    if isinstance(images, Image.Image):
        return [_as_frame(images, "images")]
    if isinstance(images, (np.ndarray, torch.Tensor)):
        if images.ndim == 4:
            return [_as_frame(frame, f"images[{i}]") for i, frame in enumerate(images)]
        if images.ndim == 3:
            return [_as_frame(images, "images")]
        raise ValueError(
            f"images must be an (H, W, 3) image or a (T, H, W, 3) stack of frames, got shape {tuple(images.shape)}"
        )
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError("images is empty")
        return [_as_frame(image, f"images[{i}]") for i, image in enumerate(images)]
    raise ValueError(f"images must be a PIL image, an array or a list of them, got {type(images).__name__}")


class SigLipImageProcessor:
    """Resize → rescale → normalise → channels first, for SigLIP towers (LLaVA-NeXT's class name).

    Args:
        image_mean, image_std: per-channel normalisation.
        size: output (height, width); `image_size` (an int, square) overrides it.
        crop_size: kept for API compatibility (no cropping is done); defaults to `size`.
        resample: PIL resampling filter.
        rescale_factor: multiplies the uint8 values before normalising.
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        image_mean: Sequence[float] = (0.5, 0.5, 0.5),
        image_std: Sequence[float] = (0.5, 0.5, 0.5),
        size: tuple[int, int] = (384, 384),
        crop_size: dict[str, int] | None = None,
        resample: int = Image.BICUBIC,
        rescale_factor: float = 1 / 255,
        image_size: int | None = None,
    ) -> None:
        if image_size is not None:
            size = (image_size, image_size)
        if isinstance(size, dict):
            size = (size["height"], size["width"])
        height, width = (int(s) for s in size)
        if height < 1 or width < 1:
            raise ValueError(f"size must be positive, got {size}")
        if len(image_mean) != 3 or len(image_std) != 3:
            raise ValueError("image_mean and image_std must have 3 entries (RGB)")
        if any(s <= 0 for s in image_std):
            raise ValueError(f"image_std must be positive, got {tuple(image_std)}")
        self.image_mean = tuple(float(m) for m in image_mean)
        self.image_std = tuple(float(s) for s in image_std)
        self.size = {"height": height, "width": width}
        self.crop_size = dict(crop_size) if crop_size is not None else dict(self.size)
        self.resample = resample
        self.rescale_factor = float(rescale_factor)
        self.do_resize = True
        self.do_rescale = True
        self.do_normalize = True
        self.do_convert_rgb = True

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size={self.size}, image_mean={self.image_mean}, "
            f"image_std={self.image_std}, rescale_factor={self.rescale_factor})"
        )

    def resize(self, frames: list[Image.Image]) -> np.ndarray:
        """RGB frames → (T, H, W, 3) uint8 at `size`."""
        target = (self.size["width"], self.size["height"])  # PIL takes (width, height)
        return np.stack([np.asarray(frame.resize(target, resample=self.resample)) for frame in frames])

    def normalize(self, pixels: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) uint8 → (T, 3, H, W) float32 normalised."""
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).to(torch.float32) * self.rescale_factor
        mean = torch.tensor(self.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.image_std, dtype=torch.float32).view(1, 3, 1, 1)
        return ((x - mean) / std).contiguous()

    def preprocess(self, images: ImageInput, return_tensors: str | None = "pt", **_: Any) -> BatchFeature:
        """Images or frames → `BatchFeature({"pixel_values": (T, 3, H, W) float32})`.

        `return_tensors="pt"` gives a torch tensor; "np" or None a numpy array. Extra keyword arguments
        that transformers-style callers pass (e.g. `do_resize`) are accepted and ignored.
        """
        if return_tensors not in ("pt", "np", None):
            raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
        pixel_values = self.normalize(self.resize(to_frames(images)))
        if return_tensors != "pt":
            pixel_values = pixel_values.numpy()
        return BatchFeature(data={"pixel_values": pixel_values})

    __call__ = preprocess

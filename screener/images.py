"""Read still images (dataset crops, photos) as RGB uint8, whatever their mode or format."""
from __future__ import annotations

import numpy as np

from .errors import ImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def read_rgb(path) -> np.ndarray:
    """JPEG/PNG/..., grayscale, palette, CMYK or with alpha -> (H, W, 3) uint8 RGB.

    Pillow, not OpenCV: OpenCV decodes CMYK JPEGs with inverted colours on some builds and
    cannot report why a file failed. Raises ImageError with the reason.
    """
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode != "RGB":
                im = im.convert("RGB")
            return np.asarray(im, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image (unrecognised data)") from None
    except (OSError, ValueError, SyntaxError) as e:  # truncated/corrupt files
        raise ImageError(f"{path}: corrupt image ({e})") from None


def write_png(path, rgb: np.ndarray) -> None:
    """Lossless save (re-compressing a crop changes the artefacts a detector looks at)."""
    from PIL import Image
    Image.fromarray(rgb).save(path, format="PNG", compress_level=1)

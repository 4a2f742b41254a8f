"""The few images a scan keeps per video for the visual report (`html_report`).

While a video's crops are in memory (`verdict.aggregate`), we keep:
- the k faces scored most fake and the k least fake as small JPEG thumbnails (96 px), with
  their frame time and P(fake);
- in a video of several people, each person's most fake face as a thumbnail (up to
  MAX_PEOPLE), the report's strip of the people;
- the most fake face whole (256 px; of the person who decides the verdict, where one does): the report explains it with the model (Grad-CAM heat map,
  feature maps) when it is rendered, so the scan pays nothing for that. For a FAKE video it is
  kept lossless (WebP): MesoNet reacts to compression, so a JPEG's heat map would explain
  another score (docs/performance.md). Other videos keep a JPEG (quality 90), and the page
  shows both scores.

That is at most 2k + 1 + MAX_PEOPLE small images per video, however long the video: memory and the state
database do not grow with video length. The incremental scan stores them in the
state's `media` table (one row per file, written in the same transaction as its result), so
`screener report --html` rebuilds a report without rescanning.
"""
from __future__ import annotations

import base64
import io
import json
import struct
from dataclasses import dataclass, field

import numpy as np

K = 3              # thumbnails kept at each end (most fake, least fake)
MAX_PEOPLE = 8     # people shown in a video's strip of people
THUMB_PX = 96
THUMB_QUALITY = 75
KEY_QUALITY = 90   # the explained crop: high enough that its score barely moves
MAGIC = b"SCM1"    # media bytes in the state, format 1


@dataclass
class Thumb:
    frame_index: int
    face_index: int
    time_s: float
    p_fake: float
    jpeg: bytes = field(repr=False)  # JPEG; the key crop of a FAKE video: lossless WebP
    person: int | None = None

    @property
    def data_uri(self) -> str:
        return "data:image/jpeg;base64," + base64.b64encode(self.jpeg).decode("ascii")


@dataclass
class VideoMedia:
    most_fake: list[Thumb] = field(default_factory=list)    # highest P(fake) first
    least_fake: list[Thumb] = field(default_factory=list)   # lowest P(fake) first
    key_crop: Thumb | None = None                          # the most fake face, 256 px
    people: list[Thumb] = field(default_factory=list)       # each person's most fake face

    def to_bytes(self) -> bytes:
        """MAGIC, header length (4 bytes, little-endian), JSON header, then the JPEGs in the
        header's order: raw bytes, not base64 (a third smaller in the state)."""
        thumbs = self._all()
        header = json.dumps({"most_fake": len(self.most_fake), "key_crop": bool(self.key_crop),
                             "people": len(self.people),
                             "thumbs": [{k: v for k, v in vars(t).items() if k != "jpeg"}
                                        | {"bytes": len(t.jpeg)} for t in thumbs]}).encode()
        return MAGIC + struct.pack("<I", len(header)) + header + b"".join(t.jpeg for t in thumbs)

    @classmethod
    def from_bytes(cls, data: bytes) -> "VideoMedia":
        data = bytes(data)
        if data[:4] != MAGIC:
            raise ValueError("not screener media")
        (n,) = struct.unpack("<I", data[4:8])
        header = json.loads(data[8:8 + n])
        at, thumbs = 8 + n, []
        for d in header["thumbs"]:
            size = d.pop("bytes")
            thumbs.append(Thumb(**d, jpeg=data[at:at + size]))
            at += size
        n_people = header.get("people", 0)  # media kept before people were: none
        people = thumbs[len(thumbs) - n_people:] if n_people else []
        thumbs = thumbs[:len(thumbs) - n_people]
        key = thumbs.pop() if header["key_crop"] else None
        k = header["most_fake"]
        return cls(thumbs[:k], thumbs[k:], key, people)

    def _all(self) -> list[Thumb]:
        return (self.most_fake + self.least_fake + ([self.key_crop] if self.key_crop else [])
                + self.people)


def encode_jpeg(rgb: np.ndarray, size_px: int | None = None, quality: int = THUMB_QUALITY) -> bytes:
    from PIL import Image
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    if size_px is not None and img.size != (size_px, size_px):
        img = img.resize((size_px, size_px), Image.Resampling.BILINEAR, reducing_gap=2.0)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    from PIL import Image
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def encode_lossless(rgb: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, "WEBP", lossless=True,
                                                                    quality=50, method=2)
    return buf.getvalue()


def keep(crops, p_fake, k: int = K, lossless_key: bool = False,
         key_person: int | None = None) -> VideoMedia | None:
    """The thumbnails of one video's scored crops (`pipeline.FaceCrop`s, one P(fake) each);
    `lossless_key`: keep the most fake face exactly (the video is FAKE); `key_person`: the
    person whose most fake face is the key crop (the one who decides the verdict)."""
    p = np.asarray(p_fake, dtype=np.float64).reshape(-1)
    if len(p) == 0 or k <= 0 or any(getattr(c, "crop", None) is None for c in crops):
        return None  # nothing scored, or crops without pixels (tests, stubs)
    order = np.argsort(-p, kind="stable")       # most fake first; ties keep frame order
    top = [int(i) for i in order[:k]]
    rest = [int(i) for i in order[k:]][::-1]    # least fake first, never a face already shown
    bottom = rest[:k]

    def thumb(i: int, size_px: int | None, quality: int | None) -> Thumb:
        c = crops[i]
        data = encode_lossless(c.crop) if quality is None else encode_jpeg(c.crop, size_px,
                                                                             quality)
        return Thumb(int(c.frame_index), int(getattr(c, "face_index", 0)), float(c.time_s),
                     float(p[i]), data, getattr(c, "person", None))
    person = [getattr(crops[int(i)], "person", None) for i in order]
    firsts = {}  # each person's most fake face
    for i, who in zip(order, person):
        if who is not None and who not in firsts and len(firsts) < MAX_PEOPLE:
            firsts[who] = int(i)
    key = firsts.get(key_person, top[0])
    people = [thumb(firsts[who], THUMB_PX, THUMB_QUALITY) for who in sorted(firsts)]
    return VideoMedia([thumb(i, THUMB_PX, THUMB_QUALITY) for i in top],
                      [thumb(i, THUMB_PX, THUMB_QUALITY) for i in bottom],
                      thumb(key, None, None if lossless_key else KEY_QUALITY),
                      people if len(people) > 1 else [])

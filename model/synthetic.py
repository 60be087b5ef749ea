"""Procedural two-domain data with known ground-truth pairs, and drift knobs.

Domain A: one to three shapes (circles, squares, triangles) in flat colours from a small palette
on a plain light background. Domain B: the same kind of scene in the target style: a dark
outline around each shape, a bevel (light top-left rim, dark bottom-right rim), and a warm tone
curve. Every part of the style is a *local* function of the A image, so a convolutional
generator can learn it, and it is not a pure hue rotation, so it can be learned unpaired.

A scene is drawn once as an id map at 4x resolution; both styles are painted from that map and
box-filtered down, so `testB_gt/<name>` is exactly the B rendering of `testA/<name>`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SUPERSAMPLE = 4
SHAPES = ("circle", "square", "triangle")
# A's flat colours (RGB in [0, 1]); index 0 is unused (the background has its own colour).
PALETTE = np.array(
    [
        [0.0, 0.0, 0.0],
        [0.85, 0.20, 0.20],
        [0.20, 0.55, 0.85],
        [0.25, 0.70, 0.30],
        [0.95, 0.80, 0.20],
        [0.60, 0.30, 0.75],
        [0.15, 0.15, 0.20],
    ]
)
OUTLINE_RGB = np.array([0.16, 0.09, 0.06])
# The YIQ transform: a hue shift is a rotation of the (I, Q) chroma plane.
_RGB2YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = np.linalg.inv(_RGB2YIQ)


@dataclass(frozen=True)
class DriftKnobs:
    """Shifts of the input distribution, for drift tests. The defaults change nothing.

    brightness: added to every pixel (images in [0, 1]); contrast: factor around the image mean;
    noise: std of added gaussian noise; scale: zoom about the centre (>1 zooms in, <1 shrinks
    and pads with the border colour); hue: rotation of the chroma plane, in turns.
    """

    brightness: float = 0.0
    contrast: float = 1.0
    noise: float = 0.0
    scale: float = 1.0
    hue: float = 0.0

    def is_identity(self) -> bool:
        return self == DriftKnobs()

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def apply_knobs(image: np.ndarray, knobs: DriftKnobs, rng: np.random.Generator) -> np.ndarray:
    """Apply `knobs` to an HxWx3 float image in [0, 1]; returns a new float32 array in [0, 1]."""
    out = np.asarray(image, dtype=np.float32)
    if knobs.scale != 1.0:
        out = _zoom(out, knobs.scale)
    if knobs.hue != 0.0:
        out = _rotate_hue(out, knobs.hue)
    if knobs.contrast != 1.0:
        mean = out.mean(axis=(0, 1), keepdims=True)
        out = (out - mean) * knobs.contrast + mean
    if knobs.brightness != 0.0:
        out = out + knobs.brightness
    if knobs.noise > 0.0:
        out = out + rng.normal(0.0, knobs.noise, size=out.shape).astype(np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _zoom(image: np.ndarray, scale: float) -> np.ndarray:
    h, w = image.shape[:2]
    pil = to_pil(image)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = pil.resize((new_w, new_h), Image.Resampling.BILINEAR)
    if scale >= 1.0:
        left, top = (new_w - w) // 2, (new_h - h) // 2
        return from_pil(resized.crop((left, top, left + w, top + h)))
    # Pad with the border's median colour so that shrinking does not add a black frame.
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    fill = tuple(int(v * 255 + 0.5) for v in np.median(border, axis=0))
    canvas = Image.new("RGB", (w, h), fill)
    canvas.paste(resized, ((w - new_w) // 2, (h - new_h) // 2))
    return from_pil(canvas)


def _rotate_hue(image: np.ndarray, turns: float) -> np.ndarray:
    angle = 2.0 * np.pi * turns
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    matrix = _YIQ2RGB @ rot @ _RGB2YIQ
    return (image @ matrix.T).astype(np.float32)


def to_pil(image: np.ndarray) -> Image.Image:
    """HxWx3 float [0, 1] -> RGB PIL image."""
    return Image.fromarray((np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), "RGB")


def from_pil(image: Image.Image) -> np.ndarray:
    """PIL image -> HxWx3 float32 in [0, 1] (converted to RGB)."""
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


# --- scenes and their two renderings ---------------------------------------------------


@dataclass(frozen=True)
class Shape:
    kind: str
    cx: float  # centre and radius in units of the image side
    cy: float
    r: float
    colour: int  # index into PALETTE
    angle: float  # radians; squares and triangles only


@dataclass(frozen=True)
class Scene:
    background: tuple[float, float, float]
    shapes: tuple[Shape, ...]


def random_scene(rng: np.random.Generator) -> Scene:
    base = 0.86 + rng.uniform(-0.06, 0.06)
    tint = rng.uniform(-0.03, 0.03, size=3)
    background = tuple(float(v) for v in np.clip(base + tint, 0.0, 1.0))
    shapes = tuple(
        Shape(
            kind=SHAPES[int(rng.integers(len(SHAPES)))],
            cx=float(rng.uniform(0.22, 0.78)),
            cy=float(rng.uniform(0.22, 0.78)),
            r=float(rng.uniform(0.13, 0.26)),
            colour=int(rng.integers(1, len(PALETTE))),
            angle=float(rng.uniform(0.0, 2.0 * np.pi)),
        )
        for _ in range(int(rng.integers(1, 4)))
    )
    return Scene(background=background, shapes=shapes)  # type: ignore[arg-type]


def _id_map(scene: Scene, side: int) -> np.ndarray:
    """Which shape (1-based, later shapes on top) covers each pixel; 0 is background."""
    canvas = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(canvas)
    for k, shape in enumerate(scene.shapes, start=1):
        cx, cy, r = shape.cx * side, shape.cy * side, shape.r * side
        if shape.kind == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=k)
        else:
            corners = 4 if shape.kind == "square" else 3
            angles = shape.angle + 2.0 * np.pi * np.arange(corners) / corners
            points = [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in angles]
            draw.polygon(points, fill=k)
    return np.asarray(canvas, dtype=np.int16)


def _colours(scene: Scene) -> np.ndarray:
    """Per-id colour table: row 0 the background, row k the k-th shape's palette colour."""
    rows = [np.array(scene.background)] + [PALETTE[s.colour] for s in scene.shapes]
    return np.stack(rows)


def _shifted(ids: np.ndarray, dy: int, dx: int) -> np.ndarray:
    padded = np.pad(ids, max(abs(dy), abs(dx)), mode="edge")
    p = max(abs(dy), abs(dx))
    h, w = ids.shape
    return padded[p + dy : p + dy + h, p + dx : p + dx + w]


def warm_tone(rgb: np.ndarray) -> np.ndarray:
    """The B domain's tone curve: warmer, slightly darker, compressed blues."""
    out = np.empty_like(rgb)
    out[..., 0] = rgb[..., 0] ** 0.75
    out[..., 1] = 0.92 * rgb[..., 1] ** 1.05
    out[..., 2] = 0.70 * rgb[..., 2] ** 1.3
    return out


def render(scene: Scene, style: str, image_size: int) -> np.ndarray:
    """Render `scene` as HxWx3 float32 in [0, 1]; style "A" (flat) or "B" (target style)."""
    side = image_size * SUPERSAMPLE
    ids = _id_map(scene, side)
    table = _colours(scene)
    if style == "A":
        big = table[ids]
    elif style == "B":
        big = _style_b(ids, warm_tone(table), side)
    else:
        raise ValueError(f"unknown style {style!r}")
    return _downsample(big, image_size)


def _style_b(ids: np.ndarray, table: np.ndarray, side: int) -> np.ndarray:
    big = table[ids]
    rim = max(1, round(side / 32 * 1.5))  # the bevel's width: ~1.5 px at 32 px
    inside = ids > 0
    lit = inside & (_shifted(ids, -rim, -rim) != ids)
    shade = inside & (_shifted(ids, rim, rim) != ids)
    big[lit] = big[lit] * 0.55 + 0.45
    big[shade] = big[shade] * 0.55
    width = max(1, round(side / 32))  # the outline: ~1 px at 32 px, on both sides of an edge
    edge = np.zeros_like(inside)
    for dy, dx in ((0, width), (0, -width), (width, 0), (-width, 0)):
        edge |= _shifted(ids, dy, dx) != ids
    big[edge] = OUTLINE_RGB
    return big


def _downsample(big: np.ndarray, image_size: int) -> np.ndarray:
    s = SUPERSAMPLE
    small = big.reshape(image_size, s, image_size, s, 3).mean(axis=(1, 3))
    return np.clip(small, 0.0, 1.0).astype(np.float32)


def make_synthetic(
    root: str | Path,
    n_train: int = 200,
    n_test: int = 256,  # the gate compares models on 256 held-out inputs
    image_size: int = 32,
    seed: int = 0,
    knobs: DriftKnobs = DriftKnobs(),  # frozen, so sharing the default is safe
) -> Path:
    """Write a CycleGAN-layout data set with ground truth under `root` and return its path.

    trainA/, trainB/ and testB/ hold independent scenes (unpaired); testA/ and testB_gt/ hold
    the same scenes in both styles, under the same names. The knobs shift domain A only
    (trainA/ and testA/); testB_gt/ stays the translation of the undrifted scene. The output is
    a function of the arguments alone.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    knob_rng = np.random.default_rng([seed, 1])
    for folder in ("trainA", "trainB", "testA", "testB", "testB_gt"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for split, count in (("train", n_train), ("test", n_test)):
        for i in range(count):
            name = f"{split}_{i:05d}.png"
            scene_a, scene_b = random_scene(rng), random_scene(rng)
            image_a = render(scene_a, "A", image_size)
            if not knobs.is_identity():
                image_a = apply_knobs(image_a, knobs, knob_rng)
            to_pil(image_a).save(root / f"{split}A" / name)
            to_pil(render(scene_b, "B", image_size)).save(root / f"{split}B" / name)
            if split == "test":
                to_pil(render(scene_a, "B", image_size)).save(root / "testB_gt" / name)
    return root

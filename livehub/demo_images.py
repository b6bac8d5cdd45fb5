"""Pictures for the demo's products, drawn with Pillow at seed time (no image files in the repository) and
stored through the same code as a seller's upload (livehub/shop/images.py), so the demo shows real
srcset/WebP/cache behaviour. Idempotent: a demo product that has pictures already gets none."""

import asyncio
import io
import logging

import asyncpg
from PIL import Image, ImageDraw, ImageFont

from livehub import demo
from livehub.mediastore import MediaStore
from livehub.shop import images

log = logging.getLogger(__name__)

SIZE = 900
# Per demo product (by title): two colours for its gradient, one picture per (colours) pair.
PALETTES = {
    "Aurora Runner sneakers": [((255, 94, 98), (255, 195, 113)), ((58, 123, 213), (0, 210, 255))],
    "Harbor rain jacket": [((20, 30, 72), (36, 123, 160)), ((204, 149, 68), (245, 215, 110))],
    "Glow serum 30 ml": [((255, 175, 189), (255, 195, 160)), ((255, 236, 210), (252, 182, 159))],
    "Pulse wireless earbuds": [((15, 15, 20), (80, 80, 95)), ((230, 230, 235), (190, 195, 210))],
    "LiveHub gift card 25.00": [((224, 36, 94), (255, 209, 220))],
}


def draw(title: str, top: tuple[int, int, int], bottom: tuple[int, int, int], shape: int) -> bytes:
    """A square PNG: a vertical gradient, a shape, and the product's name."""
    image = Image.new("RGB", (SIZE, SIZE))
    pen = ImageDraw.Draw(image)
    for y in range(SIZE):
        t = y / (SIZE - 1)
        pen.line([(0, y), (SIZE, y)], fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    box = (SIZE * 0.22, SIZE * 0.16, SIZE * 0.78, SIZE * 0.72)
    if shape % 2 == 0:
        pen.ellipse(box, fill=(255, 255, 255, 0), outline=(255, 255, 255), width=14)
    else:
        pen.rounded_rectangle(box, radius=60, outline=(255, 255, 255), width=14)
    font = ImageFont.load_default(size=58)
    words, lines = title.split(), [""]
    for word in words:  # wrap to the picture's width
        trial = f"{lines[-1]} {word}".strip()
        if pen.textlength(trial, font=font) > SIZE * 0.86 and lines[-1]:
            lines.append(word)
        else:
            lines[-1] = trial
    y = SIZE * 0.76
    for line in lines[:2]:
        pen.text(
            (SIZE / 2, y), line, font=font, fill=(255, 255, 255), anchor="ma", stroke_width=3, stroke_fill=(0, 0, 0)
        )
        y += 70
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


async def seed_images(pool: asyncpg.Pool, store: MediaStore, *, max_pixels: int, max_images: int) -> int:
    """Pictures for every demo product without any; returns how many were stored."""
    seller_user = await pool.fetchval("SELECT id FROM users WHERE email = $1", demo.SELLER)
    if seller_user is None:
        return 0
    stored = 0
    for product in demo.PRODUCTS:
        product_id = await pool.fetchval(
            """SELECT p.id FROM products p JOIN variants v ON v.product_id = p.id
                WHERE v.sku = $1 AND NOT EXISTS (SELECT 1 FROM product_images i WHERE i.product_id = p.id)""",
            product["variants"][0]["sku"],
        )
        if product_id is None:
            continue
        for n, (top, bottom) in enumerate(PALETTES.get(product["title"], [((90, 90, 90), (30, 30, 30))])):
            data = await asyncio.to_thread(draw, product["title"], top, bottom, n)
            await images.add_image(
                pool, store, seller_user, product_id, data, max_pixels=max_pixels, max_images=max_images
            )
            stored += 1
    if stored:
        log.info("drew %d demo product pictures", stored)
    return stored

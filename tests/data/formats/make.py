"""Writes the small image files of the format reader tests (`data::folder` unit tests) with
Pillow, an encoder independent of the `image` crate that selfsup decodes them with:
python3 tests/data/formats/make.py (from the repository root; Pillow 13 made the checked-in
files). The 12 x 10 pattern has pixel (x, y) = (20x, 25y, 10(x + y)) mod 256."""
import os
from PIL import Image

os.chdir(os.path.dirname(os.path.abspath(__file__)))
W, H = 12, 10


def rgb(x, y):
    return ((x * 20) % 256, (y * 25) % 256, ((x + y) * 10) % 256)


im = Image.new("RGB", (W, H))
for y in range(H):
    for x in range(W):
        im.putpixel((x, y), rgb(x, y))
for ext in ["png", "ppm", "bmp", "tiff"]:
    im.save("pattern." + ext)
im.save("pattern.webp", lossless=True)
quantized = im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
quantized.save("pattern.gif")  # palette, all 120 colours kept exactly
quantized.save("palette.png")
im.convert("L").save("pattern.pgm")
bits = Image.new("1", (W, H))
for y in range(H):
    for x in range(W):
        bits.putpixel((x, y), 255 if (x + y) % 2 else 0)
bits.save("pattern.pbm")
g16 = Image.new("I;16", (W, H))
for y in range(H):
    for x in range(W):
        g16.putpixel((x, y), (x * 20 % 256) * 257)
g16.save("grey16.png")
# Stored 16 wide x 8 high, left half red, right half blue; EXIF orientation 6 says: shown
# turned 90 degrees clockwise (8 wide x 16 high, red on top).
j = Image.new("RGB", (16, 8))
for y in range(8):
    for x in range(16):
        j.putpixel((x, y), (255, 0, 0) if x < 8 else (0, 0, 255))
exif = Image.Exif()
exif[0x0112] = 6
j.save("oriented.jpg", quality=95, exif=exif.tobytes())
j.save("plain.jpg", quality=95)

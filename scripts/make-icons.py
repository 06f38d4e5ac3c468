#!/usr/bin/env python3
"""Draws the CP-IS Field icons (NHS-blue tile, white shield, blue "CP") into icons/ with the standard library only.

Run from the repository root: python3 scripts/make-icons.py. The outputs are committed; rerun after a design change.
"""
import math
import os
import struct
import zlib

BLUE = (0, 94, 184)  # NHS blue #005EB8
WHITE = (255, 255, 255)

# 5x7 glyphs for the two letters on the shield.
GLYPHS = {
    "C": ["01111", "10000", "10000", "10000", "10000", "10000", "01111"],
    "P": ["11110", "10001", "10001", "11110", "10000", "10000", "10000"],
}


def inside_tile(x, y):
    """Rounded square covering the canvas (coordinates 0..1)."""
    r = 0.18
    cx = min(max(x, r), 1 - r)
    cy = min(max(y, r), 1 - r)
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def inside_shield(x, y):
    """A heraldic shield: straight top and sides, curving to a point at the bottom."""
    left, right, top, mid, bottom = 0.2, 0.8, 0.14, 0.5, 0.9
    if y < top or y > bottom:
        return False
    if y <= mid:
        return left <= x <= right
    # Below the middle each side curves in to meet at a point (cosine: convex sides, sharp tip).
    t = (y - mid) / (bottom - mid)
    half = (right - left) / 2 * math.cos(t * math.pi / 2)
    return abs(x - 0.5) <= half


def inside_letters(x, y):
    """'CP' in 5x7 cells, centred in the upper part of the shield."""
    cell = 0.042
    width = (5 + 1 + 5) * cell
    x0, y0 = 0.5 - width / 2, 0.27
    col = int((x - x0) // cell)
    row = int((y - y0) // cell)
    if x < x0 or y < y0 or row >= 7 or col >= 11 or col == 5:
        return False
    glyph = GLYPHS["C"] if col < 5 else GLYPHS["P"]
    return glyph[row][col if col < 5 else col - 6] == "1"


def pixel(x, y):
    """RGBA of a point: transparent outside the tile."""
    if not inside_tile(x, y):
        return None
    if inside_shield(x, y):
        return BLUE if inside_letters(x, y) else WHITE
    return BLUE


def render(size, samples=4):
    rows = []
    for py in range(size):
        row = bytearray([0])  # PNG filter type 0 for each scanline
        for px in range(size):
            acc = [0, 0, 0, 0]
            for sy in range(samples):
                for sx in range(samples):
                    c = pixel((px + (sx + 0.5) / samples) / size, (py + (sy + 0.5) / samples) / size)
                    if c is not None:
                        acc[0] += c[0]
                        acc[1] += c[1]
                        acc[2] += c[2]
                        acc[3] += 255
            n = samples * samples
            covered = acc[3] // 255
            if covered:
                row += bytes([acc[0] // covered, acc[1] // covered, acc[2] // covered, acc[3] // n])
            else:
                row += bytes([0, 0, 0, 0])
        rows.append(bytes(row))
    return b"".join(rows)


def png(size):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(render(size), 9)) + chunk(b"IEND", b""))


def ico(pngs):
    """An ICO holding PNG images (supported since Windows Vista)."""
    out = struct.pack("<HHH", 0, 1, len(pngs))
    offset = 6 + 16 * len(pngs)
    entries, blobs = b"", b""
    for size, data in pngs:
        dim = 0 if size >= 256 else size
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(data), offset)
        blobs += data
        offset += len(data)
    return out + entries + blobs


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "icons")
    os.makedirs(root, exist_ok=True)
    made = {}
    for name, size in [("32x32.png", 32), ("64x64.png", 64), ("128x128.png", 128),
                       ("128x128@2x.png", 256), ("icon.png", 512)]:
        made[size] = png(size)
        with open(os.path.join(root, name), "wb") as f:
            f.write(made[size])
    with open(os.path.join(root, "icon.ico"), "wb") as f:
        f.write(ico([(s, made[s]) for s in (32, 64, 128, 256)]))
    print("icons written to", os.path.normpath(root))


if __name__ == "__main__":
    main()

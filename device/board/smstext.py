# Text reversal for the default app, by user-perceived characters. Kept out
# of the hot-path modules so an app that does not reverse never loads it.

# Code points that never start a character as the user sees it (a grapheme):
# combining marks, zero-width joiners, variation selectors, emoji skin tones,
# tag characters. Pairs of (first, last), flattened. A pragmatic subset of
# Unicode's Extend class, small enough for the board.
_EXTEND = (
    0x0300, 0x036F, 0x0483, 0x0489, 0x0591, 0x05BD, 0x0610, 0x061A,
    0x064B, 0x065F, 0x0900, 0x0903, 0x093A, 0x094F, 0x0E31, 0x0E31,
    0x0E34, 0x0E3A, 0x0E47, 0x0E4E, 0x1AB0, 0x1AFF, 0x1DC0, 0x1DFF,
    0x200C, 0x200D, 0x20D0, 0x20FF, 0xFE00, 0xFE0F, 0xFE20, 0xFE2F,
    0x1F3FB, 0x1F3FF, 0xE0020, 0xE007F, 0xE0100, 0xE01EF,
)  # fmt: skip


def reverse(text):
    """Reverse text by user-perceived characters: emoji sequences, flags and accents stay whole.

    MicroPython's str has no [::-1] and indexes UTF-8 strings in O(n), so this
    walks the UTF-8 bytes once and copies each cluster into one preallocated buffer.
    """
    src = text.encode()
    n = len(src)
    out = bytearray(n)
    start = 0  # start of the current cluster
    i = 0
    prev = 0  # previous code point
    ri = 0  # regional indicators in a row (flags are pairs)
    while i < n:
        b = src[i]
        if b < 0x80:
            cp, w = b, 1
        elif b < 0xE0:
            cp, w = ((b & 0x1F) << 6) | (src[i + 1] & 0x3F), 2
        elif b < 0xF0:
            cp, w = ((b & 0x0F) << 12) | ((src[i + 1] & 0x3F) << 6) | (src[i + 2] & 0x3F), 3
        else:
            cp = ((b & 0x07) << 18) | ((src[i + 1] & 0x3F) << 12)
            cp |= ((src[i + 2] & 0x3F) << 6) | (src[i + 3] & 0x3F)
            w = 4
        isri = 0x1F1E6 <= cp <= 0x1F1FF
        joins = i > 0 and (prev == 0x200D or (prev == 13 and cp == 10) or (isri and ri & 1))
        if not joins and cp >= 0x300:
            k = 0
            while k < len(_EXTEND) and cp >= _EXTEND[k]:
                if cp <= _EXTEND[k + 1]:
                    joins = i > 0
                    break
                k += 2
        if not joins and i > start:
            # copy the finished cluster src[start:i] to its mirrored place,
            # byte by byte: no slice objects
            j = n - i
            while start < i:
                out[j] = src[start]
                start += 1
                j += 1
        ri = ri + 1 if isri else 0
        prev = cp
        i += w
    j = 0
    while start < n:
        out[j] = src[start]
        start += 1
        j += 1
    return str(out, "utf-8")

"""Text for benchmark messages that compresses as mail does.

A run of one repeated letter compresses a thousandfold, which would flatter
a store that compresses bodies. This text is English words drawn with
Zipf's law (a word's share falls as 1/rank, as in real prose) from a fixed
seed, in lines of at most 72 characters: Zstandard level 1 makes 2 KB of it
about 2.2 times smaller and 100 KB about 2.8 times, near what plain-text
mail gives. The same size always gives the same text.
"""

from __future__ import annotations

import random

_WORDS = (
    "the of and to a in is you that it he was for on are as with his they I at be "
    "this have from or one had by word but not what all were we when your can said "
    "there use an each which she do how their if will up other about out many then "
    "them these so some her would make like him into time has look two more write "
    "go see number no way could people my than first water been call who oil its "
    "now find long down day did get come made may part over new sound take only "
    "little work know place year live me back give most very after thing our just "
    "name good sentence man think say great where help through much before line "
    "right too mean old any same tell boy follow came want show also around form "
    "three small set put end does another well large must big even such because "
    "turn here why ask went men read need land different home us move try kind "
    "hand picture again change off play spell air away animal house point page "
    "letter mother answer found study still learn should America world meeting "
    "Monday report budget invoice attached please regards thanks tomorrow"
).split()
_WEIGHTS = [1 / rank for rank in range(1, len(_WORDS) + 1)]
LINE = 72


def mail_text(size: int, seed: int = 1) -> str:
    """`size` characters of text in lines of at most LINE characters ("\\n" ends)."""
    rng = random.Random(seed)
    lines: list[str] = []
    total = 0
    while total < size:
        words = rng.choices(_WORDS, _WEIGHTS, k=40)
        line, length = [], 0
        for word in words:
            if length + len(word) + 1 > LINE:
                break
            line.append(word)
            length += len(word) + 1
        text = " ".join(line).capitalize() + ".\n"
        lines.append(text)
        total += len(text)
    return "".join(lines)[:size]

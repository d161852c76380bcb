"""Relinking replaces layerenv's marked block in each activation script: the blocks are found without a
regular expression (fast), and exactly as the pattern that defines them would find them."""

from __future__ import annotations

import random
import re

from layerenv.project.activation import without_blocks

# the definition: each block with the spaces and tabs before its opening marker
BLOCK = re.compile(r"[ \t]*# >>> layerenv >>>\n.*?# <<< layerenv <<<\n", re.S)
PIECES = ("deactivate () {\n", "  # >>> layerenv >>>\n", "UV_CONSTRAINT=x\n", "# <<< layerenv <<<\n", "\t", " ",
          "# >>> layerenv >>>\n", "# <<< layerenv <<<", "\n", "# >>> layerenv >>>", "}\n")


def test_blocks_are_removed_as_the_pattern_finds_them() -> None:
    generator = random.Random(19)
    for _ in range(5000):
        text = "".join(generator.choice(PIECES) for _ in range(generator.randint(0, 16)))
        assert without_blocks(text) == BLOCK.sub("", text), repr(text)


def test_a_script_keeps_everything_but_its_block() -> None:
    script = "deactivate () {\n    # >>> layerenv >>>\n    unset X\n    # <<< layerenv <<<\n    true\n}\n"
    assert without_blocks(script) == "deactivate () {\n    true\n}\n"
    assert without_blocks("no block here\n") == "no block here\n"

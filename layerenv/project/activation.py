"""Activation scripts that export ``UV_CONSTRAINT`` on activate and restore it on deactivate.

virtualenv or uv writes the scripts; layerenv adds one marked block to each (bash/zsh, fish, csh,
PowerShell) and replaces its own block when linking again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

from layerenv.project.run_env import constraint_reference
from layerenv.store.atomic import NOW, Writer

_OPEN, _CLOSE = "# >>> layerenv >>>\n", "# <<< layerenv <<<\n"
_V, _OLD, _ON = "UV_CONSTRAINT", "_LAYERENV_OLD_UV_CONSTRAINT", "_LAYERENV_UV_ACTIVE"
# Per activation script: (where deactivate's body starts, code there restoring UV_CONSTRAINT,
# code appended to export it); "{q}" is the constraints path quoted for that shell.
_SHELLS: dict[str, tuple[str, str, str]] = {
    "activate": (
        r"^deactivate\s*\(\)\s*\{[^\n]*\n",
        f'if [ -n "${{{_ON}:-}}" ] ; then\n    if [ -n "${{{_OLD}+x}}" ] ; then\n'
        f'        {_V}="${_OLD}"\n        export {_V}\n        unset {_OLD}\n'
        f"    else\n        unset {_V}\n    fi\n    unset {_ON}\nfi\n",
        f'if [ -n "${{{_V}+x}}" ] ; then\n    {_OLD}="${_V}"\nfi\n{_ON}=1\n'
        f'{_V}={{q}}"${{{_V}:+ ${_V}}}"\nexport {_V}\n',
    ),
    "activate.fish": (
        r"^function deactivate\b[^\n]*\n",
        f"if set -q {_ON}\n    if set -q {_OLD}\n        set -gx {_V} ${_OLD}\n        set -e {_OLD}\n"
        f"    else\n        set -e {_V}\n    end\n    set -e {_ON}\nend\n",
        f"if set -q {_V}\n    set -g {_OLD} ${_V}\n    set -gx {_V} (string join ' ' {{q}} ${_V})\n"
        f"else\n    set -gx {_V} {{q}}\nend\nset -g {_ON} 1\n",
    ),
    "deactivate.csh": (
        r"\A",
        f'if ($?{_ON}) then\n    if ($?{_OLD}) then\n        setenv {_V} "${_OLD}:q"\n        unset {_OLD}\n'
        f"    else\n        unsetenv {_V}\n    endif\n    unset {_ON}\nendif\n",
        "",
    ),
    "activate.csh": (
        "",
        "",
        f'if ($?{_V}) then\n    set {_OLD}="${_V}:q"\n    setenv {_V} {{q}}" ${_V}:q"\nelse\n'
        f"    setenv {_V} {{q}}\nendif\nset {_ON}=1\n",
    ),
    "activate.ps1": (
        r"^function global:deactivate\b[^\n]*\{[ \t]*\n",
        f"if (Test-Path variable:{_ON}) {{\n    if (Test-Path variable:{_OLD}) {{\n"
        f"        $env:{_V} = $global:{_OLD}\n        Remove-Variable -Name {_OLD} -Scope Global\n"
        f"    }} else {{\n        Remove-Item env:{_V} -ErrorAction SilentlyContinue\n    }}\n"
        f"    Remove-Variable -Name {_ON} -Scope Global\n}}\n",
        f"if (Test-Path env:{_V}) {{\n    $global:{_OLD} = $env:{_V}\n"
        f"    $env:{_V} = {{q}} + ' ' + $env:{_V}\n"
        f"}} else {{\n    $env:{_V} = {{q}}\n}}\n$global:{_ON} = $true\n",
    ),
}
_QUOTE: dict[str, Callable[[str], str]] = {
    "activate": lambda s: "'" + s.replace("'", "'\\''") + "'",
    "activate.fish": lambda s: "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'",
    "activate.csh": lambda s: "'" + s.replace("'", "'\\''").replace("!", "\\!") + "'",
    "activate.ps1": lambda s: "'" + s.replace("'", "''") + "'",
}


def without_blocks(text: str) -> str:
    """``text`` without layerenv's marked blocks (each with the spaces and tabs before its first marker).
    Found with ``str.find``: a regular expression starting with ``[ \t]*`` tries every position of a
    script of several KB, and a relink patches six scripts a project."""
    kept: list[str] = []
    position = 0
    while (start := text.find(_OPEN, position)) >= 0 and (end := text.find(_CLOSE, start + len(_OPEN))) >= 0:
        cut = start
        while cut > position and text[cut - 1] in " \t":
            cut -= 1
        kept.append(text[position:cut])
        position = end + len(_CLOSE)
    kept.append(text[position:])
    return "".join(kept)


def _block(code: str, indent: str) -> str:
    lines = ["# >>> layerenv >>>", *code.splitlines(), "# <<< layerenv <<<"]
    return "".join(f"{indent}{line}\n" for line in lines)


def patch_activation_scripts(scripts: Iterable[Path], constraints: Path, *, writer: Writer = NOW) -> None:
    """Export ``UV_CONSTRAINT`` (ours first) on activation, restore the previous value on deactivate.

    ``scripts``: the venv's activation scripts (``VenvLayout.activation_scripts``); those of a shell
    not known here (cmd's ``activate.bat``, nushell) are left alone, and so is a script whose deactivate
    cannot be found, or csh without ``deactivate.csh`` (uv's and the stdlib's venvs), whose deactivate is a
    one-line alias.
    """
    for path in scripts:
        name = path.name if path.name in _SHELLS else path.name.lower()  # the stdlib's Activate.ps1
        if name not in _SHELLS or (name == "activate.csh" and not path.with_name("deactivate.csh").is_file()):
            continue
        anchor, restore, export = _SHELLS[name]
        original = path.read_text(encoding="utf-8", errors="surrogateescape")  # see write_text
        text = without_blocks(original)
        if anchor:
            match = re.search(anchor, text, re.M)
            if match is None:
                continue
            cut = match.end()
            text = text[:cut] + _block(restore, "    " if cut else "") + text[cut:]
        if export:
            code = _block(export.replace("{q}", _QUOTE[name](constraint_reference(str(constraints)))), "")
            sig = text.find("# SIG # Begin signature block")
            text = text + code if sig < 0 else text[:sig] + code + text[sig:]
        if text != original:  # a relink onto another base leaves them as they were: no second read
            writer.write_text(path, text, mode=path.stat().st_mode & 0o777, durable=False)

"""Whom a store path must belong to: the trust model of README "Trust model (shared stores)".

Everything in a store ends up running at interpreter start in every project layered on it, so a
path of the store (its root, ``bases/``, a base, the registry, a node record, ...) is trusted only
when nobody but the caller, root or a group the user chose to trust could have changed it:

- its owner is the caller or root, or its group is a trusted group (only root, or an owner who is
  a member, can give a file that group, so such an owner is one of the team);
- it is not writable by others, whatever the group setting;
- it is not writable by its group, unless that group is trusted.

A symlink's own mode means nothing; its owner is checked and then what it points to. The checks are
``lstat``/``stat`` calls on the few paths a command uses, never a walk of a base's tree (that is
``layerenv verify``'s job).
"""

from __future__ import annotations

import os
import stat
import sys
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from layerenv.errors import BadInput, OperationFailed

TRUSTED_GROUP_ENV = "LAYERENV_TRUSTED_GROUP"


class Untrusted(BadInput):
    """A store path that someone other than the caller, root or a trusted group could change."""


class NotUsable(OperationFailed):
    """A base (or node record) that is skipped: it cannot be read, or it is not trusted."""

    def __init__(self, where: Path | str, path: Path | str, found: str) -> None:
        super().__init__(f"{where}: {path} {found}")  # ``where``: the file a caller reports (a manifest)
        self.found = found
        self.advice = advice(found, path)

    @property
    def untrusted(self) -> bool:
        return not self.found.startswith("cannot be read")


@dataclass(frozen=True)
class Trust:
    """Who the caller trusts: itself, root and ``trusted_gids``. ``caller_uid`` None: no owners here (Windows)."""

    caller_uid: int | None
    trusted_gids: frozenset[int] = field(default=frozenset())

    @classmethod
    def for_caller(cls, group: str = "", source: str = TRUSTED_GROUP_ENV) -> Trust:
        """The calling user's trust, with ``group`` (a name or a gid, empty: none) as its team's group."""
        getuid = getattr(os, "getuid", None)
        if getuid is None:
            return cls(None)
        return cls(getuid(), frozenset({group_id(group, source)}) if group.strip() else frozenset())


def group_id(group: str, source: str) -> int:
    """The gid of ``group`` (a name or a number), or one line naming the setting."""
    text = group.strip()
    if text.isdigit():
        return int(text)
    if sys.platform != "win32":  # no groups there (and no owners: Trust.for_caller never asks)
        import grp

        with suppress(KeyError):
            return grp.getgrnam(text).gr_gid
    raise BadInput(f"{source}={group!r} is not a group on this machine; name an existing group or a gid")


def group_name(gid: int) -> str:
    if sys.platform != "win32":
        import grp

        with suppress(KeyError):
            return grp.getgrgid(gid).gr_name
    return str(gid)


def problem(info: os.stat_result, trust: Trust) -> str | None:
    """Why a path with ``info`` (from ``lstat``) is not trusted, or None: the rule of this module, pure."""
    if trust.caller_uid is None:
        return None
    mode = info.st_mode
    group_trusted = info.st_gid in trust.trusted_gids
    facts = f"(owner uid {info.st_uid}, mode {stat.S_IMODE(mode):04o})"
    if info.st_uid not in (trust.caller_uid, 0) and not group_trusted:
        return f"is owned by uid {info.st_uid}, not by you (uid {trust.caller_uid}) or root {facts}"
    if stat.S_ISLNK(mode):
        return None  # a link's mode is always 0777 and means nothing: its target is checked
    if mode & stat.S_IWOTH:
        return f"is writable by others {facts}"
    if mode & stat.S_IWGRP and not group_trusted:
        return f"is writable by group {group_name(info.st_gid)} {facts}"
    return None


def path_problem(path: Path | str, trust: Trust) -> str | None:
    """:func:`problem` of ``path`` itself and, for a symlink, of what it points to; None when trusted.

    A path that does not exist has nothing to trust yet (layerenv creates it with its own modes).
    """
    if trust.caller_uid is None:
        return None
    try:
        info = Path(path).lstat()
        found = problem(info, trust)
        if found is None and stat.S_ISLNK(info.st_mode):
            found = problem(Path(path).stat(), trust)
    except FileNotFoundError:
        return None
    except OSError as error:
        return f"cannot be read ({error.strerror})"
    return found


def advice(found: str, path: Path | str) -> str:
    """What to do about ``found`` at ``path``: the second half of the refusal line."""
    if "writable by others" in found:
        return f"fix: chmod o-w {path}"
    if "writable by group" in found:
        return (f"fix: chmod g-w {path}, or {TRUSTED_GROUP_ENV}=<group> (or store.trusted_group in the user "
                "config) if this team store is meant to be shared")
    if "owned by" in found:
        return (f"use a store of your own (LAYERENV_HOME), or {TRUSTED_GROUP_ENV}=<its group> (or "
                "store.trusted_group in the user config) if this is a team store you trust")
    return "fix its permissions, or use a store of your own (LAYERENV_HOME)"


def refusal(path: Path | str, found: str) -> Untrusted:
    if found.startswith("cannot be read"):
        return Untrusted(f"{path} {found}; {advice(found, path)}")
    return Untrusted(f"{path} {found}: it could change what every project on this store runs; {advice(found, path)}")


def check(paths: tuple[Path | str, ...] | list[Path | str], trust: Trust) -> None:
    """Raise :class:`Untrusted` for the first of ``paths`` that is not trusted."""
    for path in paths:
        found = path_problem(path, trust)
        if found is not None:
            raise refusal(path, found)

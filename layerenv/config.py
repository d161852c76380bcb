"""Settings from flags, environment, config files and defaults, each remembering its source.

Strongest first: command-line flags, environment variables, ``LAYERENV_CONFIG`` (a file), the
project's ``layerenv.toml``, the ``[tool.layerenv]`` table of its ``pyproject.toml``, the user's
``layerenv.toml`` (platformdirs config dir), then built-in defaults.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from layerenv.config_paths import project_root, user_config_file
from layerenv.errors import BadInput, ConfigError
from layerenv.tomlcompat import TOMLDecodeError, loads

SettingType = Literal["str", "bool", "list"]

#: The installers layerenv can drive: the values ``base.installer`` and ``--installer`` accept, and
#: the keys of :data:`layerenv.installers.INSTALLERS` (kept here: settings are read before any installer).
INSTALLER_NAMES: tuple[str, ...] = ("auto", "pip", "uv")  # "auto": uv where it is found, else pip
PIP_FALLBACK_NOTE = ("uv not found: installing with pip (pip install uv for faster installs, "
                     'or set [base] installer = "pip" to choose pip)')



def resolve_installer(name: str, uv: str | None) -> tuple[str, str | None]:
    """The installer ``base.installer = name`` stands for, given the uv found (None: none), and the
    note to print when "auto" falls back to pip."""
    if name != "auto":
        return name, None
    return ("uv", None) if uv else ("pip", PIP_FALLBACK_NOTE)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class SettingSpec:
    key: str  # "torch.variant"
    kind: SettingType
    default: Any
    env: str | None
    help: str
    choices: tuple[str, ...] = ()


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "torch.variant",
        "str",
        "auto",
        "LAYERENV_VARIANT",
        "torch variant: 'auto' (detect) or a name such as cu128, cu130, rocm6.4, cpu",
    ),
    SettingSpec("torch.channel", "str", "stable", "LAYERENV_CHANNEL", "release channel", ("stable", "nightly")),
    SettingSpec(
        "torch.version",
        "str",
        "",
        "LAYERENV_TORCH",
        "torch version pin such as '2.9.*' or '>=2.8,<2.11' (empty: newest that fits)",
    ),
    SettingSpec(
        "torch.strict",
        "bool",
        False,
        "LAYERENV_STRICT",
        "fail instead of warning when no build serves every visible GPU",
    ),
    SettingSpec(
        "base.packages",
        "list",
        ["torch", "torchvision", "torchaudio"],
        None,
        "torch-family packages the base holds (torchaudio is skipped where no release matches)",
    ),
    SettingSpec(
        "base.python",
        "str",
        "",
        "LAYERENV_PYTHON",
        "interpreter for the base: a version ('3.12') or a path (empty: the running one)",
    ),
    SettingSpec("base.installer", "str", "auto", "LAYERENV_INSTALLER",
                "installer of the base and the projects: auto (uv where found, else pip), pip or uv", INSTALLER_NAMES),
    SettingSpec(
        "index.url",
        "str",
        "",
        "LAYERENV_INDEX_URL",
        "index URL template with {variant} (empty: the official PyTorch index)",
    ),
    SettingSpec(
        "index.extra_urls",
        "list",
        [],
        "LAYERENV_EXTRA_INDEX_URL",
        "extra indexes for torch's dependencies (never for the torch family)",
    ),
    SettingSpec(
        "index.find_links",
        "list",
        [],
        "LAYERENV_FIND_LINKS",
        "local directories or URLs of wheels, for mirrors and offline machines",
    ),
    SettingSpec(
        "store.home",
        "str",
        "",
        "LAYERENV_HOME",
        "where bases, the project registry, locks and logs live (empty: the user data dir)",
    ),
    SettingSpec(
        "store.lock",
        "str",
        "auto",
        "LAYERENV_LOCK",
        "lock kind: 'flock', 'lease' (a heartbeat file, for stores shared over NFS) or 'auto'",
        ("auto", "flock", "lease"),
    ),
    SettingSpec(
        "store.trusted_group",
        "str",
        "",
        "LAYERENV_TRUSTED_GROUP",
        "a group (name or gid) whose members may own and write the store, for team stores (empty: only "
        "you and root); never from a project's files",
    ),
    SettingSpec(
        "project.requirements",
        "list",
        [],
        None,
        "requirements files to install in the project venv (empty: requirements*.txt)",
    ),
    SettingSpec("project.dependencies", "list", [], None, "extra dependencies to install in the project venv"),
    SettingSpec("project.extras", "list", [], None, "optional-dependency groups of pyproject.toml to install"),
    SettingSpec(
        "project.per_node",
        "bool",
        False,
        "LAYERENV_PER_NODE",
        "each node loads its own base at interpreter start (one project on shared storage, many GPU types)",
    ),
)
SPECS = {spec.key: spec for spec in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Effective settings: ``values[key]`` and ``sources[key]`` (e.g. ``"LAYERENV_VARIANT"``)."""

    values: Mapping[str, Any]
    sources: Mapping[str, str]
    files: tuple[Path, ...] = field(default=())
    project_files: tuple[Path, ...] = field(default=())  # of those, the project's (from the cwd or its path)

    def get(self, key: str) -> Any:
        return self.values[key]

    def text(self, key: str) -> str:
        value = self.values[key]
        if not isinstance(value, str):
            raise TypeError(f"setting {key} is not a string")
        return value

    def items(self, key: str) -> list[str]:
        value = self.values[key]
        if not isinstance(value, list):
            raise TypeError(f"setting {key} is not a list")
        return [str(item) for item in value]

    def flag(self, key: str) -> bool:
        return bool(self.values[key])

    def project_source(self, key: str) -> Path | None:
        """The project file whose value of ``key`` won, or None when the user's own settings decided it."""
        return next((path for path in self.project_files if self.sources.get(key) == str(path)), None)


def _check_value(spec: SettingSpec, value: Any, where: str) -> Any:
    if spec.kind == "bool" and not isinstance(value, bool):
        raise ConfigError(f"{where}: {spec.key} must be true or false, not {value!r}")
    if spec.kind == "str" and not isinstance(value, str):
        raise ConfigError(f"{where}: {spec.key} must be a string, not {value!r}")
    if spec.kind == "list":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{where}: {spec.key} must be a list of strings, not {value!r}")
    if spec.choices and value not in spec.choices:
        raise ConfigError(f"{where}: {spec.key} = {value!r} is not one of: {', '.join(spec.choices)}")
    if spec.key == "torch.variant":
        _check_variant(value, where)
    if spec.key.startswith("index."):
        _check_urls(spec.key, value, where)
    if spec.key == "torch.version" and value:
        from layerenv.choice.decide import normalize_pin

        try:
            normalize_pin(value)
        except BadInput as error:
            raise ConfigError(f"{where}: {spec.key}: {error.message}") from None
    return value


def _check_urls(key: str, value: str | list[str], where: str) -> None:
    from layerenv.urls import check_url, fill_template

    try:
        if isinstance(value, str):
            if value:
                fill_template(value, "cpu", where)
        else:
            for item in value:
                check_url(item, where, allow_paths=key == "index.find_links")
    except BadInput as error:
        raise ConfigError(error.message) from None


def _check_variant(value: str, where: str) -> None:
    if value == "auto":
        return
    from layerenv.choice.table import load_matrix

    names = load_matrix().variant_names
    if value not in names:
        raise ConfigError(f"{where}: torch.variant = {value!r} is not known; allowed: auto, {', '.join(names)}")


def _kind(value: object) -> str:
    return {bool: "boolean", str: "string", int: "number", float: "number", list: "list"}.get(type(value), "value")


def _flatten(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``{"torch": {"variant": "cu128"}}`` -> ``{"torch.variant": "cu128"}``; unknown keys are errors."""
    flat: dict[str, Any] = {}
    for section, body in table.items():
        if not isinstance(body, dict):
            # the type only: a file that is no layerenv config (a link to a credentials file) may hold secrets
            raise ConfigError(f"{where}: {section!r} must be a table such as [{section}], not a {_kind(body)}")
        for name, value in body.items():
            key = f"{section}.{name}"
            spec = SPECS.get(key)
            if spec is None:
                known = ", ".join(spec.key for spec in SETTINGS)
                raise ConfigError(f"{where}: unknown key {key!r}; known keys: {known}")
            flat[key] = _check_value(spec, value, where)
    return flat


def read_user_text(path: Path) -> str:
    """A file the user wrote (config, requirements), or a one-line ``ConfigError`` naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror or error})") from None


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning every failure into a one-line ``ConfigError`` naming it."""
    text = read_user_text(path)
    try:
        document: dict[str, Any] = loads(text)
    except TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    return document


def read_config_file(path: Path) -> dict[str, Any]:
    return _flatten(read_toml(path), str(path))


def read_pyproject_table(path: Path) -> dict[str, Any]:
    document = read_toml(path)
    tool = document.get("tool", {})
    table = tool.get("layerenv", {}) if isinstance(tool, dict) else {}
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.layerenv] must be a table")
    return _flatten(table, f"{path} [tool.layerenv]")


def find_project_root(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` holding ``layerenv.toml`` or ``pyproject.toml``."""
    found = project_root(str(start))
    return None if found is None else Path(found)


def _env_value(spec: SettingSpec, raw: str) -> Any:
    where = f"environment variable {spec.env}"
    if spec.kind == "bool":
        lowered = raw.strip().lower()
        if lowered not in _TRUE + _FALSE:
            raise ConfigError(f"{where}={raw!r} must be one of: {', '.join(_TRUE + _FALSE[:-1])}")
        return lowered in _TRUE
    if spec.kind == "list":
        return _check_value(spec, raw.split(), where)
    return _check_value(spec, raw, where)


def _forced_channel(env: Mapping[str, str]) -> tuple[str, str] | None:
    """The switches of the widely copied ``setup_pytorch.py`` recipe."""
    for name, channel in (("PYTORCH_FORCE_NIGHTLY", "nightly"), ("PYTORCH_FORCE_STABLE", "stable")):
        raw = env.get(name)
        if raw is None:
            continue
        lowered = raw.strip().lower()
        if lowered not in _TRUE + _FALSE:
            raise ConfigError(f"environment variable {name}={raw!r} must be true or false")
        if lowered in _TRUE:
            return channel, name
    return None


def user_config_path(env: Mapping[str, str]) -> Path:
    return Path(user_config_file(env))


def _drop_user_only(layer: dict[str, Any], path: Path) -> None:
    """Whom the store trusts is the user's to say, never a project's: a project's empty value (a copied
    template) is left out, so it cannot undo the user's setting; any other value is refused."""
    if layer.pop("store.trusted_group", ""):
        raise ConfigError(
            f"{path}: store.trusted_group cannot be set by a project (its files must not choose whom the "
            "store trusts); set it in the user config or LAYERENV_TRUSTED_GROUP"
        )


def load_settings(
    *,
    project_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    project_files: bool = True,
) -> Settings:
    """Merge every source into one :class:`Settings`; raises ``ConfigError`` naming the bad value.

    ``project_files`` False: no project's ``pyproject.toml``/``layerenv.toml`` (those of ``project_dir``,
    else of the cwd) count, for commands about the whole machine and store, whose answer must not
    depend on the directory they run in."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {spec.key: spec.default for spec in SETTINGS}
    sources: dict[str, str] = {spec.key: "default" for spec in SETTINGS}
    files: list[Path] = []

    def apply(layer: Mapping[str, Any], source: str) -> None:
        for key, value in layer.items():
            values[key] = value
            sources[key] = source

    layers: list[tuple[Path, Callable[[Path], dict[str, Any]]]] = []
    user_file = user_config_path(env)
    if user_file.is_file():
        layers.append((user_file, read_config_file))
    own_files: list[Path] = []
    root = find_project_root((project_dir or Path.cwd()).resolve()) if project_files else None
    if root is not None:
        if (root / "pyproject.toml").is_file():
            layers.append((root / "pyproject.toml", read_pyproject_table))
            own_files.append(root / "pyproject.toml")
        if (root / "layerenv.toml").is_file():
            layers.append((root / "layerenv.toml", read_config_file))
            own_files.append(root / "layerenv.toml")
    own_files = [path for path in own_files if path != user_file]
    explicit = env.get("LAYERENV_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"LAYERENV_CONFIG={explicit!r}: no such file")
        layers.append((path, read_config_file))
    for path, reader in layers:
        layer = reader(path)
        if path in own_files:
            _drop_user_only(layer, path)
        apply(layer, str(path))
        files.append(path)
    forced = _forced_channel(env)
    if forced:
        apply({"torch.channel": forced[0]}, forced[1])
    for spec in SETTINGS:
        if spec.env and spec.env in env:
            apply({spec.key: _env_value(spec, env[spec.env])}, spec.env)
    for key, value in (flags or {}).items():
        if value is None:
            continue
        spec = SPECS[key]
        apply({key: _check_value(spec, value, f"--{key.split('.')[-1].replace('_', '-')}")}, "command line")
    return Settings(values=values, sources=sources, files=tuple(files), project_files=tuple(own_files))

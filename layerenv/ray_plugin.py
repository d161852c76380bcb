"""The address Ray's ``RAY_RUNTIME_ENV_PLUGINS`` names (``layerenv.ray_plugin.LayerenvPlugin``).

The plugin lives in :mod:`layerenv.integrations.ray_runtime_env`.
"""

from layerenv.integrations.ray_runtime_env import LayerenvPlugin, check_config

__all__ = ["LayerenvPlugin", "check_config"]

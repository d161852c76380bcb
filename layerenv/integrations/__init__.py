"""Plugins that other tools load: Ray's runtime_env (``layerenv.ray_plugin``)."""

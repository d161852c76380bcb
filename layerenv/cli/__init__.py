"""The ``layerenv`` command: the start-up fast path, the click commands, rendering. Imports nothing here."""

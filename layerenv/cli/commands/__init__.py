"""One module per ``layerenv`` command; each holds only parsing and rendering."""

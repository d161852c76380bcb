"""A virtualenv on disk: creating one, and reading the distributions in its site-packages."""

"""The cube object: byte layout, astrocut-compatible headers and table, the index sidecar."""

"""Plugin machinery: the registry that loads plugins through the `stylekit` entry points,
the listing of `stylekit plugins`, the probe that checks a component against its backbone's
layers, blame (which package a failure comes from) and the scaffold of `stylekit new-plugin`.
Internal: plugins implement `stylekit.contract`."""

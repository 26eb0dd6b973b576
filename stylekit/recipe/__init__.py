"""From recipe text to a checked, frozen `Plan`: TOML reading with positions, the pydantic
schema, overrides, stage fitting, devices, and the checks of input images and output paths.
Internal: the API's `stylekit.load` is the way in."""

"""Built-in components. Each module is a plugin listed under the `stylekit` entry-point group."""

"""Built-in scenario plugins, one module per data-set family."""

"""Built-in method plugins, one module per method family."""

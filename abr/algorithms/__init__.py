"""Built-in algorithms; importing this package registers them."""

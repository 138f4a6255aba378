"""One module per command group; ``registry`` builds the typer app from them."""

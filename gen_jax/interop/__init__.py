"""Reading and writing other libraries' checkpoint formats (pure numpy; no torch)."""

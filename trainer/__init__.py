"""SKD trainer (see trainer/main.py)."""

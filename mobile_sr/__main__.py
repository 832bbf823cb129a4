"""``python -m mobile_sr`` (what ``torchrun -m mobile_sr train ...`` runs on every rank)."""

from .cli import main

main()

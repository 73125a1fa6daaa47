"""``python -m roadmap`` (and ``torchrun -m roadmap``) run the CLI."""

from roadmap.cli import main

main()

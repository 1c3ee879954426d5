"""What the project writes and checks: tables, figures, the manifest, generated findings, `make check`,
REPRODUCE.md's numbers and the released model."""

"""What a command printed, without the one-time note of a fresh install (numba compiling the kernels the first
time a command runs), which comes before anything else and only on the first run on a machine."""

FIRST_RUN_NOTE = "note: first run: numba compiles"


def message_lines(output: str) -> list[str]:
    """The non-blank lines of `output`, less the first-run compilation note."""
    return [line for line in output.strip().splitlines() if line.strip() and not line.startswith(FIRST_RUN_NOTE)]

"""What a command printed, without the one-time note of a fresh install (numba compiling the kernels the first
time a command runs), which comes before anything else and only on the first run on a machine."""

FIRST_RUN_NOTE = "note: first run: numba compiles"


def message_lines(output: str) -> list[str]:
    """The non-blank lines of `output`, less the first-run compilation note."""
    return [line for line in output.strip().splitlines() if line.strip() and not line.startswith(FIRST_RUN_NOTE)]


def one_line_error(result, *fragments: str) -> None:
    """Assert that a command run by typer's CliRunner failed with exit code 1 and one `error:` line (no traceback,
    nothing before it) that contains every fragment."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = message_lines(result.output)
    assert lines[-1].startswith("error:"), result.output
    assert len(lines) == 1, result.output  # a single-line message, nothing before it
    for fragment in fragments:
        assert fragment in result.output, result.output

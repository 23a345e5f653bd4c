"""Placeholder CLI; replaced as the sweep lands."""

import typer

app = typer.Typer()


@app.command()
def demo() -> None:
    """Run the main job."""


def main() -> None:
    app()

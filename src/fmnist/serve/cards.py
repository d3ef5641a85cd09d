"""GET /models/NAME/card: the model card a run wrote beside each model (fmnist.report.card), as Markdown.

Read once at start, with the rest of the run, so a request never touches the run directory.
"""

from pathlib import Path

from fastapi.responses import Response

from fmnist.files import shown
from fmnist.rundir import layout
from fmnist.serve.uploads import RequestError


def read(folder):
    """The text of folder/MODEL_CARD.md, None for a run written before cards were."""
    path = Path(folder) / layout.CARD
    return path.read_text(encoding="utf-8") if path.is_file() else None


def add_route(app, state):
    """GET /models/{name}/card on `app` for the models in service (`state`: fmnist.serve.state.ServingState; a
    reload brings its cards, a server still loading answers 503)."""

    @app.get("/models/{name}/card")
    async def model_card(name: str):
        """The model's card (MODEL_CARD.md, Markdown with YAML front matter): what it is for, how it measured."""
        if state.current is None:
            raise RequestError(503, "not ready: the models are still loading (GET /readyz says when)")
        return response(state.served, name)


def response(served, name):
    """The card of served model `name` as text/markdown; 404 with a one-line reason when there is none."""
    one = served.get(name)
    if one is None:
        raise RequestError(404, f"model {shown(name)}: not served here (GET /models lists the models)")
    if one.card is None:
        raise RequestError(404, f"{shown(name)}: its run has no {layout.CARD}; `fmnist report RUN_DIR` writes one")
    return Response(one.card, media_type="text/markdown; charset=utf-8")

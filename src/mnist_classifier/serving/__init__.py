"""Serving: one FastAPI app (``serving.app.create_app``) and the drawing page in ``static/``.

Nothing is imported here: FastAPI and uvicorn come with the optional ``serve``
extra, and only ``mnist-classifier serve`` (or a user's own code) imports the app.
"""

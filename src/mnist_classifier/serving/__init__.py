"""Serving: one FastAPI app (``serving.app.create_app``) and the drawing page in ``static/``.

``app`` holds the routes, ``schemas`` the request and response models and limits,
``requests`` the reading of requests into images and the error answers,
``body_limit`` the body-size middleware, ``metrics`` the Prometheus metrics,
``request_id`` the X-Request-ID middleware and access-log field, ``probes`` /healthz and
/readyz, ``docs_pages`` the offline /docs and /redoc, and ``workers`` ``serve --workers N``. Nothing is imported here: FastAPI and uvicorn
come with the optional ``serve`` extra, and only ``mnist-classifier serve`` (or a
user's own code) imports the app.
"""

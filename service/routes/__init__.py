"""The service's routers (prediction, health), assembled by :func:`service.app.create_app`;
the review's are in :mod:`service.review`."""

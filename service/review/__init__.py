"""Review of detections by analysts: SQL store, importer, export and the ``impacts review`` CLI.

Importing this package loads nothing heavy; SQLAlchemy comes with ``service.review.store``.
"""

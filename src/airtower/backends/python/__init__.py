"""Triton python_backend compatibility: ``TritonPythonModel`` in ``model.py``, run in-process.

``backend.py`` loads the model file and drives its lifecycle on each instance's thread;
``triton_python_backend_utils.py`` is the ``pb_utils`` API user code imports under that exact
name (frozen public API, typed by the shipped ``.pyi``). Nothing here imports frontends,
scheduling or models.
"""

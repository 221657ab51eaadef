"""The python-backend models; each model.py that `percept repo build` writes imports one of them.

They run inside Triton's python-backend stub (``triton_python_backend_utils`` exists only there) and
stay thin: everything is built in ``initialize``, ``execute`` calls pure functions from
:mod:`serving.processing`, answers one response per request, and a bad request gets its own
INVALID_ARG error without failing the rest of the batch.
"""

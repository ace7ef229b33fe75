"""workbench.deploy: a self-contained bundle from a run (``bundle``), the inference path over it
(``predictor``) and the EdgeInfer HTTP service (``service``, ``metrics``) for the Raspberry Pi.

Nothing in this package imports torch or papermill; the service's own requirements are written into
every bundle (``requirements.txt``). Submodules are imported explicitly, so building a bundle does not
need FastAPI and serving does not need the run store.
"""

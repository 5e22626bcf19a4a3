"""The Kubernetes API behind one layer: configuration (``client``), error translation
(``errors``), object builders (``manifests``), and watches. The only importer of
``kubernetes``; everything above sees our dataclasses and our errors."""

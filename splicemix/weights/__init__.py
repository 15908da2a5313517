"""The committed pretrained backbones (``<model>-shapes.pt``) and ``manifest.json``: made by
``python -m splicemix.pretrain``, loaded by ``model.pretrained: shapes`` (see :mod:`splicemix.models`)."""

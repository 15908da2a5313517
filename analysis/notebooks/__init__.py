"""The question notebooks (``*.ipynb``), their builder (:mod:`.build`) and runner (:mod:`.execute`)."""

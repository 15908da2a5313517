"""The packages the analysis needs beyond the library: one clear error at ``import analysis`` when the
extras are not installed (instead of a traceback from deep inside :mod:`analysis.stats`)."""

from importlib.util import find_spec

#: for the tables and the statistics (the plots need the rest of the ``analysis`` extra)
NEEDED = ("pandas", "pyarrow", "scipy")

missing = [m for m in NEEDED if find_spec(m) is None]
if missing:
    raise ModuleNotFoundError(
        f"analysis needs the 'analysis' and 'study' extras (missing: {', '.join(missing)}); "
        "expected: pip install '.[study,analysis]'"
    )

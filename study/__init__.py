"""SpliceMix hyperparameter studies: Ray Tune + Optuna over splicemix training runs.

``python -m study.run search_spaces/ratio.yaml`` (see study.run); the YAML schema is
study.schema, the Tune objects study.space, one trial study.trial, the Parquet results
study.store. ``splicemix`` itself never imports Ray; this package does.
"""

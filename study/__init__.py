"""SpliceMix hyperparameter studies: Ray Tune + Optuna over splicemix training runs.

``python -m study.run search_spaces/ratio.yaml`` (the command line, study.run). The YAML schema is
study.schema, the Tune objects study.space; study.runner runs a study (StudyOptions, run_study),
study.cluster holds every contact with Ray's set-up, study.folder the study's folder, one trial is
study.trial, study.callback records results into study.store (the Parquet files).
``splicemix`` itself never imports Ray; this package does.
"""

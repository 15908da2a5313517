"""The trainer in parts (:func:`splicemix.train.train` is the public entry point).

* ``dist``: this process in the job (rank, world, device, precision) and torch's settings for a run;
* ``rundir``: the run's files (config.yaml, metrics.jsonl, checkpoint.pt);
* ``data``: the train / val / low-resolution sets and the training loader;
* ``optim``: the optimiser, the learning-rate schedule and the gradient scaler;
* ``loop``: one epoch of training, evaluation, the epoch's line;
* ``state``: what a checkpoint holds, saved and restored in one place;
* ``train``: ``train(cfg, report=None)``, the wiring; ``cli``: ``python -m splicemix.train``.
"""

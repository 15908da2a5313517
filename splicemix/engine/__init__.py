"""The trainer in parts: dist (processes and devices), rundir (the run's files), data, loop (one epoch, evaluation), train (wiring), cli."""

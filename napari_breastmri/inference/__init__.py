"""Running model packages on a study: ``pipeline.analyze(study, packages, ...)`` is a generator that
yields Progress and returns Findings on the study grid.

* :mod:`.device` - the only place that picks a device (CUDA + autocast, MPS, CPU) and handles
  out-of-memory (smaller batches, then the CPU);
* :mod:`.preprocess` - channels, normalisation and the model grid, shared with training;
* :mod:`.sliding` - cancellable Gaussian-blended sliding windows (equal to MONAI's);
* :mod:`.postprocess` - probability -> mask -> study grid -> lesions;
* :mod:`.uncertainty` - MC dropout / TTA passes, mean and [5 %, 95 %] interval;
* :mod:`.cli` - ``breastmri analyze``.
"""
